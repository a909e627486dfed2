"""Strategies: patterns recognized on the IR and planned without their generic intermediates.

A strategy is `match(P, n) -> (operands, build) | None`, decided on the IR and the concrete sizes alone; it
declines (and the node is planned generically) unless its pattern holds exactly and its largest array is
smaller than the generic one. Each keeps the evaluator's values: heaviside is strict, delta is exact
equality (`a - b` is 0 exactly when `a == b`, for finite floats), ties count as the evaluator counts them,
and a runtime guard falls back to an exact formula where an overflowed (inf or NaN) value would behave
differently. Only the order of floating-point additions may differ.

- scatter:  `[sum<i>(delta(E[i] - r) * Y[i]) for r in range(lo, hi)]` moves row Y[i] to position E[i] - lo
            (a gather of rows when no two land together, as for ranks; a scatter-add when they collide).
- count:    `sum<j < n>(heaviside(A[j] - B[i]))` (or `B[i] - A[j]`, or `delta`) counts by sorting A and
            binary search, not with an (i, j) matrix; `sum<j < i>(delta(u[j] - u[i]))` is i's position in a
            stable sort of u minus the first position of its value.
- contract: `sum<v>(f1 * f2 * ...)` is an einsum of the largest factor and the product of the others.
- compare:  `heaviside(a - b)` is `a > b` and `delta(a - b)` is `a == b` (finite), without the difference.
"""

from __future__ import annotations

import math
import string
from typing import Any

from .einsum import contraction
from .ir import Affine, IRError, Node, Op, Sym, bound, node
from .plan import Choice, Meta, Planner, reshaper
from .planops import broadcast, chain, ragged_mask
from .rewrite import factors, product

MANTISSA = {"float64": 53, "float32": 24, "float16": 11, "bfloat16": 8}


def _float(n: Node) -> bool:
    return n.dtype == "float" or n.op is Op.AFFINE


def _plain(v: Sym) -> bool:
    return not (v.lo.vars or v.hi.vars)


def _step_of_difference(n: Node) -> tuple[Node, Node] | None:
    """(a, b) for heaviside(a - b) or delta(a - b) of float scalars."""
    if n.op in (Op.HEAVISIDE, Op.DELTA) and n.src[0].op is Op.SUB and all(_float(s) for s in n.src[0].src):
        a, b = n.src[0].src
        return a, b
    return None


def _batched(n: Node) -> bool:
    return any(m.op is Op.INPUT for m in n.toposort())


def _elements(P: Planner, n: Node) -> int:
    return (P.batch if _batched(n) else 1) * math.prod(P.size(v) for v in n.free) * math.prod(P.own(n))


def _finite(xp: Any, *arrays: Any) -> bool:
    return all(xp.isfinite_all(a) for a in arrays)


def _is_finite(a: Any) -> Any:
    return abs(a) < math.inf  # elementwise, for numpy and torch alike


# --- compare ---------------------------------------------------------------------------------------------
def compare(P: Planner, n: Node) -> Choice | None:
    ab = _step_of_difference(n)
    if ab is None:
        return None

    def build(P: Planner) -> int:
        ins = [P.value(s) for s in ab]
        metas = [P.metas[i] for i in ins]
        shapes, meta = broadcast(P, metas)
        fa, fb = (chain(reshaper(m.shape, sh)) for m, sh in zip(metas, shapes))
        xp, dtype = P.xp, P.dtype
        if n.op is Op.HEAVISIDE:  # a - b > 0 exactly when a > b, also for inf and NaN
            return P.emit(lambda a, b: xp.to_dtype(fa(a) > fb(b), dtype), ins,
                          Meta(meta.axes, meta.dims, meta.own, meta.batch, "float", True))
        if meta.finite:
            fn = lambda a, b: xp.to_dtype(fa(a) == fb(b), dtype)
        else:  # inf - inf is NaN, not 0
            fn = lambda a, b: xp.to_dtype((fa(a) == fb(b)) & _is_finite(fa(a)), dtype)
        return P.emit(fn, ins, Meta(meta.axes, meta.dims, meta.own, meta.batch, "float", True))
    return list(ab), build


# --- count -----------------------------------------------------------------------------------------------
def count(P: Planner, n: Node) -> Choice | None:
    if n.op is not Op.SUM:
        return None
    j, body = n.arg, n.src[0]
    ab = _step_of_difference(body)
    if ab is None or any(s.shape for s in ab):
        return None
    p, q = ab
    if j in p.free and j not in q.free:
        A, B, a_first = p, q, True
    elif j in q.free and j not in p.free:
        A, B, a_first = q, p, False
    else:
        return None
    if A.free != {j} or len(B.free) > 1 or n.free != B.free or any(not _plain(v) for v in B.free):
        return None
    i = next(iter(B.free), None)
    if _plain(j):
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
    pairs = G * ni * nj <= PAIRS_MAX
    P.note(G * ni * nj if pairs else G * (nj + ni) * 2)
    shape = (G, ni) if i is not None else (G,)

    def sort(a: Any, b: Any) -> Any:
        a = a if ma.batch == G else xp.broadcast_to(a, (G, nj))
        b = b.reshape(G, ni) if mb.batch == G else xp.broadcast_to(b.reshape(mb.batch, ni), (G, ni))
        if not (sure or _finite(xp, a, b)):
            return every_pair(a, b)
        if heaviside:
            c = nj - xp.count_below(a, b, True) if a_first else xp.count_below(a, b, False)
        else:
            c = xp.count_below(a, b, True) - xp.count_below(a, b, False)
        return xp.to_dtype(c, dtype).reshape(shape)

    def every_pair(a: Any, b: Any) -> Any:  # exactly the evaluator's comparisons, summed over j
        a3, b3 = a.reshape(-1, 1, nj), b.reshape(-1, ni, 1)
        c = ((a3 > b3) if a_first else (b3 > a3)) if heaviside else (a3 - b3) == 0
        return c.sum(2, dtype=dtype).reshape(shape)
    return P.emit(every_pair if pairs else sort, [sa, sb],
                  Meta((i,) if i is not None else (), (ni,) if i is not None else (), (), G, "float", True))


def _build_ties_before(P: Planner, U: Node, i: Sym) -> int:
    su = P.slots[U]
    mu = P.metas[su]
    ni, xp, dtype = P.size(i), P.xp, P.dtype
    pairs = mu.batch * ni * ni <= PAIRS_MAX
    P.note(mu.batch * ni * (ni if pairs else 4))
    ar = xp.arange(0, ni)
    lower = ar.reshape(1, 1, ni) < ar.reshape(1, ni, 1)  # [., i, j]: j < i

    def every_pair(u: Any) -> Any:  # exactly the evaluator's delta(u[j] - u[i]) over j < i
        u = u[:, :ni]
        return (((u.reshape(-1, 1, ni) - u.reshape(-1, ni, 1)) == 0) & lower).sum(2, dtype=dtype)

    def sort(u: Any) -> Any:
        u = u[:, :ni]
        return xp.to_dtype(xp.ties_before(u), dtype) if mu.finite or _finite(xp, u) else every_pair(u)
    return P.emit(every_pair if pairs else sort, [su], Meta((i,), (ni,), (), mu.batch, "float", True))



# --- scatter ---------------------------------------------------------------------------------------------
def scatter(P: Planner, n: Node) -> Choice | None:
    if n.op is not Op.STACK or n.src[0].op is not Op.SUM or n.free:
        return None
    r, S = n.arg, n.src[0]
    i, fs = S.arg, factors(S.src[0])
    hits = [f for f in fs if r in f.free]
    if not (_plain(r) and _plain(i)) or len(hits) != 1 or hits[0].shape:
        return None
    d = hits[0]
    ab = _step_of_difference(d)
    if d.op is not Op.DELTA or ab is None:
        return None
    aff, E = next(((x, y) for x, y in (ab, ab[::-1]) if x.op is Op.AFFINE and r in x.free), (None, None))
    if aff is None or E is None or r in E.free or not E.free <= {i}:
        return None
    s = aff.arg.coeff(r)
    R = aff.arg - Affine.of(r).scale(s)  # E == s*r + R  <=>  r == s*(E - R)
    rest = [f for f in fs if f is not d]
    if s not in (1, -1) or not R.vars <= {i} or any(not f.free <= {i} or not _float(f) for f in rest):
        return None
    # the evaluator casts s*r + R to the float dtype: exact only below 2**mantissa
    mant = MANTISSA.get(str(P.dtype).replace("torch.", ""), 0)
    if max(abs(bound(aff.arg, u).value(P.env)) for u in (False, True)) >= 2 ** mant:
        return None
    try:
        Y = product(rest) if rest else node(Op.CONST, (), 1.0)
    except IRError:
        return None
    lo, hi = P.extent(r)
    if _elements(P, Y) * (hi - lo) <= _elements(P, n) + _elements(P, E):  # nothing to save
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
    if G * Rn * ni * F <= ONEHOT_MAX:  # small: the (r, i) delta matrix times Y, as the evaluator sums it
        P.note(G * Rn * ni)
        target = xp.to_dtype(xp.arange(lo, hi).reshape(1, Rn, 1) * s + rv.reshape(1, 1, -1), dtype)  # s*r + R

        def onehot(e: Any, y: Any) -> Any:
            hit = xp.to_dtype(e.reshape(me.batch, 1, e_shape[1]) == target, dtype)
            return (hit @ y.reshape(y_shape)).reshape((G, Rn, *my.own))
        return P.emit(onehot, [se, sy], Meta((), (), (Rn, *my.own), G, "float", False))
    P.note(G * (Rn + 1) * 2 + G * ni * 2)

    def run(e: Any, y: Any) -> Any:
        e = xp.broadcast_to(e.reshape(e_shape), (G, ni))
        y = xp.broadcast_to(y.reshape(y_shape), (G, ni, F))
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
        if not my.finite and not xp.isfinite_all(y):  # 0 * inf is NaN in the evaluator's sum
            bad = xp.to_dtype(~_is_finite(y), dtype)
            elsewhere = xp.sum(bad, 1).reshape(G, 1, F) - xp.scatter_rows(bad, tt, Rn)
            out = xp.where(elsewhere == 0, out, math.nan)
        return out.reshape((G, Rn, *my.own))
    return P.emit(run, [se, sy], Meta((), (), (Rn, *my.own), G, "float", False))


# --- contract --------------------------------------------------------------------------------------------
def contract(P: Planner, n: Node) -> Choice | None:
    if n.op is not Op.SUM:
        return None
    v, fs = n.arg, factors(n.src[0])
    if len(fs) < 2 or not any(v in f.free for f in fs) or not all(_float(f) for f in fs):
        return None
    sizes = [_elements(P, f) for f in fs]
    big = fs[sizes.index(max(sizes))]
    small = [f for f in fs if f is not big]
    try:
        rest = product(small)
    except IRError:
        return None
    if max(_elements(P, rest), _elements(P, n)) >= _elements(P, n.src[0]):
        return None
    return [rest, big], lambda P: _build_contract(P, n, rest, big)


def _build_contract(P: Planner, n: Node, rest: Node, big: Node) -> int:
    v = n.arg
    ins = [P.value(rest), P.value(big)]
    metas = [P.metas[i] for i in ins]
    if not _plain(v):  # a ragged range is one more 0/1 factor
        mask, mm = ragged_mask(P, v)
        ins.append(P.constant(P.xp.to_dtype(mask, P.dtype), Meta(mm.axes, mm.dims, mm.own, mm.batch, "float", True)))
        metas.append(P.metas[ins[-1]])
    _, full = broadcast(P, metas)
    rank = len(full.own)
    letters = iter(string.ascii_letters)
    name = {a: next(letters) for a in ("batch", *full.axes, *range(rank))}
    size = {name["batch"]: full.batch, **{name[a]: d for a, d in zip(full.axes, full.dims)},
            **{name[k]: d for k, d in enumerate(full.own)}}
    terms, shapers = [], []
    for m in metas:
        dims = [(name["batch"], m.batch), *((name[a], d) for a, d in zip(m.axes, m.dims)),
                *((name[rank - len(m.own) + k], d) for k, d in enumerate(m.own))]
        keep = [(c, d) for c, d in dims if d == size[c]]  # size-1 axes that broadcast are dropped
        terms.append("".join(c for c, _ in keep))
        shapers.append(chain(reshaper(m.shape, tuple(d for _, d in keep))))
    out_axes = tuple(a for a in full.axes if a != v)
    result = name["batch"] + "".join(name[a] for a in out_axes) + "".join(name[k] for k in range(rank))
    product = contraction(P.xp, terms, result, size)
    return P.emit(lambda *xs: product(*(f(x) for f, x in zip(shapers, xs))), ins,
                  Meta(out_axes, tuple(P.size(a) for a in out_axes), full.own, full.batch, "float", False))


STRATEGIES = [("scatter", scatter), ("count", count), ("contract", contract), ("compare", compare)]
