"""ToMe's token merging (Bolya et al. 2023), written as the official code is: `bipartite_soft_matching(metric, r,
class_token=True)` then `merge_wavg(merge, x, size)` (facebookresearch/ToMe, tome/merge.py), for one image.

    metric = metric / metric.norm(dim=-1, keepdim=True)
    a, b = metric[..., ::2, :], metric[..., 1::2, :]
    scores = a @ b.transpose(-1, -2)
    scores[..., 0, :] = -math.inf                      # here: the CLS row is left out of the scores instead
    node_max, node_idx = scores.max(dim=-1)
    edge_idx = node_max.argsort(dim=-1, descending=True)[..., None]
    unm_idx = edge_idx[..., r:, :]                     # sorted back to index order, with a class token
    src_idx = edge_idx[..., :r, :]
    dst_idx = node_idx[..., None].gather(dim=-2, index=src_idx)
    merge(y) = cat(y_even[unm_idx], y_odd.scatter_reduce(dst_idx, y_even[src_idx], "sum"))
    x, size = merge(x * size) / merge(size), merge(size)

The -inf of the CLS row only keeps the class token out of the merge: it is the unique smallest edge weight, so it
is never among the r merged and sorts first among the unmerged. Here the scores have one row per non-CLS even row,
and the class token is the first output row unconditionally (no computation with infinities). `unm_idx` sorted is
`torch.sort(edge_idx[r:])`, written `sort_indices(edge_idx[r:], A)` (the complement of the complement: the
indices in ascending order). r is clipped to (T - 1) // 2, the number of non-CLS even rows; r == 0 returns (x,
size) unchanged.
"""

from __future__ import annotations

from ..ir.build import (
    amax,
    argmax,
    argsort,
    cat,
    define,
    gather,
    index,
    scatter_add,
    sizes,
    sort_indices,
    sqrt,
    stack_over,
    sum_over,
    tensor,
)
from ..ir.nodes import Node
from ..ir.program import Program, program


def tome() -> Program:
    T, C, c, r = sizes("T C c r")
    x = tensor("x", T, C)  # row 0 is the CLS token
    metric = tensor("metric", T, c)  # the keys averaged over the heads
    size = tensor("size", T, 1)  # tokens merged into each row so far (ones at the first layer)
    t, d = index("t", T), index("d", c)
    norm = define("norm", t, sqrt(sum_over(d, metric[t, d] * metric[t, d])))  # [T] L2 norms
    unit = define("unit", t, metric[t] / norm[t])  # [T, c]
    a, b = define("a", unit[::2]), define("b", unit[1::2])  # even rows (a[0] is CLS), odd rows
    A, B = (T - 1) // 2, T // 2  # non-CLS even rows, odd rows
    i, j, e = index("i", A), index("j", B), index("e", c)
    scores = define("scores", i, stack_over(j, sum_over(e, a[i + 1, e] * b[j, e])))  # [A, B] a[1:] @ b^T: no CLS
    node_max = define("node_max", amax(scores, axis=1))  # [A] each even row's best similarity
    node_idx = argmax(scores, axis=1)  # [A] and its first most similar odd row
    edge_idx = argsort(node_max, descending=True)  # [A]
    unm_idx = sort_indices(edge_idx[r:], A)  # [A - r] the even rows that stay, sorted back to index order
    src_idx = edge_idx[:r]  # [r] the even rows that merge
    dst_idx = gather(node_idx, src_idx)  # [r] the odd row each merges into

    def merge(y: Node) -> Node:
        even, odd = y[::2], y[1::2]
        return cat(even[0:1], gather(even[1:], unm_idx), scatter_add(odd, dst_idx, gather(even[1:], src_idx)))

    merged = define("merged", merge(define("weighted", x * size)))  # [T - r, C] sums of size * x
    merged_size = define("merged_size", merge(size))  # [T - r, 1]
    return program(
        "tome", [x, metric, size], (merged / merged_size, merged_size),
        sizes={r: (0, A)}, clip=(r,), early_returns=[(r, 0, (x, size))],
        doc="ToMe: each non-CLS even row picks its most similar odd row (cosine similarity of the metric, the first "
            "on ties); the r even rows with the highest similarity merge into their pick, a size-weighted average. "
            "Returns (x', size'): CLS, the unmerged even rows in index order, then every odd row. r is clipped to "
            "(T - 1) // 2; r == 0 returns (x, size).",
        roles={"x": "feature", "metric": "score", "size": "value"},
        requires={"size": "positive", "metric": "normable_rows"},
        meta={"compared": "scores"},  # what prove enumerates the orderings of: the similarities (verify/cut.py)
    )
