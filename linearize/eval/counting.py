"""Comparison counts: sums of heaviside/delta of key differences.

In an oblivious plan (the default) every count compares every pair, in one (i, j) matrix per image, as the
generic semantics does but without its float copies; with strategy="sort" large counts sort and search
instead (data-dependent; a runtime finiteness test picks the exact pairwise formula where a key overflowed).
"""

from __future__ import annotations

from typing import Any

from ..ir import Affine, Node, Op, Sym
from ..ir.algebra import substitute
from .patterns import exact_below, finite, plain, step_of_difference
from .plan import Meta
from .planner import Choice, Planner


# --- count -----------------------------------------------------------------------------------------------
def count(P: Planner, n: Node) -> Choice | None:
    if n.op is not Op.SUM:
        return None
    j, body = n.arg, n.src[0]
    ab = step_of_difference(body)
    if ab is None or any(s.shape for s in ab):
        return None
    p, q = ab
    if j in p.free and j not in q.free:
        A, B, a_first = p, q, True
    elif j in q.free and j not in p.free:
        A, B, a_first = q, p, False
    else:
        return None
    if A.free != {j} or len(B.free) > 1 or n.free != B.free or any(not plain(v) for v in B.free):
        return None
    i = next(iter(B.free), None)
    if plain(j):
        return [A, B], lambda P: _build_count(P, n, A, B, i, a_first)
    same = (A.op is B.op is Op.INDEX and A.src[0] is B.src[0] and A.arg == 0 and i is not None
            and A.src[1].arg == Affine.of(j) and B.src[1].arg == Affine.of(i) and len(A.src[0].shape) == 1
            and not A.src[0].free and j.lo == Affine() and j.hi == Affine.of(i) and i.lo == Affine())
    if same and body.op is Op.DELTA:
        return [A.src[0]], lambda P: _build_ties_before(P, A.src[0], i)
    return None


PAIRS_MAX = 1 << 15  # up to this many (g, i, j) pairs, comparing every pair costs less than sorting


def _build_count(P: Planner, n: Node, A: Node, B: Node, i: Sym | None, a_first: bool) -> int:
    sa, sb = P.value(A), P.value(B)
    ma, mb = P.metas[sa], P.metas[sb]
    G, nj, ni = max(ma.batch, mb.batch), P.size(n.arg), P.size(i) if i is not None else 1
    xp, dtype, heaviside, sure = P.xp, P.dtype, n.src[0].op is Op.HEAVISIDE, ma.finite and mb.finite
    pairs = P.oblivious or G * ni * nj <= PAIRS_MAX
    P.note(G * ni * nj if pairs else G * (nj + ni) * 2)
    shape = (G, ni) if i is not None else (G,)

    def sort(a: Any, b: Any) -> Any:
        a = a if ma.batch == G else xp.broadcast_to(a, (G, nj))
        b = b.reshape(G, ni) if mb.batch == G else xp.broadcast_to(b.reshape(mb.batch, ni), (G, ni))
        if not (sure or finite(xp, a, b)):
            return every_pair(a, b)
        if heaviside:
            c = nj - xp.count_below(a, b, True) if a_first else xp.count_below(a, b, False)
        else:
            c = xp.count_below(a, b, True) - xp.count_below(a, b, False)
        return xp.to_dtype(c, dtype).reshape(shape)

    def every_pair(a: Any, b: Any) -> Any:  # exactly the generic steps' comparisons, summed over j
        a3, b3 = a.reshape(-1, 1, nj), b.reshape(-1, ni, 1)
        c = ((a3 > b3) if a_first else (b3 > a3)) if heaviside else (a3 - b3) == 0
        return c.sum(2, dtype=dtype).reshape(shape)
    return P.emit(every_pair if pairs else sort, [sa, sb],
                  Meta((i,) if i is not None else (), (ni,) if i is not None else (), (), G, "float", True))


def _build_ties_before(P: Planner, U: Node, i: Sym) -> int:
    su = P.slots[U]
    mu = P.metas[su]
    ni, xp, dtype = P.size(i), P.xp, P.dtype
    pairs = P.oblivious or mu.batch * ni * ni <= PAIRS_MAX
    P.note(mu.batch * ni * (ni if pairs else 4))
    ar = xp.arange(0, ni)
    lower = ar.reshape(1, 1, ni) < ar.reshape(1, ni, 1)  # [., i, j]: j < i

    def every_pair(u: Any) -> Any:  # exactly the generic steps' delta(u[j] - u[i]) over j < i
        u = u[:, :ni]
        return (((u.reshape(-1, 1, ni) - u.reshape(-1, ni, 1)) == 0) & lower).sum(2, dtype=dtype)

    def sort(u: Any) -> Any:
        u = u[:, :ni]
        return xp.to_dtype(xp.ties_before(u), dtype) if mu.finite or finite(xp, u) else every_pair(u)
    return P.emit(every_pair if pairs else sort, [su], Meta((i,), (ni,), (), mu.batch, "float", True))


# --- stable rank -------------------------------------------------------------------------------------------
def _unwrap(x: Node, i: Sym) -> Node:
    """The body of d[i] for d = [body for v in range(lo, hi)] over i's own range (named or not), else x."""
    d = x.src[0] if x.op is Op.INDEX and x.arg == 0 and x.src[1].arg == Affine.of(i) else None
    while d is not None and d.op is Op.DEF:
        d = d.src[0]
    if d is None or d.op is not Op.STACK or (d.arg.lo, d.arg.hi) != (i.lo, i.hi):
        return x
    return d.src[0] if d.arg == i else substitute(d.src[0], {d.arg: Affine.of(i)})


def _pair(n: Node) -> tuple[Node, Affine, Affine] | None:
    """(key, e1, e2) when n is heaviside or delta of key[e1] - key[e2], for one key indexed on its axis 0."""
    ab = step_of_difference(n)
    if ab is None or not all(s.op is Op.INDEX and s.arg == 0 for s in ab) or ab[0].src[0] is not ab[1].src[0]:
        return None
    return ab[0].src[0], ab[0].src[1].arg, ab[1].src[1].arg


def stable_rank(P: Planner, n: Node) -> Choice | None:
    """num_greater[i] + sum<j < i>(delta(key[j] - key[i])) is i's position in a stable descending sort of key
    (num_less for an ascending one). Oblivious: one (i, j) difference matrix per image, whose row sums count both
    terms at once. Sort: one sort, whose inverse is the rank, and which a scatter by this rank uses."""
    if n.op is not Op.ADD or len(n.free) != 1:
        return None
    i = next(iter(n.free))
    at = Affine.of(i)
    if not plain(i) or i.lo != Affine() or P.size(i) >= exact_below(P.dtype):  # counts exact in the dtype
        return None
    for g, t in (n.src, n.src[::-1]):
        g, t = _unwrap(g, i), _unwrap(t, i)
        if g.op is not Op.SUM or t.op is not Op.SUM or g.src[0].op is not Op.HEAVISIDE or t.src[0].op is not Op.DELTA:
            continue
        pg, pt = _pair(g.src[0]), _pair(t.src[0])
        if pg is None or pt is None or pg[0] is not pt[0]:
            continue
        key, jg, jt = pg[0], Affine.of(g.arg), Affine.of(t.arg)
        if key.free or len(key.shape) != 1 or pg[1:] not in ((jg, at), (at, jg)) or pt[1:] not in ((jt, at), (at, jt)):
            continue
        if (g.arg.lo, t.arg.lo, t.arg.hi) != (Affine(), Affine(), at) or not g.arg.hi == i.hi == key.shape[0]:
            continue
        descending = pg[1] == jg  # heaviside(key[j] - key[i]) counts the greater keys
        return [key], lambda P, key=key, descending=descending: _build_rank(P, key, i, descending)
    return None


def _build_rank(P: Planner, key: Node, i: Sym, descending: bool) -> int:
    su = P.slots[key]
    mu, n, xp, dtype = P.metas[su], P.size(i), P.xp, P.dtype
    if P.oblivious:
        P.note(mu.batch * n * n)
        below = xp.to_dtype(xp.arange(0, n).reshape(1, n) < xp.arange(0, n).reshape(n, 1), dtype)  # [i, j]: j < i
        finite = mu.finite
        return P.emit(lambda u: xp.pair_ranks(u, descending, below, finite), [su],
                      Meta((i,), (n,), (), mu.batch, "float", True))
    ar = xp.arange(0, n)
    lower = ar.reshape(1, 1, n) < ar.reshape(1, n, 1)  # [., i, j]: j < i
    P.note(mu.batch * n * n if mu.batch * n * n <= PAIRS_MAX else mu.batch * n * 2)

    def sort(u: Any) -> Any:  # None when a key is inf or NaN: those are not ordered as the generic steps count
        return xp.argsort(u, descending) if mu.finite or xp.isfinite_all(u) else None

    def every_pair(u: Any) -> Any:  # exactly the generic steps' two counts
        uj, ui = u.reshape(-1, 1, n), u.reshape(-1, n, 1)
        return ((uj > ui) if descending else (ui > uj)).sum(2, dtype=dtype) + \
            (((uj - ui) == 0) & lower).sum(2, dtype=dtype)

    positions = xp.broadcast_to(xp.to_dtype(ar, dtype).reshape(1, n), (mu.batch, n))
    order = P.emit(sort, [su], Meta((), (), (n,), mu.batch, "int", True))
    rank = P.emit(lambda u, o: every_pair(u) if o is None else xp.unpermute(o, positions), [su, order],
                  Meta((i,), (n,), (), mu.batch, "float", True))

    P.orders[P.home[rank]] = order
    return rank
