"""Trusted torch reference for ToMe (Token Merging, Bolya et al. 2023), batched.

Follows ``tome/merge.py`` of facebookresearch/ToMe: ``bipartite_soft_matching(metric, r, class_token=True)``
followed by ``merge_wavg(merge, x, size)``, as ``tome/patch/timm.py`` calls them for a ViT with a class token.

Conventions: ``x`` is [B, T, C] with row 0 the CLS token; ``metric`` is [B, T, c] (in the official code the keys
averaged over the heads, ``k.mean(1)``); ``size`` is [B, T, 1], the number of original tokens each row stands for
(ones at the first merging layer); ``r`` is the number of tokens to remove. The result is ``(x', size')``, both
with ``T - r'`` rows where ``r' = min(r, (T - 1) // 2)``: the unmerged even rows (CLS first, in index order) then
every odd row (each the size-weighted average of itself and the even rows merged into it). ``r == 0`` returns
``(x, size)``; an ``r > 0`` clipped to 0 returns ``((x * size) / size, size)``, as the official block does.

``tome`` reproduces the official code path, including its ``argsort(descending=True)`` over the edge weights,
which orders tied weights arbitrarily. ``tome_stable`` sorts them stably (lower even-row index first among equal
weights); the two agree whenever the edge weights are distinct. The other tie, the best odd row of an even row, is
the first one in both: ``torch.max(dim)`` returns the index of the first maximal value.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["TOME_REFERENCES", "tome", "tome_r", "tome_stable"]

_PROTECTED = 1  # the class token; the official code counts a distillation token too, which these models lack


def tome_r(r: int, t: int) -> int:
    """The number of tokens the official code removes from ``t`` tokens (CLS included) when asked for ``r``.

    ``r = min(r, (t - protected) // 2)`` with ``protected = 1`` for the class token, as in
    ``bipartite_soft_matching``: at most half of the non-CLS tokens merge.
    """
    r = _as_int(r, "r")
    t = _as_int(t, "t")
    if r < 0:
        raise ValueError(f"r must be >= 0, got r={r}")
    if t < 1:
        raise ValueError(f"need at least the CLS token (T >= 1), got T={t}")
    return min(r, (t - _PROTECTED) // 2)


def _as_int(value: int, name: str) -> int:
    """``value`` as a Python int (bools and floats rejected)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an int, got {value!r}") from None


def _check(x: Tensor, metric: Tensor, size: Tensor, r: int) -> tuple[int, int]:
    """Validate the inputs; return ``r`` as asked for and as clipped by :func:`tome_r`."""
    for name, tensor, shape in (("x", x, "[B, T, C]"), ("metric", metric, "[B, T, c]"), ("size", size, "[B, T, 1]")):
        if not isinstance(tensor, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.ndim != 3:
            raise ValueError(f"{name} must be 3-D {shape}, got shape {tuple(tensor.shape)}")
    if size.shape[-1] != 1:
        raise ValueError(f"size must be [B, T, 1], got shape {tuple(size.shape)}")
    for name, tensor in (("metric", metric), ("size", size)):
        if tensor.shape[0] != x.shape[0]:
            raise ValueError(f"batch mismatch: x has B={x.shape[0]}, {name} has B={tensor.shape[0]}")
        if tensor.shape[1] != x.shape[1]:
            raise ValueError(f"token mismatch: x has T={x.shape[1]}, {name} has T={tensor.shape[1]}")
    if not all(t.dtype.is_floating_point for t in (x, metric, size)) or not x.dtype == metric.dtype == size.dtype:
        raise ValueError(f"x, metric and size must share one floating dtype, got {x.dtype}, {metric.dtype} and "
                         f"{size.dtype}")
    r = _as_int(r, "r")
    clipped = tome_r(r, x.shape[1])
    for name, tensor in (("x", x), ("metric", metric), ("size", size)):
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{name} must be finite (found NaN or inf)")
    if not bool((size > 0).all()):
        raise ValueError("size must be > 0 everywhere")
    norm = metric.norm(dim=-1)
    if not bool(((norm > 0) & torch.isfinite(norm)).all()):
        raise ValueError("every metric row must have a finite nonzero L2 norm")
    return r, clipped


def _tome(x: Tensor, metric: Tensor, size: Tensor, r: int, stable: bool) -> tuple[Tensor, Tensor]:
    """Shared body: match even rows to their most similar odd row, merge the r best edges, size-weighted average."""
    with torch.no_grad():
        unit = metric / metric.norm(dim=-1, keepdim=True)
        scores = unit[:, ::2] @ unit[:, 1::2].transpose(-1, -2)  # [B, Ta, Tb]: even rows (CLS = 0) x odd rows
        scores[:, 0, :] = -math.inf  # the class token never merges
        node_max, node_idx = scores.max(dim=-1)  # [B, Ta]: best odd row of each even row (first on ties)
        edge_idx = torch.argsort(node_max, dim=-1, descending=True, stable=stable)  # [B, Ta]
        unm_idx = edge_idx[:, r:].sort(dim=-1).values  # [B, Ta - r], ascending: CLS (weight -inf) first
        src_idx = edge_idx[:, :r]  # [B, r]: the even rows that merge
        dst_idx = node_idx.gather(-1, src_idx)  # [B, r]: the odd row each merges into

    def merge(y: Tensor) -> Tensor:
        """cat(unmerged even rows, odd rows + the sum of the even rows merged into them)."""
        d = y.shape[-1]
        even, odd = y[:, ::2], y[:, 1::2]
        unm = even.gather(1, unm_idx[..., None].expand(-1, -1, d))
        src = even.gather(1, src_idx[..., None].expand(-1, -1, d))
        odd = odd.scatter_reduce(1, dst_idx[..., None].expand(-1, -1, d), src, reduce="sum")
        return torch.cat([unm, odd], dim=1)

    new_size = merge(size)
    return merge(x * size) / new_size, new_size


def _dispatch(x: Tensor, metric: Tensor, size: Tensor, r: int, stable: bool) -> tuple[Tensor, Tensor]:
    """Validate, then the official block's three cases: no merge, ``merge_wavg(do_nothing)``, a real merge."""
    asked, r = _check(x, metric, size, r)
    if asked == 0:
        return x, size
    if r == 0:
        return (x * size) / size, size
    return _tome(x, metric, size, r, stable=stable)


def tome(x: Tensor, metric: Tensor, size: Tensor, r: int) -> tuple[Tensor, Tensor]:
    """Official ToMe merge: ``merge_wavg(bipartite_soft_matching(metric, r, class_token=True)[0], x, size)``.

    Returns ``(x', size')``, [B, T - r', C] and [B, T - r', 1] with ``r' = tome_r(r, T)``. Unmerged rows come back
    as ``(x * size) / size``, which can differ from ``x`` in the last bit when ``size`` is not a power of two. The
    official block merges only when ``r > 0`` (``if r > 0:``, before clipping): ``r == 0`` returns ``(x, size)``
    unchanged, while an ``r > 0`` clipped to 0 (T <= 2) still goes through ``merge_wavg`` with ``do_nothing`` and
    returns ``((x * size) / size, size)``.
    """
    return _dispatch(x, metric, size, r, stable=False)


def tome_stable(x: Tensor, metric: Tensor, size: Tensor, r: int) -> tuple[Tensor, Tensor]:
    """As :func:`tome`, but tied edge weights rank the lower even-row index first (stable descending sort)."""
    return _dispatch(x, metric, size, r, stable=True)


TOME_REFERENCES: dict[str, dict[str, Callable[[Tensor, Tensor, Tensor, int], tuple[Tensor, Tensor]]]] = {
    "tome": {"official": tome, "stable": tome_stable},
}
