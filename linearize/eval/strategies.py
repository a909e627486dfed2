"""The strategy table: patterns recognized on the IR and planned without their generic intermediates.

Like a rewrite rule, each strategy has a name, the one-line math it relies on, the condition it checks before it
fires, and `match(P, n) -> (operands, build) | None`, decided on the IR and the concrete sizes alone. It declines
(and the node gets its generic step, generic.py) unless its pattern holds exactly. Each keeps the generic
semantics' values: heaviside is strict, delta is exact equality (`a - b` is 0 exactly when `a == b`, for finite
floats), ties count as the generic steps count them, and non-finite values give what they give there. Only the
order of floating-point additions may differ, and the grouping of a contraction's factors: it multiplies the
small ones first, `(a * b) * X` where the IR may say `a * (b * X)` (EViT's fused token is already written that
way, by the mask-first rule).

A strategy builds one of two kernels, by the planner's mode (compile's `strategy`): "oblivious" (the default)
uses only elementwise arithmetic and comparisons, reductions, matrix products and static views; "sort" may
sort, gather and scatter, test finiteness at run time, and choose by size (data-dependent). `STRATEGIES` is
offered each node in order; tests/test_plan.py has, for each, programs it must take and near misses it must not.
"""

from __future__ import annotations

import operator
import string
from collections.abc import Callable
from dataclasses import dataclass

from ..ir import IRError, Node, Op
from ..ir.algebra import factors, product
from .counting import count, stable_rank
from .einsum import contraction
from .generic import broadcast, ragged_mask
from .patterns import elements, is_finite, is_float, plain, step_of_difference
from .plan import Meta, chain, lift
from .planner import Choice, Planner
from .rows import rows
from .scatter import scatter


@dataclass(frozen=True)
class Strategy:
    name: str
    math: str  # the identity it plans by, in one line
    needs: str  # what must hold for it to fire
    oblivious: str  # the kernel of an oblivious plan (the default)
    sort: str  # the kernel with strategy="sort"
    match: Callable[[Planner, Node], Choice | None]


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


STRATEGIES: tuple[Strategy, ...] = (
    Strategy("rows", "cat(Y[a:b], [sum<i>(delta(E[i] - r) * w[i] * Y[i + c]) for r], [sum<i>(w'[i] * Y[i + c'])]) "
             "= D @ Y, D the parts' coefficient rows stacked",
             "a concatenation along its first axis of parts that are each a slice of the same input Y's rows, rows "
             "moved by the scatter pattern with weights, or a weighted sum of Y[i + c] in a unit axis",
             "the (R, n) coefficient matrix and one bmm: no product per part, no copy by the concatenation",
             "not used (moving rows by index costs less than a product)", rows),
    Strategy("scatter", "[sum<i>(delta(E[i] - (s*r + R[i])) * Y[i]) for r in range(lo, hi)] = D @ Y with "
             "D[r, i] = (E[i] == s*r + R[i]): row Y[i] moves to position s*(E[i] - R[i]) - lo",
             "s = +-1; one delta factor mentions r; E and the other factors depend on i alone; |s*r + R| < "
             "2^mantissa; moving rows is smaller than the (r, i, row) product",
             "the one-hot (r, i) matrix times Y: one bmm",
             "the sorted order's rows when E is a rank planned by `rank`, else a gather (no two i land together) or "
             "a scatter-add; the one-hot product when G*R*n*F <= 2^20", scatter),
    Strategy("rank", "num_greater[i] + sum<j < i>(delta(key[j] - key[i])) = #{j: key[j] > key[i]} + "
             "#{j < i: key[j] == key[i]}, i's position in a stable descending sort",
             "num_greater = sum<j < n>(heaviside(key[j] - key[i])) (or its ascending mirror); the tie term over "
             "j < i of the same key; i over [0, n) with n < 2^mantissa",
             "one (i, j) difference matrix per image: its row sums count both terms (B*n*n)",
             "one stable sort and its inverse (the scatter by this rank reuses the order)", stable_rank),
    Strategy("count", "sum<j < n>(heaviside(A[j] - B[i])) = #{j: A[j] > B[i]} (either sign, or delta); "
             "sum<j < i>(delta(u[j] - u[i])) = #{j < i: u[j] == u[i]}",
             "A depends on j alone, B on at most one plain variable i, both scalars; for the tie count u is a "
             "vector read at j and at i",
             "every pair compared, counted without a float copy (B*n*n)",
             "a sort and a binary search, or a stable sort and the run starts of equal keys; every pair when "
             "B*n*n <= 2^15", count),
    Strategy("contract", "sum<v>(f1 * f2 * ...) = one batched matrix product of the largest factor and the product "
             "of the others", "at least two float factors, one of them mentioning v; the product of the others and "
             "the result smaller than the broadcast product", "bmm (a ragged range is one more 0/1 factor)",
             "the same", contract),
    Strategy("compare", "heaviside(a - b) = (a > b), delta(a - b) = (a == b) for finite a, b",
             "a step of a difference of float scalars", "the comparison, without the difference (and a finiteness "
             "mask where an operand may have overflowed); a product takes the booleans as they are", "the same",
             compare),
)
