"""DynamicViT's inference-time token selection (raoyongming/DynamicViT, `VisionTransformerDiffPruning.forward`),
written as the official code is: `keep_policy = argsort(score, descending=True)[:k]`, then the rows it names.
`dynamicvit_ordered` sorts the kept indices back into token order, as several DynamicViT-style codes do."""

from __future__ import annotations

from ..ir.build import argsort, cat, gather, sizes, sort_indices, tensor
from ..ir.program import Program, program

# the official kept count is int(init_n * ratio): a floor, where EViT takes the ceiling (eval --keep-rate reads it)
KEEP_RATE = {"keep_rate": "floor"}


def dynamicvit() -> Program:
    N, C, k = sizes("N C k")
    x = tensor("x", N + 1, C)  # row 0 is the CLS token
    score = tensor("score", N)  # the predictor's keep score of each patch token
    keep_policy = argsort(score, descending=True)[:k]  # [k]
    return program(
        "dynamicvit", [x, score], cat(x[0:1], gather(x[1:], keep_policy)), sizes={k: (1, N)},
        doc="DynamicViT: keep the CLS token and the k patch tokens with the largest predicted score, in descending "
            "score order. No early return: k == N returns every token, reordered by score.",
        meta={"reference": "dynamicvit", **KEEP_RATE},
    )


def dynamicvit_ordered() -> Program:
    N, C, k = sizes("N C k")
    x = tensor("x", N + 1, C)
    score = tensor("score", N)
    keep_policy = sort_indices(argsort(score, descending=True)[:k], N)  # torch.sort(keep_policy): token order
    return program(
        "dynamicvit-ordered", [x, score], cat(x[0:1], gather(x[1:], keep_policy)), sizes={k: (1, N)},
        doc="DynamicViT with the kept tokens in index order: the CLS token, then the k patch tokens with the "
            "largest predicted score, in their original order.",
        meta={"reference": "dynamicvit_ordered", **KEEP_RATE},
    )
