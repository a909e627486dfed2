"""The two sides of a proof, and the checks that make one representative per region enough (docs/prove.md).

`sides` pairs a program with its original; `score_of` finds the score every comparison reads; `order_problems`
names what would make a comparison depend on more than the ordering; `split` makes the comparisons read a
representative of the ordering and the values a separate input `v`; `degree` bounds each side's degree in `v`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..ir import OPS, Affine, Node, Op, node
from ..ir.build import mean, tensor
from ..ir.form import degree as form_degree
from ..ir.printing import show
from ..ir.program import Program

KEEP = {op for op, s in OPS.items() if s.order == "compare"}  # comparisons: read the representative
MOVE = {op for op, s in OPS.items() if s.order == "move"}  # rows moved by comparisons: the rows are values


class ProveError(ValueError):
    """The program is outside what the prover can settle; the message says why."""


def sides(program: Program, original: Program | None = None, pipeline: Any = None) -> tuple[Program, Program]:
    """(original, linearized): a linearized program is compared with its meta["reference"] (or same-named) original."""
    from ..ir.form import is_linearized
    if not is_linearized(program):
        from ..rewrite import linearize
        return original or program, linearize(program, pipeline).result
    if original is None:
        from ..programs import UnknownProgram, get
        try:
            original = get(program.meta.get("reference", program.name))
        except UnknownProgram:
            original = program
    if is_linearized(original):
        raise ProveError(f"{program.name} is already linearized and has no original form to compare against "
                         "(name one in meta['reference'])")
    return original, program


def score_of(program: Program) -> Node:
    """The scores, mean(attn[:, 0, 1:], axis=0): the node both forms must read attn through."""
    attn = next((n for n in program.inputs if n.arg[0] == "attn" and len(n.arg[1]) == 3), None)
    if attn is None or len(program.inputs) != 2 or program.features != ("x",) or program.given_sizes != ("k",):
        raise ProveError(f"{program.name}: prove needs inputs x (the features) and attn [H, N + 1, N + 1], and k")
    return mean(attn[:, 0, 1:], axis=0)


def _uses(program: Program, target: Node) -> set[Node]:
    """The nodes that depend on target."""
    dep: set[Node] = set()
    for n in (m for r in program.roots() for m in r.toposort()):
        if n is target or any(s in dep for s in n.src):
            dep.add(n)
    return dep


def _strip(n: Node) -> Node:
    return _strip(n.src[0]) if n.op is Op.DEF else n


def order_problems(program: Program, score: Node) -> list[str]:
    """Why attn might matter other than through the scores, a comparison depend on more than the weak ordering of
    the scores, or float64 arithmetic be inexact; empty when none can happen."""
    dep, inner, memo = _uses(program, score), set(score.toposort()), {}
    nodes = [n for r in program.roots() for n in r.toposort()]
    problems = [f"attn is used other than through the scores: {show(n)}" for n in nodes
                if n not in inner and any(s in inner and s is not score for s in n.src)]

    def ref(n: Node) -> bool:  # score[e]
        return n.op is Op.INDEX and n.arg == 0 and _strip(n.src[0]) is score

    def compared(a: Node) -> bool:  # the argument of a heaviside or delta
        return od(a) or (a.op is Op.SUB and ref(a.src[0]) and ref(a.src[1]))

    def key(n: Node) -> bool:
        return _strip(n) is score or od(n)

    def position(n: Node) -> bool:  # the operands in comparison positions (the op table's `keys`)
        spec = OPS[n.op]
        if spec.order is None:
            return True
        if spec.kind == "step":
            return compared(n.src[0])
        s = n.src[spec.keys[0]]
        return key(s) if s.dtype == "float" else od(s)  # a key's order, or indices made from one

    def od(n: Node) -> bool:  # order-determined: a function of the weak ordering (and of anything but the scores)
        if n not in memo:
            memo[n] = (n not in dep or (n is not score and (position(n) if n.op in KEEP else
                       position(n) and od(n.src[0]) if n.op in MOVE else all(od(s) for s in n.src))))
        return memo[n]

    for n in nodes:
        problems += [f"not a comparison of two scores: {show(n)}"] * (not position(n))
        problems += [f"inexact in float64: {show(n)}"] * ((n.op is Op.DIV) or (n.op is Op.MEAN and n is not score)
                                                          or (n.op is Op.CONST and not (n.arg * 1024).is_integer()))
    return list(dict.fromkeys(problems))


def _syms(a: Any) -> set:
    if isinstance(a, Affine):
        return set(a.syms).union(*(_syms(s) for s in a.vars))
    if isinstance(a, tuple):
        return set().union(*(_syms(e) for e in a))
    return ({a} | _syms(a.lo) | _syms(a.hi)) if getattr(a, "kind", None) == "var" else set()


def channel_generic(program: Program) -> bool:
    """True when C (x's last size) is only ever a trailing axis that no op indexes, slices, joins or reduces: each
    channel is then computed alike and on its own, so one channel settles every C."""
    c = next(n for n in program.inputs if n.arg[0] == "x").arg[1][-1]
    if len(c.terms) != 1 or c.const or any(c.syms & _syms((e.lhs, e.rhs)) for e in program.early_returns):
        return False
    for n in (m for r in program.roots() for m in r.toposort()):
        if any(c.syms & _syms(d) for d in n.shape[:-1]) or (n.op is not Op.INPUT and c.syms & _syms(n.arg)):
            return False
        axis = OPS[n.op].axis
        if axis is not None and axis(n) == len(n.src[0].shape) - 1 and n.src[0].shape[-1] == c:
            return False
    return True


def split(program: Program, score: Node) -> Program:
    """The program with every *value* use of the scores reading a new input `v` [N]; comparisons keep the scores."""
    v, dep, memo = tensor("v", *score.shape), _uses(program, score), {}

    def go(n: Node) -> Node:
        if n not in memo:
            memo[n] = (v if n is score else n if n not in dep or n.op in KEEP
                       else node(n.op, (go(n.src[0]), *n.src[1:]), n.arg) if n.op in MOVE
                       else node(n.op, tuple(go(s) for s in n.src), n.arg))
        return memo[n]

    early = tuple(replace(e, value=go(e.value)) for e in program.early_returns)
    return replace(program, inputs=(*program.inputs, v), output=go(program.output), early_returns=early)


def degree(root: Node, name: str) -> float:
    """The polynomial degree of root in the input `name`; inf where it reaches a comparison or a divisor."""
    return form_degree(root, (name,))
