"""Selections -> sorted order: topk indices and an argsort's slice are a range of a stable sort, their complement
is the rest of it, which a sum may visit in any order, and a mean of moved rows is their sum over a size."""

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


@rule("argsort-gather", "gather(X, argsort(key, d)[a:b]) = sort_by_key(X, key, d)[a:b]  (and unsliced, all rows)")
def argsort_gather(n: Node, ctx: Context) -> Node | None:
    match n:
        case Node(op=Op.GATHER, src=(X, Node(op=Op.ARGSORT, src=(key,), arg=d))) if X.shape[:1] == key.shape:
            return node(Op.SORT_BY_KEY, (X, key), d)
        case Node(op=Op.GATHER, src=(X, Node(op=Op.SLICE, src=(Node(op=Op.ARGSORT, src=(key,), arg=d),),
                                             arg=(0, a, b)))) if X.shape[:1] == key.shape:
            return node(Op.SLICE, (node(Op.SORT_BY_KEY, (X, key), d),), (0, a, b))
    return None


def head(idx: Node) -> tuple[Node, Affine] | None:
    """(key, k) when idx lists the k largest keys, largest first: topk(key, k) or argsort(key, descending)[:k]."""
    match idx:
        case Node(op=Op.TOPK, src=(key,), arg=k):
            return key, k
        case Node(op=Op.SLICE, src=(Node(op=Op.ARGSORT, src=(key,), arg=True),), arg=(0, a, k)) if a == Affine():
            return key, k
    return None


def _complement_of_head(n: Node) -> bool:
    return n.op is Op.COMPLEMENT and head(n.src[0]) is not None


@rule("complement-sum",
      "sum<m < n - k>(f(gather(A, complement(topk(key, k), n))[m])) = "
      "sum<k <= r < n>(f(sort_by_key(A, key, descending=True)[r]))  (a sum does not depend on order; "
      "argsort(key, descending=True)[:k] alike)")
def complement_sum(n: Node, ctx: Context) -> Node | None:
    if n.op is not Op.SUM:
        return None
    m, body = n.arg, n.src[0]
    uses = [u for u in body.toposort() if u.op is Op.INDEX and u.arg == 0 and u.src[1].arg == Affine.of(m)
            and u.src[0].op is Op.GATHER and _complement_of_head(u.src[0].src[1])]
    comps = {u.src[0].src[1] for u in uses}
    if len(comps) != 1:
        return None
    comp = comps.pop()
    (key, k), total = head(comp.src[0]), comp.arg  # type: ignore[misc]
    if m.lo != Affine() or m.hi != total - k or total != key.shape[0]:  # complement of all n tokens only
        return None
    r = fresh("r", k, total, [body], ctx.sizes)
    new_body = replace_nodes(body, {u: node(Op.INDEX, (node(Op.SORT_BY_KEY, (u.src[0].src[0], key), True),
                                                       affine(r)), 0) for u in uses})
    if m in new_body.free:  # m is used other than through the complement: not this rule's shape
        return None
    return node(Op.SUM, (new_body,), r)


@rule("mean-of-rows",
      "mean(Y[a:b], 0) = sum<a <= r < b>(Y[r]) / (b - a)  for rows Y moved by an order (a gather or a sort_by_key; "
      "unsliced: a = 0, b = len(Y))")
def mean_of_rows(n: Node, ctx: Context) -> Node | None:
    if n.op is not Op.MEAN or n.arg != 0:
        return None
    rows, a, b = n.src[0], Affine(), n.src[0].shape[0]
    if rows.op is Op.SLICE and rows.arg[0] == 0:
        rows, a, b = rows.src[0], rows.arg[1], rows.arg[2]
    if rows.op not in (Op.GATHER, Op.SORT_BY_KEY):
        return None
    r = fresh("r", a, b, [rows], ctx.sizes)
    total = node(Op.SUM, (node(Op.INDEX, (rows, affine(r)), 0),), r)
    return node(Op.DIV, (total, affine(b - a)))


SELECT = Pass("select", (topk_gather, argsort_gather, complement_sum, mean_of_rows),
              "topk, argsort slices and complements become ranges of a stable sort; a mean of them, a sum over a size")
