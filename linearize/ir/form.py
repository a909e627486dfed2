"""The linearized-form predicate: no selection op left, affine indices, the output linear in the features."""

from __future__ import annotations

from collections.abc import Iterable

from .nodes import Node
from .opcodes import Op
from .ops import OPS
from .printing import show
from .program import Program


def ops_present(program: Program) -> list[str]:
    """The names of the operations in a program (leaves such as inputs and constants left out)."""
    found = {OPS[n.op].name for r in program.roots() for n in r.toposort() if OPS[n.op].kind != "leaf"}
    return sorted(found)


def degree(root: Node, features: Iterable[str]) -> float:
    """The polynomial degree of root in the named inputs, everything else held constant (each op's `degree`
    facet); inf where one reaches a comparison, a divisor or an order."""
    names = frozenset(features)
    deg: dict[Node, float] = {}
    for n in root.toposort():
        deg[n] = OPS[n.op].degree(n, [deg[s] for s in n.src], names)
    return deg[root]


def linearized_problems(program: Program) -> list[str]:
    """Why a program is not in linearized form; empty when it is."""
    problems: list[str] = []
    for root in program.roots():
        for n in root.toposort():
            if OPS[n.op].kind == "selection":
                problems.append(f"data-dependent {OPS[n.op].name} remains: {show(n)}")
            if n.op is Op.INDEX and n.src[1].op is not Op.AFFINE:
                problems.append(f"non-affine index: {show(n)}")
        d = degree(root, program.features)
        if d > 1:
            problems.append(f"the output is not linear in {', '.join(program.features)} (degree {d})")
    return problems


def is_linearized(program: Program) -> bool:
    return not linearized_problems(program)
