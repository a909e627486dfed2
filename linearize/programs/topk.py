"""The Top-K baseline: EViT's selection without the fused token."""

from __future__ import annotations

from ..ir.build import cat, define, gather, mean, sizes, tensor, topk
from ..ir.program import Program, program


def topk_pruning() -> Program:
    N, C, H, k = sizes("N C H k")
    x = tensor("x", N + 1, C)
    attn = tensor("attn", H, N + 1, N + 1)
    cls_attn = define("cls_attn", mean(attn[:, 0, 1:], axis=0))
    x_others = gather(x[1:], topk(cls_attn, k))  # [k, C] largest first
    return program(
        "topk", [x, attn], cat(x[0:1], x_others),
        sizes={k: (1, N)}, early_returns=[(k, N, x)],
        doc="Top-K: keep the CLS token and the k tokens with the largest head-averaged CLS attention, "
            "in descending order. k == N returns x unchanged.",
    )
