"""The linearized-form predicate: no data-dependent op, affine indices, output linear in the features."""

from __future__ import annotations

import math

from .nodes import DATA_DEPENDENT, Node, Op
from .printing import show
from .program import Program

_OP_NAMES = {Op.HEAVISIDE: "heaviside", Op.DELTA: "delta", Op.SUM: "sum", Op.STACK: "stack", Op.MUL: "mul",
             Op.ADD: "add", Op.SUB: "sub", Op.DIV: "div", Op.NEG: "neg", Op.CAT: "cat", Op.MEAN: "mean",
             Op.INDEX: "index", Op.SLICE: "slice", Op.DEF: "def", Op.ARGSORT: "argsort",
             Op.SORT_BY_KEY: "sort_by_key", Op.TOPK: "topk", Op.GATHER: "gather", Op.COMPLEMENT: "complement",
             Op.KTH: "kth", Op.RANK: "rank_of"}


def ops_present(program: Program) -> list[str]:
    """Lower-case names of the operations in a program (leaves such as inputs and constants left out)."""
    found = {_OP_NAMES[n.op] for r in program.roots() for n in r.toposort() if n.op in _OP_NAMES}
    return sorted(found)


def feature_degree(root: Node, features: tuple[str, ...]) -> float:
    """The polynomial degree of root in the feature inputs, treating everything else as constant;
    inf where a feature reaches a heaviside, a delta, a divisor or a data-dependent op."""
    deg: dict[Node, float] = {}
    for n in root.toposort():
        d = [deg[s] for s in n.src]
        if n.op is Op.INPUT:
            deg[n] = 1.0 if n.arg[0] in features else 0.0
        elif n.op is Op.MUL:
            deg[n] = d[0] + d[1]
        elif n.op in (Op.HEAVISIDE, Op.DELTA) or n.op in DATA_DEPENDENT:
            deg[n] = math.inf if any(d) else 0.0
        elif n.op is Op.DIV:
            deg[n] = math.inf if d[1] else d[0]
        else:
            deg[n] = max(d, default=0.0)
    return deg[root]


def linearized_problems(program: Program) -> list[str]:
    """Why a program is not in linearized form; empty when it is."""
    problems: list[str] = []
    for root in program.roots():
        for n in root.toposort():
            if n.op in DATA_DEPENDENT:
                problems.append(f"data-dependent {_OP_NAMES[n.op]} remains: {show(n)}")
            if n.op is Op.INDEX and n.src[1].op is not Op.AFFINE:
                problems.append(f"non-affine index: {show(n)}")
        degree = feature_degree(root, program.features)
        if degree > 1:
            problems.append(f"the output is not linear in {', '.join(program.features)} (degree {degree})")
    return problems


def is_linearized(program: Program) -> bool:
    return not linearized_problems(program)
