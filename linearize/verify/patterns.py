"""The shapes the tight bound rules (selection.py) recognize on the linearized IR: the stable rank as the stable-rank
rule writes it, and sums over every token of a rank test times a term of that token alone (a selected row, a sum
over the tokens ranked above or below a threshold)."""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import Affine, Node, Op, Sym
from ..ir.algebra import factors


def _at(n: Node, var: Sym) -> Node | None:
    """The array of `a[var]` (an index on the leading axis by the variable itself), else None."""
    if n.op is Op.INDEX and n.arg == 0 and n.src[1].op is Op.AFFINE and n.src[1].arg == Affine.of(var):
        return n.src[0]
    return None


def _compares(n: Node, op: Op, first: Sym, second: Sym) -> Node | None:
    """The key of op(key[first] - key[second]), else None."""
    if n.op is not op or n.src[0].op is not Op.SUB:
        return None
    a, b = (_at(s, v) for s, v in zip(n.src[0].src, (first, second)))
    return a if a is not None and a is b else None


def _from_zero(v: Sym, n: Affine | Sym) -> bool:
    return v.lo == Affine() and v.hi == Affine.of(n)


@dataclass(frozen=True)
class RankPattern:
    key: Node
    descending: bool


def match_rank(n: Node) -> RankPattern | None:
    """rank = [count[i] + sum<j < i>(delta(key[j] - key[i])) for i < n] with
    count = [sum<j < n>(heaviside(key[j] - key[i])) for i < n] (key[i] - key[j] for ascending ranks): the stable
    rank as the stable-rank rule writes it, a permutation of 0..n-1."""
    if n.op is not Op.DEF or n.src[0].op is not Op.STACK or n.src[0].src[0].op is not Op.ADD:
        return None
    i, total = n.src[0].arg, n.src[0].src[0]
    for count_at, ties in (total.src, total.src[::-1]):
        count = _at(count_at, i)
        if count is None or ties.op is not Op.SUM or count.op is not Op.DEF or count.src[0].op is not Op.STACK:
            continue
        j = ties.arg
        key = _compares(ties.src[0], Op.DELTA, j, i) or _compares(ties.src[0], Op.DELTA, i, j)
        if key is None or len(key.shape) != 1 or key.free or not (_from_zero(i, key.shape[0]) and _from_zero(j, i)):
            continue
        i2, inner = count.src[0].arg, count.src[0].src[0]
        if inner.op is not Op.SUM or not (_from_zero(i2, key.shape[0]) and _from_zero(inner.arg, key.shape[0])):
            continue
        j2 = inner.arg
        for descending, (first, second) in ((True, (j2, i2)), (False, (i2, j2))):
            if _compares(inner.src[0], Op.HEAVISIDE, first, second) is key:
                return RankPattern(key, descending)
    return None


@dataclass(frozen=True)
class RankTest:
    """A factor op(rank[i] - e) (sign +1) or op(e - rank[i]) (sign -1) of a recognized rank."""

    pos: int
    rank: Node
    e: Affine
    sign: int


def _rank_tests(fs: list[Node], i: Sym, op: Op) -> list[RankTest]:
    found = []
    for pos, f in enumerate(fs):
        if f.op is not op or f.src[0].op is not Op.SUB:
            continue
        a, b = f.src[0].src
        for sign, (r_at, e) in ((1, (a, b)), (-1, (b, a))):
            rank = _at(r_at, i)
            if rank is not None and e.op is Op.AFFINE and i not in e.arg.vars and match_rank(rank) is not None:
                found.append(RankTest(pos, rank, e.arg, sign))
    return found


@dataclass(frozen=True)
class RankSum:
    """sum<i < n>(test(rank[i] ...) * rest) over every token, rest depending on i alone."""

    i: Sym
    test: RankTest
    rest: list[Node]


def _rank_sum(n: Node, op: Op, other: Op) -> RankSum | None:
    if n.op is not Op.SUM:
        return None
    i, fs = n.arg, factors(n.src[0])
    tests = _rank_tests(fs, i, op)
    if len(tests) != 1 or _rank_tests(fs, i, other):
        return None
    t = tests[0]
    rest = fs[:t.pos] + fs[t.pos + 1:]
    if not _from_zero(i, match_rank(t.rank).key.shape[0]) or any(f.free - {i} for f in rest):
        return None
    return RankSum(i, t, rest)


def match_selected_row(n: Node) -> RankSum | None:
    """sum<i < n>(delta(rank[i] - e) * X[i]): the row of the token ranked e."""
    return _rank_sum(n, Op.DELTA, Op.HEAVISIDE)


def match_ranked_sum(n: Node) -> RankSum | None:
    """sum<i < n>(heaviside(rank[i] - t) * X[i]) or heaviside(t - rank[i]): a sum over a fixed number of tokens."""
    found = _rank_sum(n, Op.HEAVISIDE, Op.DELTA)
    return found if found is not None and not n.free and not found.test.e.vars else None
