"""Top-k selection -> sorted order: topk indices are the head of a stable descending sort, and their
complement is its tail, which a sum may visit in any order."""

from __future__ import annotations

from ..ir import Affine, Node, Op, affine, node
from ..ir.algebra import fresh, replace_nodes
from .engine import Context, Pass, rule


@rule("topk-gather", "gather(X, topk(key, k)) = sort_by_key(X, key, descending=True)[:k]")
def topk_gather(n: Node, ctx: Context) -> Node | None:
    match n:
        case Node(op=Op.GATHER, src=(X, Node(op=Op.TOPK, src=(key,), arg=k))):
            return node(Op.SLICE, (node(Op.SORT_BY_KEY, (X, key), True),), (0, Affine(), k))
    return None


def _complement_of_topk(n: Node) -> bool:
    return n.op is Op.COMPLEMENT and n.src[0].op is Op.TOPK


@rule("complement-sum",
      "sum<m < n - k>(f(gather(A, complement(topk(key, k), n))[m])) = "
      "sum<k <= r < n>(f(sort_by_key(A, key, descending=True)[r]))  (a sum does not depend on order)")
def complement_sum(n: Node, ctx: Context) -> Node | None:
    if n.op is not Op.SUM:
        return None
    m, body = n.arg, n.src[0]
    uses = [u for u in body.toposort() if u.op is Op.INDEX and u.arg == 0 and u.src[1].arg == Affine.of(m)
            and u.src[0].op is Op.GATHER and _complement_of_topk(u.src[0].src[1])]
    comps = {u.src[0].src[1] for u in uses}
    if len(comps) != 1:
        return None
    comp = comps.pop()
    topk, total = comp.src[0], comp.arg
    key, k = topk.src[0], topk.arg
    if m.lo != Affine() or m.hi != total - k or total != key.shape[0]:  # complement of all n tokens only
        return None
    r = fresh("r", k, total, [body])
    new_body = replace_nodes(body, {u: node(Op.INDEX, (node(Op.SORT_BY_KEY, (u.src[0].src[0], key), True),
                                                       affine(r)), 0) for u in uses})
    if m in new_body.free:  # m is used other than through the complement: not this rule's shape
        return None
    return node(Op.SUM, (new_body,), r)


SELECT = Pass("select", (topk_gather, complement_sum),
              "topk and its complement become the head and tail of a stable descending sort")
