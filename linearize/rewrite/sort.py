"""Sorted order -> ranks: a sorted row is the row whose stable rank matches, and a sum over a range of
sorted positions is a sum over tokens masked by rank. Both hold because stable ranks are a permutation."""

from __future__ import annotations

from ..ir import Affine, Node, Op, affine, node
from ..ir.algebra import fresh, product, replace_nodes
from .engine import Context, Pass, rule


@rule("sort-to-kth", "sort_by_key(X, key) = [kth(X, key, r) for r in range(n)]")
def sort_to_kth(n: Node, ctx: Context) -> Node | None:
    if n.op is not Op.SORT_BY_KEY:
        return None
    X, key = n.src
    r = fresh("r", 0, key.shape[0], [], ctx.sizes)
    return node(Op.STACK, (node(Op.KTH, (X, key, affine(r)), n.arg),), r)


@rule("kth-to-rank", "kth(X, key, r) = sum<i < n>(delta(rank(key)[i] - r) * X[i])  (one i has rank r)")
def kth_to_rank(n: Node, ctx: Context) -> Node | None:
    if n.op is not Op.KTH:
        return None
    X, key, r = n.src
    i = fresh("i", 0, key.shape[0], [r], ctx.sizes)
    rank = node(Op.RANK, (key,), n.arg)
    hit = node(Op.DELTA, (node(Op.SUB, (node(Op.INDEX, (rank, affine(i)), 0), r)),))
    return node(Op.SUM, (node(Op.MUL, (hit, node(Op.INDEX, (X, affine(i)), 0))),), i)


@rule("sorted-range-sum",
      "sum<lo <= r < hi>(f(sort_by_key(A, key)[r])) = "
      "sum<i < n>(heaviside(rank(key)[i] - lo + 1) * heaviside(hi - rank(key)[i]) * f(A[i]))")
def sorted_range_sum(n: Node, ctx: Context) -> Node | None:
    if n.op is not Op.SUM:
        return None
    r, body = n.arg, n.src[0]
    uses = [u for u in body.toposort() if u.op is Op.INDEX and u.arg == 0 and u.src[1].arg == Affine.of(r)
            and u.src[0].op is Op.SORT_BY_KEY]
    orders = {(u.src[0].src[1], u.src[0].arg) for u in uses}
    if len(orders) != 1:
        return None
    key, descending = orders.pop()
    i = fresh("i", 0, key.shape[0], [body], ctx.sizes)
    new_body = replace_nodes(body, {u: node(Op.INDEX, (u.src[0].src[0], affine(i)), 0) for u in uses})
    if r in new_body.free or r.lo.vars or r.hi.vars:
        return None
    rank_i = node(Op.INDEX, (node(Op.RANK, (key,), descending), affine(i)), 0)
    masks = []
    if not ctx.nonneg(-r.lo):  # rank >= lo, i.e. rank - lo + 1 > 0 for integer ranks (trivial when lo <= 0)
        masks.append(node(Op.HEAVISIDE, (node(Op.SUB, (rank_i, affine(r.lo - 1))),)))
    if not ctx.nonneg(r.hi - key.shape[0]):  # rank < hi (trivial when hi >= n)
        masks.append(node(Op.HEAVISIDE, (node(Op.SUB, (affine(r.hi), rank_i)),)))
    return node(Op.SUM, (product([*masks, new_body]),), i)


MASKED_SUMS = Pass("masked-sums", (sorted_range_sum,),
                   "sums over a range of sorted positions become sums over tokens masked by rank")
SORT = Pass("sort", (sort_to_kth, kth_to_rank), "sorted rows become rank-matching sums")
