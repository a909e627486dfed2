"""The IR: interned nodes (op, sources, arg), the op table, shapes, the builder, programs and printing.

The bottom layer: it imports nothing else from linearize.
"""

from __future__ import annotations

from . import build  # noqa: F401 - attaches the arithmetic and indexing operators to Node
from .nodes import Affine, IRError, Node, Op, Sym, affine, node
from .program import InputError, Program, program

__all__ = ["Affine", "IRError", "InputError", "Node", "Op", "Program", "Sym", "affine", "node", "program"]
