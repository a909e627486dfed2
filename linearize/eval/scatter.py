"""Rank scatter: [sum<i>(delta(E[i] - r) * Y[i]) for r] as rows of Y moved to positions E[i].

Oblivious: the one-hot (r, i) matrix times Y, one bmm. Sort: the sorted order's rows when E is a rank planned by
`rank` (one index_select), else a gather of rows, or a scatter-add where positions collide; the one-hot product
when it is small (ONEHOT_MAX multiply-adds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..ir import Affine, IRError, Node, Op, bound, node
from ..ir.algebra import factors, product
from .patterns import elements, exact_below, is_finite, is_float, plain, step_of_difference
from .plan import Meta
from .planner import Choice, Planner


@dataclass(frozen=True)
class Moved:
    """[sum<i>(delta(E[i] - (s*r + R)) * rest[0] * rest[1] ...) for r]: the parts the scatter pattern reads."""

    E: Node
    rest: list[Node]
    R: Affine  # depends on i at most
    s: int  # +1 or -1


def moved(P: Planner, n: Node) -> Moved | None:
    """The scatter pattern of n, when it holds exactly (and its positions are exact in the dtype)."""
    if n.op is not Op.STACK or n.src[0].op is not Op.SUM or n.free:
        return None
    r, S = n.arg, n.src[0]
    i, fs = S.arg, factors(S.src[0])
    hits = [f for f in fs if r in f.free]
    if not (plain(r) and plain(i)) or len(hits) != 1 or hits[0].shape:
        return None
    d = hits[0]
    ab = step_of_difference(d)
    if d.op is not Op.DELTA or ab is None:
        return None
    aff, E = next(((x, y) for x, y in (ab, ab[::-1]) if x.op is Op.AFFINE and r in x.free), (None, None))
    if aff is None or E is None or r in E.free or not E.free <= {i}:
        return None
    s = aff.arg.coeff(r)
    R = aff.arg - Affine.of(r).scale(s)  # E == s*r + R  <=>  r == s*(E - R)
    rest = [f for f in fs if f is not d]
    if s not in (1, -1) or not R.vars <= {i} or any(not f.free <= {i} or not is_float(f) for f in rest):
        return None
    # the generic steps cast s*r + R to the float dtype: exact only below 2**mantissa
    if max(abs(bound(aff.arg, u).value(P.env)) for u in (False, True)) >= exact_below(P.dtype):
        return None
    return Moved(E, rest, R, s)


def scatter(P: Planner, n: Node) -> Choice | None:
    m = moved(P, n)
    if m is None:
        return None
    E, rest, R, s = m.E, m.rest, m.R, m.s
    try:
        Y = product(rest) if rest else node(Op.CONST, (), 1.0)
    except IRError:
        return None
    lo, hi = P.extent(n.arg)
    if elements(P, Y) * (hi - lo) <= elements(P, n) + elements(P, E):  # nothing to save
        return None
    return [E, Y], lambda P: _build_scatter(P, n, E, Y, R, s)


ONEHOT_MAX = 1 << 20  # up to this many multiply-adds, a one-hot matrix product costs less than moving rows


def _build_scatter(P: Planner, n: Node, E: Node, Y: Node, R: Affine, s: int) -> int:
    se, sy = P.value(E), P.value(Y)
    me, my = P.metas[se], P.metas[sy]
    i, (lo, hi) = n.src[0].arg, P.extent(n.arg)
    ni, Rn, F, G = P.size(i), hi - lo, math.prod(my.own), max(me.batch, my.batch)
    xp, dtype = P.xp, P.dtype
    rv, raxes = P.affine(R)
    Rf = xp.to_dtype(rv, dtype).reshape(1, ni if raxes else 1)
    e_shape, y_shape = (me.batch, ni if me.axes else 1), (my.batch, ni if my.axes else 1, F)
    shape = (G, Rn, *my.own)
    meta = Meta((), (), (Rn, *my.own), G, "float", False)

    reshape_y, broadcast_y = my.shape != y_shape, y_shape != (G, ni, F)  # decided now: calls are counted in us

    def widen_y(y: Any) -> Any:
        y = y.reshape(y_shape) if reshape_y else y
        return xp.broadcast_to(y, (G, ni, F)) if broadcast_y else y

    def general(e: Any, y: Any) -> Any:
        e, y = xp.broadcast_to(e.reshape(e_shape), (G, ni)), widen_y(y)
        t = (e - Rf) * s if s < 0 else e - Rf
        valid = (e == e.round()) & (t >= lo) & (t < hi)
        tt = xp.to_dtype(xp.where(valid, t - lo, Rn), xp.int_dtype)  # Rn: lands nowhere
        src, hits = xp.invert(tt, Rn)
        hits = hits[:, :Rn]
        if Rn == 0 or int(hits.max()) <= 1:  # each position gets at most one row: move the rows
            out = xp.rows(y, src[:, :Rn])
            missing = hits == 0
            if bool(missing.any()):
                out = xp.where(~missing.reshape(G, Rn, 1), out, 0)
        else:  # ranks collide: add the rows that land together
            out = xp.scatter_rows(y, tt, Rn)
        if not my.finite and not xp.isfinite_all(y):  # 0 * inf is NaN in the generic steps' sum
            bad = xp.to_dtype(~is_finite(y), dtype)
            elsewhere = xp.sum(bad, 1).reshape(G, 1, F) - xp.scatter_rows(bad, tt, Rn)
            out = xp.where(elsewhere == 0, out, math.nan)
        return out.reshape(shape)

    flat = len(shape) == 3  # Y's rows are vectors: the product has the output's shape
    order = P.orders.get(P.home[se])  # E is a stable rank, planned with the sort that inverts it
    sorted_as = P.metas[order] if order is not None else None
    if sorted_as is not None and s == 1 and R == Affine() and me.axes and sorted_as.shape == (G, ni) and \
            0 <= lo <= hi <= ni:
        P.note(G * Rn)

        plain_y = not (reshape_y or broadcast_y)
        ranks = xp.viewer((slice(None), slice(lo, hi)), (G, ni))  # o[:, lo:hi], planned as any view is

        def permutation(e: Any, y: Any, o: Any) -> Any:  # row r is the row of rank r: o[r]
            if o is None or (not my.finite and not xp.isfinite_all(y)):
                return general(e, y)
            out = xp.rows(y if plain_y else widen_y(y), ranks(o))
            return out if flat else out.reshape(shape)
        return P.emit(permutation, [se, sy, order], meta)
    if P.oblivious or G * Rn * ni * F <= ONEHOT_MAX:  # the (r, i) delta matrix times Y, as the generic steps sum
        P.note(G * Rn * ni)
        target = xp.to_dtype(xp.arange(lo, hi).reshape(1, Rn, 1) * s + rv.reshape(1, 1, -1), dtype)  # s*r + R
        wide_e = me.batch != G or e_shape[1] != ni

        def onehot(e: Any, y: Any) -> Any:
            hit = xp.to_dtype(e.reshape(me.batch, 1, e_shape[1]) == target, dtype)
            out = xp.bmm(xp.broadcast_to(hit, (G, Rn, ni)) if wide_e else hit, widen_y(y))
            return out if flat else out.reshape(shape)
        return P.emit(onehot, [se, sy], meta)
    P.note(G * (Rn + 1) * 2 + G * ni * 2)
    return P.emit(general, [se, sy], meta)
