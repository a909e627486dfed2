"""The hand derivation: the hand linearization of EViT published with EViT's verification plans ("Formalization
for Linearization", the heaviside version), transcribed as written -- not corrected. The name `evit-seed` is
that of the document it comes from. `linearize check evit-seed` compares it with EViT's torch reference.

The hand derivation writes (N non-CLS tokens, k kept):

    X_non_cls = X[1:]                                                       # [N, C]
    scores = attn[0, 1:]                                                    # [N]
    extra_token = sum<i>(heaviside(scores[i] - scores[k]) * X_non_cls[i])   # [1, C]
    X_new = [kth_largest(X_non_cls, scores, r) for r in range(N)]           # sort_by_key, descending
    return cat(X[0:1], X_new[:k], extra_token)
    # kth_largest(X, key, r): num_greater[i] = sum<j>(heaviside(key[j] - key[i]))
    #                         return sum<i>(delta1(num_greater[i] - r) * X[i])

The one adaptation is the interface: the document's attn is one head, [N+1, N+1], and its Overview averages the
heads first (cls_attn.mean(dim=1)); here attn is [H, N+1, N+1] and scores is that head mean, as in `evit`,
so both take the same inputs. Everything else is the document's: scores[k] (the score of token k, not the k-th
largest), an unweighted sum of the tokens scoring above it, ranks with no tie-break, no `if k == N`.
"""

from __future__ import annotations

from ..ir.build import cat, define, delta, heaviside, index, mean, sizes, stack_over, sum_over, tensor
from ..ir.program import Program, program


def evit_seed() -> Program:
    N, C, H, k = sizes("N C H k")
    X = tensor("x", N + 1, C)
    attn = tensor("attn", H, N + 1, N + 1)
    X_non_cls = X[1:]  # [N, C]
    scores = define("scores", mean(attn[:, 0, 1:], axis=0))  # [N]; the document: attn[0, 1:] of one head
    i, j, r = index("i", N), index("j", N), index("r", N)
    extra_token = sum_over(i, heaviside(scores[i] - scores[k]) * X_non_cls[i])  # [C]
    num_greater = define("num_greater", i, sum_over(j, heaviside(scores[j] - scores[i])))  # kth_largest's
    X_new = stack_over(r, sum_over(i, delta(num_greater[i] - r) * X_non_cls[i]))  # [N, C] sort_by_key
    return program(
        "evit-seed", [X, attn], cat(X[0:1], X_new[:k], extra_token[None]), sizes={k: (1, N)},
        doc="The hand derivation: the heaviside linearization of EViT published with EViT's verification plans, "
            "transcribed as written (not corrected).",
        meta={"reference": "evit"},
    )
