"""Strategies: patterns recognized on the IR and planned without their generic intermediates (stub)."""

from __future__ import annotations

STRATEGIES: list = []
