"""Rows selected in index order -> prefix counts. With a 0/1 `keep` known per token, the kept token i goes to
position #{kept j < i} = kept_upto[i] - 1, where kept_upto[i] = #{kept j <= i}:
out[p] = sum<i < n>(delta(kept_upto[i] - 1 - p) * keep[i] * X[i]). `in_index_order` builds that for any mask (ToMe's
unmerged rows use it); the rule reads the mask off a complement of ranked indices. The count includes token i
itself so that no prefix is an empty sum: an empty sum is a public 0, which a cost model would have to special-case."""

from __future__ import annotations

from collections.abc import Iterable

from ..ir import Affine, Node, Op, affine, node
from ..ir.algebra import fresh
from ..ir.build import define, delta, stack_over, sum_over
from .engine import Context, Pass, rule


def in_index_order(X: Node, keep: Node, count: Affine, sizes: Iterable[str] = ()) -> Node:
    """The rows X[i] with keep[i] == 1, in index order: [count, *X.shape[1:]].

    `keep` [n] must be 0/1 with exactly `count` ones; kept token i goes to position kept_upto[i] - 1, where
    kept_upto[i] = sum<j < i + 1>(keep[j]).
    """
    n, names = keep.shape[0], tuple(sizes)
    i = fresh("i", 0, n, [X, keep], names)
    j = fresh("j", 0, Affine.of(i) + 1, [X, keep], names)
    upto = define("kept_upto", affine(i), sum_over(affine(j), keep[affine(j)]))
    p = fresh("p", 0, count, [X, keep], names)
    row = delta(upto[affine(i)] - affine(Affine.of(p) + 1)) * keep[affine(i)] * X[affine(i)]
    return stack_over(affine(p), sum_over(affine(i), row))


def ranked_range(idx: Node) -> tuple[Node, bool, Affine, Affine] | None:
    """(key, descending, a, b) when idx lists the tokens of stable rank a <= rank < b: topk(key, k) (ranks [0, k)),
    argsort(key, d) (all) or argsort(key, d)[a:b]."""
    match idx:
        case Node(op=Op.TOPK, src=(key,), arg=k):
            return key, True, Affine(), k
        case Node(op=Op.ARGSORT, src=(key,), arg=d):
            return key, d, Affine(), key.shape[0]
        case Node(op=Op.SLICE, src=(Node(op=Op.ARGSORT, src=(key,), arg=d),), arg=(0, a, b)):
            return key, d, a, b
    return None


def universe(idx: Node) -> Affine | None:
    """n when idx is a set of distinct indices in range(n) whose membership `member` can say."""
    if idx.op is Op.COMPLEMENT:
        return idx.arg if universe(idx.src[0]) == idx.arg else None
    found = ranked_range(idx)
    return None if found is None else found[0].shape[0]


def member(idx: Node, i: Node, inside: bool, ctx: Context) -> Node:
    """1 if token i is in idx (inside) or not (not inside), else 0, as steps of its rank; idx has a universe."""
    if idx.op is Op.COMPLEMENT:
        return member(idx.src[0], i, not inside, ctx)
    key, descending, a, b = ranked_range(idx)  # type: ignore[misc]
    rank = node(Op.INDEX, (node(Op.RANK, (key,), descending), i), 0)
    n = key.shape[0]
    from_a = None if ctx.nonneg(-a) else node(Op.HEAVISIDE, (rank - affine(a - 1),))  # rank >= a
    below_b = None if ctx.nonneg(b - n) else node(Op.HEAVISIDE, (affine(b) - rank,))  # rank < b
    if not inside and (from_a is None) != (below_b is None):  # outside one bound: the other side of it
        return node(Op.HEAVISIDE, (affine(a) - rank,)) if below_b is None else node(Op.HEAVISIDE,
                                                                                    (rank - affine(b - 1),))
    masks = [m for m in (from_a, below_b) if m is not None]
    hit = node(Op.CONST, (), 1.0) if not masks else masks[0] if len(masks) == 1 else masks[0] * masks[1]
    return hit if inside else affine(1) - hit


@rule("index-order",
      "gather(X, complement(idx, n)) = [sum<i < n>(delta(kept_upto[i] - p - 1) * keep[i] * X[i]) for p in "
      "range(n - len(idx))],  keep[i] = 1 - [i in idx],  kept_upto[i] = sum<j <= i>(keep[j])  "
      "(the kept token i goes to position #{kept j < i}; [i in idx] from ranks)")
def index_order(n: Node, ctx: Context) -> Node | None:
    match n:
        case Node(op=Op.GATHER, src=(X, Node(op=Op.COMPLEMENT, src=(idx,), arg=total) as comp)):
            if universe(comp) != total or X.shape[0] != total:
                return None
            i = fresh("i", 0, total, [X], ctx.sizes)
            keep = define("keep", affine(i), member(idx, affine(i), False, ctx))
            return in_index_order(X, keep, total - idx.shape[0], ctx.sizes)
    return None


ORDER = Pass("index-order", (index_order,), "rows kept in index order are placed by the prefix count of the kept")
