"""Interval propagation through a program: every node's value as a box [lo, hi], vectorized like the generic
evaluator (eval/generic.py): arrays of shape (batch, *one axis per free index variable, *own shape).

The rule for each op is in one table, `INTERVAL_RULES` (as in JAX's autodidax: `impl_rules[add_p] = ...`). The
ops that select by data (topk, gather, sort, ...) have no interval rule: `LINEARIZE_FIRST` lists them, and a
program that still holds one is refused with its name. Structural ops (index, slice, cat, sum, stack, mean, amax,
definitions) are monotone: their bounds are the same op (layout.py) on the lower and on the upper values.

Tighter rules that use what the derivation knows (ranks are a permutation) live in selection.py and are
tried on each node first; `naive=True` leaves them out (every undecided heaviside/delta is then [0, 1]).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..eval.backends import Backend
from ..ir import OPS, IRError, Node, Op, Sym
from ..ir.nodes import describe
from .kernels import Kernels
from .layout import Layout, Val


@dataclass
class Box:
    """Sound bounds lo <= value <= hi, laid out as the generic evaluator lays out a value. `lo is hi` marks an
    exact value (computed once); `finite` is False where a division by an interval holding 0 made it unbounded."""

    lo: Any
    hi: Any
    axes: tuple[Sym, ...]
    finite: bool = True

    @property
    def exact(self) -> bool:
        return self.lo is self.hi


# a structural rule: (the evaluation, the node) -> its box, or None when the node is not its pattern
StructuralRule = Callable[["IntervalEvaluation", Node], "Box | None"]


class IntervalEvaluation:
    """Bounds of every node of a program at concrete sizes, from boxes on its inputs; `box(node)` evaluates on
    demand, each node once. `rules` are tried before the table (the structural rules of selection.py)."""

    def __init__(self, backend: Backend, kernels: Kernels, env: Mapping[Sym, int], lower: Mapping[str, Any],
                 upper: Mapping[str, Any], dtype: Any, *, rules: Sequence[StructuralRule] = (), ties: str = "any"):
        self.xp, self.k, self.env, self.dtype = backend, kernels, dict(env), dtype
        self.layout = Layout(backend, env)
        self.lower, self.upper = lower, upper
        self.memo: dict[Node, Box] = {}
        self.rules, self.ties = tuple(rules), ties
        self.ranks: dict[Node, Any] = {}  # rank definitions the rank rule bounded, with their integer intervals

    def box(self, n: Node) -> Box:
        b = self.memo.get(n)
        if b is None:
            b = self.compute(n)
            self.store(n, b)
        return b

    def store(self, n: Node, b: Box) -> None:
        self.memo[n] = b

    def compute(self, n: Node) -> Box:
        for rule in self.rules:
            out = rule(self, n)
            if out is not None:
                return out
        fn = INTERVAL_RULES.get(n.op)
        if fn is None:
            if n.op in LINEARIZE_FIRST:
                raise IRError(f"bounds: {describe(n)} selects by data and has no interval rule; linearize the "
                              "program first (linearize.linearize(program).result)")
            raise IRError(f"bounds: no interval rule for op {n.op.name.lower()} in {describe(n)}")
        for s in n.src:
            self.box(s)
        return fn(self, n)

    def operand(self, n: Node) -> Box:
        """A node's box as data: index expressions are cast to the evaluation's float dtype."""
        b = self.box(n)
        if n.dtype == "int" and n.op is Op.AFFINE:
            v = self.xp.to_dtype(b.lo, self.dtype)
            return Box(v, v, b.axes)
        return b

    def aligned(self, srcs: Sequence[Node]) -> tuple[list[Box], tuple[Sym, ...]]:
        """The operands' boxes reshaped to broadcast together (exactness kept)."""
        boxes = [self.operand(s) for s in srcs]
        vals = [Val(a, b.axes) for b in boxes for a in (b.lo, b.hi)]
        arrays, axes = self.layout.align(vals)
        out = []
        for pos, b in enumerate(boxes):
            lo = arrays[2 * pos]
            out.append(Box(lo, lo if b.exact else arrays[2 * pos + 1], axes, b.finite))
        return out, axes

    def as_dtype(self, mask: Any) -> Any:
        return self.xp.to_dtype(mask, self.dtype)


# --- interval arithmetic ---------------------------------------------------------------------------------------
def interval_mul(k: Kernels, a: Box, b: Box, axes: tuple[Sym, ...]) -> Box:
    """[a] * [b] = [min, max] of the four corner products (two when one side is exact); 0 * inf counts as 0."""
    if a.exact and b.exact:
        p = a.lo * b.lo
        return Box(p, p, axes)
    finite = a.finite and b.finite
    if a.exact or b.exact:
        e, v = (a, b) if a.exact else (b, a)
        products = [e.lo * v.lo, e.lo * v.hi]
    else:
        small, large = (a, b) if _size(a.lo) <= _size(b.lo) else (b, a)
        for p, q in ((small, large), (large, small)):
            if finite and bool((p.lo >= 0).all()):  # p >= 0: the product is monotone in p, either way by q's sign
                return Box(q.lo * k.where(q.lo >= 0, p.lo, p.hi), q.hi * k.where(q.hi >= 0, p.hi, p.lo), axes)
        products = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
    if not finite:
        products = [k.where(k.isnan(p), 0.0, p) for p in products]
    lo, hi = products[0], products[0]
    for p in products[1:]:
        lo, hi = k.minimum(lo, p), k.maximum(hi, p)
    return Box(lo, hi, axes, finite)


def _size(a: Any) -> int:
    n = 1
    for d in a.shape:
        n *= d
    return n


def _add(iv: IntervalEvaluation, n: Node) -> Box:
    (a, b), axes = iv.aligned(n.src)
    lo = a.lo + b.lo
    return Box(lo, lo if a.exact and b.exact else a.hi + b.hi, axes, a.finite and b.finite)


def _sub(iv: IntervalEvaluation, n: Node) -> Box:
    (a, b), axes = iv.aligned(n.src)
    lo = a.lo - b.hi
    return Box(lo, lo if a.exact and b.exact else a.hi - b.lo, axes, a.finite and b.finite)


def _neg(iv: IntervalEvaluation, n: Node) -> Box:
    a = iv.operand(n.src[0])
    hi = -a.lo
    return Box(hi if a.exact else -a.hi, hi, a.axes, a.finite)


def _mul(iv: IntervalEvaluation, n: Node) -> Box:
    (a, b), axes = iv.aligned(n.src)
    return interval_mul(iv.k, a, b, axes)


def _div(iv: IntervalEvaluation, n: Node) -> Box:
    """[a] / [b] = [min, max] of the corner quotients when [b] excludes 0; unbounded where it holds 0."""
    (a, b), axes = iv.aligned(n.src)
    k = iv.k
    if b.exact and a.exact:  # what the program computes, division by an exact 0 included
        q = a.lo / b.lo
        return Box(q, q, axes)
    holds_zero = (b.lo <= 0) & (b.hi >= 0)
    bl, bh = k.where(holds_zero, 1.0, b.lo), k.where(holds_zero, 1.0, b.hi)
    quotients = [a.lo / bl, a.lo / bh, a.hi / bl, a.hi / bh]
    lo, hi = quotients[0], quotients[0]
    for q in quotients[1:]:
        lo, hi = k.minimum(lo, q), k.maximum(hi, q)
    unbounded = bool(holds_zero.any())
    if unbounded:
        lo, hi = k.where(holds_zero, -float("inf"), lo), k.where(holds_zero, float("inf"), hi)
    return Box(lo, hi, axes, a.finite and b.finite and not unbounded)


def _exp(iv: IntervalEvaluation, n: Node) -> Box:
    """exp is increasing: [exp(lo), exp(hi)] (inf past the dtype's range, so not `finite`)."""
    a = iv.operand(n.src[0])
    lo = OPS[Op.EXP].impl(iv.xp, a.lo)
    return Box(lo, lo if a.exact else OPS[Op.EXP].impl(iv.xp, a.hi), a.axes, False)


def _sqrt(iv: IntervalEvaluation, n: Node) -> Box:
    """sqrt is increasing on [0, inf): [sqrt(max(lo, 0)), sqrt(hi)] (ToMe's norms: sums of squares, never below 0;
    a box reaching below 0 would be a NaN where the program takes one, and is clipped to where sqrt is defined)."""
    a = iv.operand(n.src[0])
    lo = OPS[Op.SQRT].impl(iv.xp, a.lo * iv.as_dtype(a.lo > 0))
    return Box(lo, lo if a.exact else OPS[Op.SQRT].impl(iv.xp, a.hi), a.axes, a.finite)


def _heaviside(iv: IntervalEvaluation, n: Node) -> Box:
    """heaviside is nondecreasing: [H(lo), H(hi)], decided (one value) when the interval excludes 0 or is
    at most 0 (H(0) = 0)."""
    a = iv.operand(n.src[0])
    lo = iv.as_dtype(a.lo > 0)
    return Box(lo, lo if a.exact else iv.as_dtype(a.hi > 0), a.axes)


def _delta(iv: IntervalEvaluation, n: Node) -> Box:
    """delta([lo, hi]) is 1 when lo = hi = 0, 0 when the interval excludes 0, else [0, 1]."""
    a = iv.operand(n.src[0])
    if a.exact:
        v = iv.as_dtype(a.lo == 0)
        return Box(v, v, a.axes)
    return Box(iv.as_dtype((a.lo == 0) & (a.hi == 0)), iv.as_dtype((a.lo <= 0) & (a.hi >= 0)), a.axes)


def _monotone(apply: Callable[[Layout, Node, list[Val]], Val]) -> Callable[[IntervalEvaluation, Node], Box]:
    """Ops that only select, move, add up, average or take the largest of values: the op on each bound."""
    def rule(iv: IntervalEvaluation, n: Node) -> Box:
        srcs = [iv.memo[s] for s in n.src]
        lo = apply(iv.layout, n, [Val(s.lo, s.axes) for s in srcs])
        hi = lo if all(s.exact for s in srcs) else apply(iv.layout, n, [Val(s.hi, s.axes) for s in srcs])
        return Box(lo.data, hi.data, lo.axes, all(s.finite for s in srcs))
    return rule


def _input(iv: IntervalEvaluation, n: Node) -> Box:
    name = n.arg[0]
    return Box(iv.lower[name], iv.upper[name], ())


def _const(iv: IntervalEvaluation, n: Node) -> Box:
    v = iv.xp.asarray([n.arg], iv.dtype)
    return Box(v, v, ())


def _affine(iv: IntervalEvaluation, n: Node) -> Box:
    v = iv.layout.affine(n.arg)
    return Box(v.data, v.data, v.axes)


INTERVAL_RULES: dict[Op, Callable[[IntervalEvaluation, Node], Box]] = {
    Op.INPUT: _input,
    Op.CONST: _const,
    Op.AFFINE: _affine,
    Op.ADD: _add,
    Op.SUB: _sub,
    Op.MUL: _mul,
    Op.DIV: _div,
    Op.NEG: _neg,
    Op.EXP: _exp,
    Op.SQRT: _sqrt,
    Op.HEAVISIDE: _heaviside,
    Op.DELTA: _delta,
    Op.INDEX: _monotone(lambda lay, n, v: lay.index(n, v[0])),
    Op.SLICE: _monotone(lambda lay, n, v: lay.slice(n, v[0])),
    Op.CAT: _monotone(lambda lay, n, v: lay.cat(n, v)),
    Op.SUM: _monotone(lambda lay, n, v: lay.binder(n, v[0])),
    Op.STACK: _monotone(lambda lay, n, v: lay.binder(n, v[0])),
    Op.DEF: _monotone(lambda lay, n, v: v[0]),
    Op.MEAN: _monotone(lambda lay, n, v: lay.reduce(n, v[0])),
    Op.AMAX: _monotone(lambda lay, n, v: lay.reduce(n, v[0])),
}

# ops that select by data: no interval rule; a program must be linearized before its bounds are taken
LINEARIZE_FIRST: frozenset[Op] = frozenset({
    Op.ARGSORT, Op.SORT_BY_KEY, Op.TOPK, Op.GATHER, Op.COMPLEMENT, Op.KTH, Op.RANK, Op.ARGMAX, Op.SCATTER_ADD,
})
