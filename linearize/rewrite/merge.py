"""Merging (ToMe) -> masked sums: a scatter-add is a sum over the sources masked by where each lands, and the first
maximal index along an axis is the least index among the maximal entries. (ToMe's unmerged rows, put back in
index order, go through the index-order pass, order.py.)"""

from __future__ import annotations

from ..ir import OPS, Affine, Node, Op, Sym, affine, node
from ..ir.algebra import fresh
from ..ir.build import amax, define, delta, stack_over
from .engine import Context, Pass, rule


@rule("scatter-add",
      "scatter_add(X, idx, Y) = [X[q] + sum<m < M>(delta(idx[m] - q) * Y[m]) for q in range(n)]  "
      "(row Y[m] lands on row idx[m])")
def scatter_add(n: Node, ctx: Context) -> Node | None:
    if n.op is not Op.SCATTER_ADD:
        return None
    X, idx, Y = n.src
    q = fresh("q", 0, X.shape[0], [X, idx, Y], ctx.sizes)
    m = fresh("m", 0, idx.shape[0], [X, idx, Y], ctx.sizes)
    qa, ma = affine(q), affine(m)
    lands = node(Op.DELTA, (node(Op.SUB, (node(Op.INDEX, (idx, ma), 0), qa)),))
    added = node(Op.SUM, (node(Op.MUL, (lands, node(Op.INDEX, (Y, ma), 0))),), m)
    return node(Op.STACK, (node(Op.ADD, (node(Op.INDEX, (X, qa), 0), added)),), q)


def _stack(axes: list[Sym], body: Node) -> Node:
    for v in reversed(axes):
        body = stack_over(v, body)
    return body


def _read_as_index(n: Node, ctx: Context) -> bool:
    """Whether a selection (gather, scatter_add, ...) reads n: there it must stay an integer index tensor."""
    return any(n in u.src and OPS[u.op].kind == "selection" for root in ctx.program.roots() for u in root.toposort())


def _named(value: Node, ctx: Context) -> Node:
    """The program's named definition of value, if it has one (ToMe's node_max = amax(scores, axis=1))."""
    return next((d for root in ctx.program.roots() for d in root.toposort() if d.op is Op.DEF and d.src[0] is value),
                value)


@rule("argmax-first",
      "argmax(S, a)[..] = min{j : S[.., j] == max_j' S[.., j']} = "
      "-amax(-[j + L * (1 - delta(S[.., j] - amax(S, a)[..])) for j < L], a)  (the first maximal index; "
      "L = the axis length pushes the others past it; where it is read as a value, not by a selection)")
def argmax_first(n: Node, ctx: Context) -> Node | None:
    if n.op is not Op.ARGMAX or _read_as_index(n, ctx):
        return None
    S, a = n.src[0], n.arg
    L = S.shape[a]
    names = iter(("i", "i'", "i''", "i'''", "i''''"))
    outer = [Sym(next(names), "var", Affine(), d) for k, d in enumerate(S.shape) if k != a]
    j = Sym("j", "var", Affine(), L)
    at = [affine(v) for v in outer]
    entry = S
    for k in range(len(S.shape)):  # S[.., j, ..]
        entry = node(Op.INDEX, (entry, affine(j) if k == a else at.pop(0)), 0)
    best = _named(amax(S, a), ctx)
    for v in outer:
        best = node(Op.INDEX, (best, affine(v)), 0)
    pushed = affine(j) + affine(L) * (1.0 - delta(entry - best))
    axes = outer[:a] + [j] + outer[a:]
    return define("first_max", -amax(_stack(axes, -pushed), a))


MERGE = Pass("merge", (scatter_add,), "a scatter-add becomes a sum over the sources, masked by where each lands")
ARGMAX = Pass("argmax", (argmax_first,), "the first maximal index is the least index among the maximal entries")
