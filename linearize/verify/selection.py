"""The tight bound rules: what the derivation knows about selection by rank, recognized on the linearized IR.

- rank intervals: the stable rank of token i lies in [#tokens certainly before i, n - 1 - #tokens certainly
  after i], counting the comparisons whose outcome the key's box decides;
- a selected row `sum<i < n>(delta(rank[i] - e) * X[i])` picks exactly one token (ranks are a permutation): it
  lies in the hull of X over the tokens whose rank interval holds e (not in a sum of several);
- a masked sum `sum<i < n>(heaviside(rank[i] - t) * X[i])` adds exactly n - t - 1 tokens (those ranked > t), every
  one certainly ranked there and none certainly not: per entry the forced terms plus the largest (smallest)
  of the undecided tokens' terms, as many as are missing. `heaviside(t - rank[i])` (ranked < t) likewise.

Each rule returns None when the node is not its pattern (patterns.py), and the plain interval rules
(intervals.py) apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ir import Affine, Node, Op, Sym
from ..ir.algebra import product
from .hull import covering_hull
from .intervals import Box, IntervalEvaluation, interval_mul
from .patterns import match_rank, match_ranked_sum, match_selected_row


def rank_rule(iv: IntervalEvaluation, n: Node) -> Box | None:
    """rank[i] in [#j certainly before i, n - 1 - #j certainly after i]. With ties="stable", j < i is before i
    once key[j] >= key[i] is certain (the stable tie-break); with ties="any" (every tie order, as torch.topk may
    give) only key[j] > key[i] counts."""
    pat = match_rank(n)
    if pat is None:
        return None
    key = iv.box(pat.key)
    if key.axes or key.lo.ndim != 2:
        return None
    k = iv.k
    n_tok = key.lo.shape[1]
    lo_i, hi_i, lo_j, hi_j = key.lo[:, :, None], key.hi[:, :, None], key.lo[:, None, :], key.hi[:, None, :]
    if not pat.descending:  # an ascending rank is the descending rank of the negated key
        lo_i, hi_i, lo_j, hi_j = -hi_i, -lo_i, -hi_j, -lo_j
    before, after = lo_j > hi_i, hi_j < lo_i  # [B, i, j]
    if iv.ties == "stable":
        ar = k.arange(n_tok)
        earlier = ar[None, :] < ar[:, None]  # [i, j]: j < i
        before = before | (earlier & (lo_j >= hi_i))
        after = after | (~earlier & (ar[None, :] != ar[:, None]) & (hi_j <= lo_i))
    r_lo, r_hi = before.sum(-1), n_tok - 1 - after.sum(-1)
    iv.ranks[n] = (r_lo, r_hi)
    lo = iv.as_dtype(r_lo)
    return Box(lo, lo if key.exact and iv.ties == "stable" else iv.as_dtype(r_hi), ())


def token_rows(iv: IntervalEvaluation, x: Node, i: Sym, n: int) -> tuple[Box, int]:
    """The box of x (free in i alone) for every token i: arrays [B, m, *own] (no axes) whose rows c..c + n - 1 are
    the n tokens', and c. For x = T[i + c], T's own arrays, so that taking rows never copies a slice of T first."""
    if x.op is Op.INDEX and x.arg == 0 and x.src[1].op is Op.AFFINE and not x.src[0].free:
        a: Affine = x.src[1].arg
        if a.coeff(i) == 1 and a.vars == {i}:
            c = (a - Affine.of(i)).value(iv.env)
            t = iv.box(x.src[0])
            if not t.axes and 0 <= c and c + n <= t.lo.shape[1]:
                return t, c
    b = iv.box(x)
    if b.axes == (i,) and b.lo.shape[1] == n:
        return Box(b.lo, b.hi, (), b.finite), 0
    if not b.axes:  # the same for every token
        lo = b.lo[:, None]
        shape = (lo.shape[0], n, *lo.shape[2:])
        lo = iv.xp.broadcast_to(lo, shape)
        return Box(lo, lo if b.exact else iv.xp.broadcast_to(b.hi[:, None], shape), (), b.finite), 0
    raise AssertionError(f"token_rows: unexpected axes {b.axes}")  # excluded by the pattern's free-variable test


def _matched(iv: IntervalEvaluation, match: Any, n: Node) -> tuple[Any, Any, Any] | None:
    """(the pattern's match, rank_lo, rank_hi) when n matches and its rank has integer bounds, else None."""
    m = match(n)
    if m is None:
        return None
    iv.box(m.test.rank)
    ranks = iv.ranks.get(m.test.rank)
    return None if ranks is None else (m, *ranks)


def selected_row_rule(iv: IntervalEvaluation, n: Node) -> Box | None:
    """sum<i>(delta(rank[i] - e) * X[i]) in hull{X[i] : e in [rank_lo[i], rank_hi[i]]} (0 when e is no rank)."""
    found = _matched(iv, match_selected_row, n)
    if found is None:
        return None
    m, r_lo, r_hi = found
    n_tok = r_lo.shape[1]
    ev = iv.layout.affine(m.test.e)
    e_shape, axes = tuple(ev.data.shape[1:]), ev.axes
    e = ev.data.reshape(-1)
    if not m.rest:  # sum<i>(delta(rank[i] - e)) is exactly 1 when e is a rank, else 0
        v = iv.as_dtype((ev.data >= 0) & (ev.data < n_tok))
        return Box(v, v, axes)
    x, offset = token_rows(iv, product(m.rest), m.i, n_tok)
    xp, k = iv.xp, iv.k
    B = max(r_lo.shape[0], x.lo.shape[0])
    r_lo, r_hi = _batched(xp, r_lo, B), _batched(xp, r_hi, B)
    own = tuple(x.lo.shape[2:])
    values = [int(v) for v in k.to_numpy(e)]
    first, last = max(min(values), 0), min(max(values), n_tok - 1)
    if first > last:  # no token has any of these ranks
        zero = k.full((1, *e_shape, *own), 0.0, x.lo)
        return Box(zero, zero, axes)
    stride = x.lo.shape[1]  # token i is row b * stride + offset + i of the flattened arrays (free when contiguous)
    xl, xh = (_batched(xp, a, B).reshape((B * stride, *own)) for a in (x.lo, x.hi))
    lo, hi = covering_hull(xp, k, xl, xh, r_lo, r_hi, first, last - first + 1, stride=stride, offset=offset)
    if values != list(range(first, last + 1)):  # other ranks than one run: pick them, 0 for ranks no token has
        at = xp.asarray([min(max(v - first, 0), last - first) for v in values], xp.int_dtype)
        none = xp.asarray([v < 0 or v >= n_tok for v in values], xp.int_dtype).reshape((1, -1, *(1,) * len(own))) == 1
        lo, hi = (k.where(none, 0.0, a[:, at]) for a in (lo, hi))
    return Box(lo.reshape((B, *e_shape, *own)), hi.reshape((B, *e_shape, *own)), axes, x.finite)


def ranked_sum_rule(iv: IntervalEvaluation, n: Node) -> Box | None:
    """sum<i>(heaviside(rank[i] - t) * X[i]) adds exactly s = n - t - 1 tokens (clipped to 0..n), every token with
    rank_lo > t and none with rank_hi <= t: [sum forced X_lo + the s - #forced smallest undecided X_lo, sum forced
    X_hi + the s - #forced largest undecided X_hi]. heaviside(t - rank[i]): s = t tokens, those ranked < t."""
    found = _matched(iv, match_ranked_sum, n)
    if found is None:
        return None
    m, r_lo, r_hi = found
    n_tok, t = r_lo.shape[1], m.test.e.value(iv.env)
    xp, k = iv.xp, iv.k
    rows = [token_rows(iv, f, m.i, n_tok) for f in m.rest]
    B = max([r_lo.shape[0], *(r.lo.shape[0] for r, _ in rows)])
    r_lo, r_hi = _batched(xp, r_lo, B), _batched(xp, r_hi, B)
    if m.test.sign > 0:  # rank > t
        size, forced, out = n_tok - min(max(t + 1, 0), n_tok), r_lo > t, r_hi <= t
    else:  # rank < t
        size, forced, out = min(max(t, 0), n_tok), r_hi < t, r_lo >= t
    # the undecided tokens first, then the forced ones, each in index order: the others never enter the sum
    order = xp.argsort(xp.to_dtype(forced, xp.int_dtype) + 2 * xp.to_dtype(out, xp.int_dtype), False)
    undecided = n_tok - out.sum(-1) - forced.sum(-1)  # [B]
    inside = n_tok - out.sum(-1)
    width, spread = (int(a.max()) if B else 0 for a in (inside, undecided))  # B = 0: an empty batch
    order = order[:, :width]
    pos = k.arange(width)[None, :]
    terms = None
    for r, offset in rows:
        at = order + offset
        lo = k.rows(_batched(xp, r.lo, B), at)
        box = Box(lo, lo if r.exact else k.rows(_batched(xp, r.hi, B), at), (), r.finite)
        terms = box if terms is None else interval_mul(k, *_own_aligned(terms, box), ())
    if terms is None:  # no other factor: the sum counts the tokens
        one = iv.as_dtype(pos < inside[:, None])
        terms = Box(one, one, ())
    extra = (1,) * (terms.lo.ndim - 2)
    shaped = lambda a: a.reshape(a.shape + extra)
    is_forced = shaped((pos >= undecided[:, None]) & (pos < inside[:, None]))
    lo, hi = k.where(is_forced, terms.lo, 0.0).sum(1), k.where(is_forced, terms.hi, 0.0).sum(1)
    if spread:  # and the `missing` smallest (largest) undecided terms
        missing = size - forced.sum(-1)  # [B]: how many undecided tokens are in the set
        is_undecided = shaped(pos[:, :spread] < undecided[:, None])
        inf = float("inf")
        lo = lo + k.least_sums(k.where(is_undecided, terms.lo[:, :spread], inf), missing)
        hi = hi - k.least_sums(k.where(is_undecided, -terms.hi[:, :spread], inf), missing)
    return Box(lo, hi, (), terms.finite)


def _batched(xp: Any, a: Any, B: int) -> Any:
    return a if a.shape[0] == B else xp.broadcast_to(a, (B, *a.shape[1:]))


def _own_aligned(a: Box, b: Box) -> tuple[Box, Box]:
    """Two [B, m, *own] boxes with their own shapes right-aligned (as elementwise ops broadcast)."""
    rank = max(a.lo.ndim, b.lo.ndim)

    def pad(x: Box) -> Box:
        if x.lo.ndim == rank:
            return x
        shape = (*x.lo.shape[:2], *(1,) * (rank - x.lo.ndim), *x.lo.shape[2:])
        lo = x.lo.reshape(shape)
        return Box(lo, lo if x.exact else x.hi.reshape(shape), (), x.finite)
    return pad(a), pad(b)


@dataclass(frozen=True)
class BoundRule:
    """A structural bound rule with its name and its one line of mathematics (docs/rules.md, section Bounds)."""

    name: str
    fn: Any  # (IntervalEvaluation, Node) -> Box | None
    math: str

    def __call__(self, iv: IntervalEvaluation, n: Node) -> Box | None:
        return self.fn(iv, n)


STRUCTURAL_RULES: tuple[BoundRule, ...] = (
    BoundRule("rank-interval", rank_rule,
              "rank[i] in [#{j : j certainly before i}, n - 1 - #{j : j certainly after i}]"),
    BoundRule("selected-row", selected_row_rule,
              "sum<i < n>(delta(rank[i] - e) * X[i]) in hull{X[i] : rank_lo[i] <= e <= rank_hi[i]}"),
    BoundRule("ranked-sum", ranked_sum_rule,
              "sum<i < n>(heaviside(rank[i] - t) * X[i]) in [sum_{forced} X_lo + the m least undecided X_lo, "
              "sum_{forced} X_hi + the m greatest undecided X_hi]"),
)
