"""Simplification: substitution into comprehensions, index shifting, delta elimination, constants.

(Dead definitions need no rule: a definition is part of the program only while something uses it.)
"""

from __future__ import annotations

from ..ir import Affine, Node, Op, affine, node
from ..ir.algebra import factors, product, substitute
from .engine import Context, Pass, rule


@rule("index-stack", "[f(r) for r in range(lo, hi)][e] = f(lo + e)")
def index_stack(n: Node, ctx: Context) -> Node | None:
    match n:
        case Node(op=Op.INDEX, src=(Node(op=Op.STACK, src=(body,), arg=r), e), arg=0):
            return substitute(body, {r: r.lo + e.arg})
        case Node(op=Op.INDEX, src=(Node(op=Op.STACK, src=(body,), arg=r), e), arg=axis) if r not in e.free:
            return node(Op.STACK, (node(Op.INDEX, (body, e), axis - 1),), r)
    return None


@rule("slice-stack", "[f(r) for r in range(lo, hi)][a:b] = [f(r) for r in range(lo + a, lo + b)]")
def slice_stack(n: Node, ctx: Context) -> Node | None:
    match n:
        case Node(op=Op.SLICE, src=(Node(op=Op.STACK, src=(body,), arg=r),), arg=(0, a, b)):
            from ..ir import Sym
            r2 = Sym(r.name, "var", r.lo + a, r.lo + b)
            return node(Op.STACK, (substitute(body, {r: Affine.of(r2)}),), r2)
    return None


@rule("index-slice", "x[a:b][e] = x[a + e]")
def index_slice(n: Node, ctx: Context) -> Node | None:
    match n:
        case Node(op=Op.INDEX, src=(Node(op=Op.SLICE, src=(x,), arg=(axis, a, _)), e), arg=ax) if ax == axis:
            return node(Op.INDEX, (x, affine(e.arg + a)), axis)
    return None


def _delta_of(f: Node, j: object) -> Affine | None:
    """For a factor delta(a) with a = +-(j - e), return e."""
    if f.op is Op.DELTA and f.src[0].op is Op.AFFINE:
        a: Affine = f.src[0].arg
        c = a.coeff(j)  # type: ignore[arg-type]
        if c in (1, -1):
            return (Affine.of(j) - a) if c == 1 else (a + Affine.of(j))  # type: ignore[arg-type]
    return None


@rule("delta-elim", "sum<lo <= j < hi>(delta(j - e) * f(j)) = f(e)  when lo <= e < hi")
def delta_elim(n: Node, ctx: Context) -> Node | None:
    if n.op is not Op.SUM:
        return None
    j = n.arg
    fs = factors(n.src[0])
    for pos, f in enumerate(fs):
        e = _delta_of(f, j)
        if e is not None and j not in e.vars and ctx.nonneg(e - j.lo) and ctx.nonneg(j.hi - 1 - e):
            rest = fs[:pos] + fs[pos + 1:]
            if not rest:
                return node(Op.CONST, (), 1.0)
            out = substitute(product(rest), {j: e})
            return out if out.shape == n.shape else None
    return None


def _sign(ctx: Context, x: Node) -> int | None:
    """+1, 0 or -1 when the sign of an index expression or constant is provable, else None."""
    if x.op is Op.CONST:
        return (x.arg > 0) - (x.arg < 0)
    if x.op is not Op.AFFINE:
        return None
    a = x.arg
    if a.is_const:
        return (a.const > 0) - (a.const < 0)
    if ctx.nonneg(a - 1):
        return 1
    if ctx.nonneg(-a - 1):
        return -1
    return None


@rule("step-of-constant", "heaviside(c) = 1 if c > 0 else 0;  delta(c) = 1 if c == 0 else 0  (c's sign provable)")
def step_of_constant(n: Node, ctx: Context) -> Node | None:
    if n.op not in (Op.HEAVISIDE, Op.DELTA):
        return None
    s = _sign(ctx, n.src[0])
    if s is None:
        return None
    hit = s > 0 if n.op is Op.HEAVISIDE else s == 0
    return node(Op.CONST, (), 1.0 if hit else 0.0)


def _is_const(n: Node, value: float) -> bool:
    return (n.op is Op.CONST and n.arg == value) or (n.op is Op.AFFINE and n.arg == Affine((), int(value)))


@rule("unit", "1 * x = x * 1 = x;  x + 0 = 0 + x = x;  0 * x = 0 for a scalar x")
def unit(n: Node, ctx: Context) -> Node | None:
    if n.op in (Op.MUL, Op.ADD):
        a, b = n.src
        neutral = 1.0 if n.op is Op.MUL else 0.0
        if _is_const(a, neutral) and b.shape == n.shape:
            return b
        if _is_const(b, neutral) and a.shape == n.shape:
            return a
        if n.op is Op.MUL and not n.shape and (_is_const(a, 0.0) or _is_const(b, 0.0)):
            return node(Op.CONST, (), 0.0)
    return None


def _is_mask(n: Node) -> bool:
    """A 0/1 value: a step function, or a product of them."""
    return n.op in (Op.HEAVISIDE, Op.DELTA) or (n.op is Op.MUL and all(_is_mask(s) for s in n.src))


@rule("mask-first", "m * (b * X) = (m * b) * X for a 0/1 mask m, a scalar b and a tensor X: one product per "
                    "element of X, and a masked-out X never meets an overflowing b * X")
def mask_first(n: Node, ctx: Context) -> Node | None:
    match n:
        case Node(op=Op.MUL, src=(m, Node(op=Op.MUL, src=(b, X)))) if _is_mask(m) and not m.shape and \
                not b.shape and X.shape:
            return node(Op.MUL, (node(Op.MUL, (m, b)), X))
    return None


SIMPLIFY = Pass("simplify", (index_stack, slice_stack, index_slice, delta_elim, step_of_constant, unit, mask_first),
                "substitution, index shifting, delta elimination and constant folding")
