"""EViT's token reorganization (Liang et al. 2022), written as the official code path
quoted by the hand derivation's document ("Overview") is."""

from __future__ import annotations

from ..ir.build import cat, complement, define, gather, index, mean, sizes, sum_over, tensor, topk
from ..ir.program import Program, program


def evit() -> Program:
    N, C, H, k = sizes("N C H k")
    x = tensor("x", N + 1, C)  # row 0 is the CLS token
    attn = tensor("attn", H, N + 1, N + 1)
    cls_attn = define("cls_attn", mean(attn[:, 0, 1:], axis=0))  # [N] head-averaged CLS attention
    idx = topk(cls_attn, k)  # [k] largest first
    non_cls = x[1:]  # [N, C]
    x_others = gather(non_cls, idx)  # [k, C]
    compl = complement(idx, N)  # [N - k] the dropped tokens, ascending
    non_topk = gather(non_cls, compl)  # [N - k, C]
    non_topk_attn = gather(cls_attn, compl)  # [N - k]
    m = index("m", N - k)
    extra_token = sum_over(m, non_topk_attn[m] * non_topk[m])  # [C] a sum, not normalized
    return program(
        "evit", [x, attn], cat(x[0:1], x_others, extra_token[None]),
        sizes={k: (1, N)}, early_returns=[(k, N, x)],
        doc="EViT: keep the CLS token and the k tokens with the largest head-averaged CLS attention, "
            "in descending order, then one fused token: the attention-weighted sum of the dropped tokens. "
            "k == N returns x unchanged.",
    )
