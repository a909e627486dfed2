"""The IR's operation codes. What each op means, and every fact the system needs about it, is its entry in the op
table (ops.py); this module only names them, so that the shape rules and the table can both refer to them."""

from __future__ import annotations

import enum


class Op(enum.Enum):
    """The IR's operation codes; `linearize.ir.OPS[op]` declares what each one means (docs/ir.md)."""

    INPUT = enum.auto()
    CONST = enum.auto()
    AFFINE = enum.auto()
    ADD = enum.auto()
    SUB = enum.auto()
    MUL = enum.auto()
    DIV = enum.auto()
    NEG = enum.auto()
    EXP = enum.auto()
    HEAVISIDE = enum.auto()
    DELTA = enum.auto()
    INDEX = enum.auto()
    SLICE = enum.auto()
    CAT = enum.auto()
    SUM = enum.auto()
    STACK = enum.auto()
    DEF = enum.auto()
    MEAN = enum.auto()
    AMAX = enum.auto()
    ARGSORT = enum.auto()
    SORT_BY_KEY = enum.auto()
    TOPK = enum.auto()
    GATHER = enum.auto()
    COMPLEMENT = enum.auto()
    KTH = enum.auto()
    RANK = enum.auto()
