"""Sharing comparisons. A pair of keys needs one comparison: heaviside(a - b) gives the other order too, since
heaviside(b - a) + delta(a - b) = 1 - heaviside(a - b). The stable rank counts, for j < i, the keys that are larger
or equal (1 - greater[i, j]) and, for j > i, the keys that are larger (greater[j, i]): both read one table, at the
pairs below its diagonal only, so a stable ranking of n keys costs n(n - 1)/2 comparisons instead of
n^2 + n(n - 1)/2."""

from __future__ import annotations

from ..ir import Affine, Node, Op, Sym, node
from ..ir.algebra import fresh
from ..ir.build import define, heaviside, index, stack_over
from .engine import Context, Pass, rule


def table(key: Node, descending: bool) -> Node:
    """greater[a, b] = heaviside(key[a] - key[b]) (less[a, b] = heaviside(key[b] - key[a]) for ascending ranks)."""
    a, b = index("a", key.shape[0]), index("b", key.shape[0])
    if descending:
        return define("greater", a, stack_over(b, heaviside(key[a] - key[b])))
    return define("less", a, stack_over(b, heaviside(key[b] - key[a])))


def _ref(n: Node, var: Sym | Affine) -> Node | None:
    """The key of `key[var]`, else None."""
    if n.op is Op.INDEX and n.arg == 0 and n.src[1].arg == Affine.of(var):
        return n.src[0]
    return None


def _counted(d: Node) -> tuple[Node, bool] | None:
    """(key, descending) for num_greater[i] = sum<j < n>(heaviside(key[j] - key[i])) (num_less: key[i] - key[j])."""
    if d.op is not Op.DEF or d.src[0].op is not Op.STACK or d.src[0].src[0].op is not Op.SUM:
        return None
    i, s = d.src[0].arg, d.src[0].src[0]
    j, h = s.arg, s.src[0]
    if h.op is not Op.HEAVISIDE or h.src[0].op is not Op.SUB or j.lo != Affine() or i.lo != Affine():
        return None
    p, q = h.src[0].src
    for descending, (first, second) in ((True, (j, i)), (False, (i, j))):
        key = _ref(p, first)
        if key is not None and key is _ref(q, second) and j.hi == i.hi == key.shape[0]:
            return key, descending
    return None


@rule("shared-rank",
      "num_greater[i] + sum<j < i>(delta(key[j] - key[i])) = i - sum<j < i>(greater[i, j]) + "
      "sum<i < j < n>(greater[j, i]),  greater[a, b] = heaviside(key[a] - key[b])  (one comparison per pair)")
def shared_rank(n: Node, ctx: Context) -> Node | None:
    if n.op is not Op.ADD:
        return None
    count, ties = n.src
    if count.op is not Op.INDEX or count.arg != 0 or ties.op is not Op.SUM or ties.src[0].op is not Op.DELTA:
        return None
    found, e = _counted(count.src[0]), count.src[1]
    j, diff = ties.arg, ties.src[0].src[0]
    if found is None or j.lo != Affine() or j.hi != e.arg or diff.op is not Op.SUB:
        return None
    key, descending = found
    refs = {_ref(diff.src[0], j), _ref(diff.src[1], e.arg)}, {_ref(diff.src[0], e.arg), _ref(diff.src[1], j)}
    if {key} not in refs:
        return None
    t = table(key, descending)
    below, above = fresh("j", 0, e.arg, [e], ctx.sizes), fresh("j", e.arg + 1, key.shape[0], [e], ctx.sizes)
    below_sum = node(Op.SUM, (t[e][affine_of(below)],), below)
    above_sum = node(Op.SUM, (t[affine_of(above)][e],), above)
    return e - below_sum + above_sum


def affine_of(v: Sym) -> Node:
    return node(Op.AFFINE, (), Affine.of(v))


SHARE = Pass("share", (shared_rank,), "the stable rank reads one comparison per pair of keys")
