"""Helpers the strategies share: what a node is, what it costs, and runtime finiteness tests."""

from __future__ import annotations

import math
from typing import Any

from ..ir import Node, Op, Sym
from .planner import Planner

MANTISSA = {"float64": 53, "float32": 24, "float16": 11, "bfloat16": 8}


def exact_below(dtype: Any) -> int:
    """Integers below this are exact in the dtype (numpy's or torch's); 0 for a dtype not known here."""
    bits = MANTISSA.get(str(dtype).replace("torch.", ""))
    return 0 if bits is None else 2 ** bits


def is_float(n: Node) -> bool:
    return n.dtype == "float" or n.op is Op.AFFINE


def plain(v: Sym) -> bool:
    return not (v.lo.vars or v.hi.vars)


def step_of_difference(n: Node) -> tuple[Node, Node] | None:
    """(a, b) for heaviside(a - b) or delta(a - b) of float scalars."""
    if n.op in (Op.HEAVISIDE, Op.DELTA) and n.src[0].op is Op.SUB and all(is_float(s) for s in n.src[0].src):
        a, b = n.src[0].src
        return a, b
    return None


def batched(n: Node) -> bool:
    return any(m.op is Op.INPUT for m in n.toposort())


def elements(P: Planner, n: Node) -> int:
    return (P.batch if batched(n) else 1) * math.prod(P.size(v) for v in n.free) * math.prod(P.own(n))


def finite(xp: Any, *arrays: Any) -> bool:
    return all(xp.isfinite_all(a) for a in arrays)


def is_finite(a: Any) -> Any:
    return abs(a) < math.inf  # elementwise, for numpy and torch alike
