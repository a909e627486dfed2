"""POMT, Prune One More Token (nickjeliopoulos/PruneOneMoreToken, `POMTMetric` + `POMTForward`), per image, written
as the official code is: max over heads, a per-token sum normalized by its maximum, a softmax of the values' head
maximum, an argsort, and the mean of the discarded rows.

One difference, on purpose: the official code divides `metric_attn` by `torch.max` over the whole batch tensor, so
an image's selection depends on the other images in its batch. This program is per image: it divides by the
maximum over the image's own tokens, and answers to `linearize.reference.pomt_per_image` (`pomt_stable` on ties);
the two agree with the official `pomt` at B = 1 (docs/semantics.md, docs/methods.md). attn must be positive (a
softmax's values): the official code accepts zeros, but divides 0 by 0 when an image's patch attention is all zero.
"""

from __future__ import annotations

from typing import Any

from ..ir.build import amax, argsort, cat, define, exp, gather, index, mean, sizes, sum_over, tensor
from ..ir.nodes import Node
from ..ir.program import Program, program


def pomt() -> Program:
    N, C, H, D, r = sizes("N C H D r")
    x = tensor("x", N + 1, C)  # row 0 is the CLS token
    attn = tensor("attn", H, N + 1, N + 1)  # the softmax attention
    v = tensor("v", H, N + 1, D)  # the values
    i, d, t = index("i", N), index("d", D), index("t", N + 1)
    patch_max = amax(attn[:, 1:, 1:], axis=0)  # [N, N]: max over heads, patch queries and keys only
    attn_sum = define("attn_sum", sum_over(i, patch_max[i]))  # [N]: summed over the query rows
    metric_attn = define("metric_attn", attn_sum / amax(attn_sum, axis=0))  # the image's own maximum (see above)
    v_score = define("v_score", sum_over(d, amax(v, axis=0)[:, d]))  # [N + 1]: max over heads, summed over D
    e = define("v_exp", exp(v_score - amax(v_score, axis=0)))  # softmax over all N + 1 tokens, as torch shifts it
    metric_v = define("metric_v", e / sum_over(t, e[t]))
    metric = define("metric", metric_attn + metric_v[1:])  # [N]: the CLS entry dropped
    out, early = _forward(x, metric, N, r)
    return program(
        "pomt", [x, attn, v], out, sizes={r: (0, N)}, early_returns=early,
        doc="POMT: score each patch token by its max-over-heads attention received (normalized by the image's "
            "maximum) plus a softmax of its values' max over heads; keep the CLS token and the N - 1 - r best, in "
            "descending order, then the mean of the r + 1 others. r == 0 or N - 1 - r <= 1 returns x unchanged.",
        meta={"reference": "pomt_per_image", "compared": "metric"},  # prove: every weak ordering of the metric (cut.py)
        requires={"attn": "positive"},
    )


def _forward(x: Node, metric: Node, N: Node, r: Node) -> tuple[Node, list[tuple[Any, ...]]]:
    """POMTForward: the output and the early returns, given the metric [N]."""
    order = argsort(metric, descending=True)  # [N]
    T = N - 1 - r  # kept; the other r + 1 are replaced by their mean
    kept = gather(x[1:], order[:T])  # [T, C] largest first
    x_discarded = mean(gather(x[1:], order[T:]), axis=0)  # [C]
    return cat(x[0:1], kept, x_discarded[None]), [(r, 0, x), (T, "<=", 1, x)]


def pomt_selection() -> Program:
    """POMTForward alone, with the metric as an input: what `linearize prove` can settle. In `pomt` the rewrites
    touch only this part; the metric is one shared node of both forms, so the selection's proof for every weak
    ordering of the metric carries over (`linearize prove linearize.programs.pomt:pomt_selection`)."""
    N, C, r = sizes("N C r")
    x, metric = tensor("x", N + 1, C), tensor("metric", N)
    out, early = _forward(x, metric, N, r)
    return program("pomt-selection", [x, metric], out, sizes={r: (0, N)}, early_returns=early,
                   doc="POMT's token selection given its metric: the N - 1 - r best rows, then the mean of the rest.")
