"""Evaluation: the backends (numpy, torch), the generic semantics, the planner and its strategies.

Depends on the IR only.
"""

from __future__ import annotations

from .compiled import Compiled, compile

__all__ = ["Compiled", "compile"]
