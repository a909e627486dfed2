"""Ranks -> comparisons. The stable rank counts the larger keys and, to break ties, the equal keys
at lower indices; the hand derivation's count of larger keys alone is a rank only when keys are distinct."""

from __future__ import annotations

from ..ir import Affine, Node, Op
from ..ir.build import define, delta, heaviside, index, sum_over
from .engine import Context, Pass, rule


def _vars(n: int | Affine) -> tuple[Node, Node, Node]:
    i = index("i", 0, n)
    return i, index("j", 0, n), index("j", 0, i)  # j over all tokens, and j over tokens before i


def num_greater(key: Node, descending: bool) -> Node:
    """num_greater[i] = sum<j>(heaviside(key[j] - key[i])) (num_less for an ascending order)."""
    i, j, _ = _vars(key.shape[0])
    if descending:
        return define("num_greater", i, sum_over(j, heaviside(key[j] - key[i])))
    return define("num_less", i, sum_over(j, heaviside(key[i] - key[j])))


@rule("stable-rank",
      "rank(key)[i] = sum<j < n>(heaviside(key[j] - key[i])) + sum<j < i>(delta(key[j] - key[i]))  "
      "(ties: the lower index ranks first)")
def stable_rank(n: Node, ctx: Context) -> Node | None:
    if n.op is not Op.RANK:
        return None
    key = n.src[0]
    i, _, j_before = _vars(key.shape[0])
    counted = num_greater(key, n.arg)
    name = "rank" if n.arg else "rank_ascending"
    return define(name, i, counted[i] + sum_over(j_before, delta(key[j_before] - key[i])))


@rule("distinct-rank", "rank(key)[i] = sum<j < n>(heaviside(key[j] - key[i]))  (sound only for distinct keys)")
def distinct_rank(n: Node, ctx: Context) -> Node | None:
    if n.op is not Op.RANK:
        return None
    return num_greater(n.src[0], n.arg)


STABLE_RANKS = Pass("stable-ranks", (stable_rank,), "ranks become comparison counts with a stable tie-break")
DISTINCT_RANKS = Pass("distinct-ranks", (distinct_rank,),
                      "the hand derivation's ranks: comparison counts without a tie-break (wrong when keys tie)")

