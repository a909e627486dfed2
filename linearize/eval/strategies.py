"""Strategies: patterns recognized on the IR and planned without their generic intermediates.

A strategy is `match(P, n) -> (operands, build) | None`, decided on the IR and the concrete sizes alone; it
declines (and the node is planned generically) unless its pattern holds exactly and its largest array is
smaller than the generic one. Each keeps the evaluator's values: heaviside is strict, delta is exact
equality (`a - b` is 0 exactly when `a == b`, for finite floats), ties count as the evaluator counts them,
and a runtime guard falls back to an exact formula where an overflowed (inf or NaN) value would behave
differently. Only the order of floating-point additions may differ, and the grouping of a contraction's
factors: it multiplies the small ones first, `(a * b) * X` where the IR may say `a * (b * X)` (EViT's
fused token is already written that way, by the mask-first rule).

- scatter:  `[sum<i>(delta(E[i] - r) * Y[i]) for r in range(lo, hi)]` moves row Y[i] to position E[i] - lo:
            the sorted order's rows when E is a stable rank (below), else a gather of rows when no two land
            together and a scatter-add when they collide; a one-hot product when small (scatter.py).
- rank:     `num_greater[i] + sum<j < i>(delta(key[j] - key[i]))` is i's position in a stable sort of key:
            one sort and its inverse (counting.py).
- count:    `sum<j < n>(heaviside(A[j] - B[i]))` (or `B[i] - A[j]`, or `delta`) counts by sorting A and
            binary search, not with an (i, j) matrix; `sum<j < i>(delta(u[j] - u[i]))` is i's position in a
            stable sort of u minus the first position of its value; every pair when small (counting.py).
- contract: `sum<v>(f1 * f2 * ...)` is one batched matrix product of the largest factor and the product of
            the others (einsum.py).
- compare:  `heaviside(a - b)` is `a > b` and `delta(a - b)` is `a == b` (finite), without the difference;
            a product takes the comparison's booleans as they are.

The generic steps (planops.py) take every node no strategy takes.
"""

from __future__ import annotations

import operator
import string

from ..ir import IRError, Node, Op
from ..ir.algebra import factors, product
from .counting import count, stable_rank
from .einsum import contraction, lift
from .patterns import elements, is_finite, is_float, plain, step_of_difference
from .plan import Meta
from .planner import Choice, Planner
from .planops import broadcast, chain, ragged_mask
from .scatter import scatter


# --- compare ---------------------------------------------------------------------------------------------
def compare(P: Planner, n: Node) -> Choice | None:
    ab = step_of_difference(n)
    if ab is None:
        return None

    def build(P: Planner) -> int:
        ins = [P.value(s) for s in ab]
        metas = [P.metas[i] for i in ins]
        shapes, meta = broadcast(P, metas)
        ins, (ra, rb) = P.shaped(ins, shapes)
        xp, dtype = P.xp, P.dtype
        if n.op is Op.HEAVISIDE:  # a - b > 0 exactly when a > b, also for inf and NaN
            fn = lift(operator.gt, ra, rb)
        elif meta.finite:
            fn = lift(operator.eq, ra, rb)
        else:  # inf - inf is NaN, not 0
            fa, fb = chain(ra), chain(rb)
            fn = lambda a, b: (fa(a) == fb(b)) & is_finite(fa(a))
        flags = P.emit(fn, ins, Meta(meta.axes, meta.dims, meta.own, meta.batch, "bool", True))
        out = P.emit(lambda f: xp.to_dtype(f, dtype), [flags], Meta(meta.axes, meta.dims, meta.own, meta.batch,
                                                                   "float", True))
        P.flags[P.home[out]] = flags  # a product may use the flags as they are (False * x is 0 * x)
        return out
    return list(ab), build


# --- contract --------------------------------------------------------------------------------------------
def contract(P: Planner, n: Node) -> Choice | None:
    if n.op is not Op.SUM:
        return None
    v, fs = n.arg, factors(n.src[0])
    if len(fs) < 2 or not any(v in f.free for f in fs) or not all(is_float(f) for f in fs):
        return None
    sizes = [elements(P, f) for f in fs]
    big = fs[sizes.index(max(sizes))]
    small = [f for f in fs if f is not big]
    try:
        rest = product(small)
    except IRError:
        return None
    if max(elements(P, rest), elements(P, n)) >= elements(P, n.src[0]):
        return None
    return [rest, big], lambda P: _build_contract(P, n, rest, big)


def _build_contract(P: Planner, n: Node, rest: Node, big: Node) -> int:
    v = n.arg
    ins = [P.value(rest), P.value(big)]
    metas = [P.metas[i] for i in ins]
    if not plain(v):  # a ragged range is one more 0/1 factor
        mask, mm = ragged_mask(P, v)
        ins.append(P.constant(P.xp.to_dtype(mask, P.dtype), Meta(mm.axes, mm.dims, mm.own, mm.batch, "float", True)))
        metas.append(P.metas[ins[-1]])
    _, full = broadcast(P, metas)
    rank = len(full.own)
    letters = iter(string.ascii_letters)
    name = {a: next(letters) for a in ("batch", *full.axes, *range(rank))}
    size = {name["batch"]: full.batch, **{name[a]: d for a, d in zip(full.axes, full.dims)},
            **{name[k]: d for k, d in enumerate(full.own)}}
    terms, shapes = [], []
    for m in metas:
        dims = [(name["batch"], m.batch), *((name[a], d) for a, d in zip(m.axes, m.dims)),
                *((name[rank - len(m.own) + k], d) for k, d in enumerate(m.own))]
        keep = [(c, d) for c, d in dims if d == size[c]]  # size-1 axes that broadcast are dropped
        terms.append("".join(c for c, _ in keep))
        shapes.append(tuple(d for _, d in keep))
    ins, shapers = P.shaped(ins, shapes)
    out_axes = tuple(a for a in full.axes if a != v)
    result = name["batch"] + "".join(name[a] for a in out_axes) + "".join(name[k] for k in range(rank))
    product, tail = contraction(P.xp, terms, result, size)
    meta = Meta(out_axes, tuple(P.size(a) for a in out_axes), full.own, full.batch, "float", False)
    if len(ins) == 2:
        return P.emit(lift(product, *shapers), ins, meta, tail and (lift(tail[0], *shapers), tail[1]))
    fs = [chain(f) for f in shapers]
    return P.emit(lambda *xs: product(*(f(x) for f, x in zip(fs, xs))), ins, meta)


STRATEGIES = [("scatter", scatter), ("rank", stable_rank), ("count", count), ("contract", contract),
              ("compare", compare)]
