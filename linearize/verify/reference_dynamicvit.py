"""Trusted torch reference for DynamicViT's inference-time token selection, batched.

Follows the inference branch of ``VisionTransformerDiffPruning.forward`` in raoyongming/DynamicViT (``vit.py``)::

    score = pred_score[:,:,0]
    num_keep_node = int(init_n * self.token_ratio[p_count])
    keep_policy = torch.argsort(score, dim=1, descending=True)[:, :num_keep_node]
    now_policy = torch.cat([cls_policy, keep_policy + 1], dim=1)
    x = batch_index_select(x, now_policy)

Conventions: ``x`` is [B, N+1, C] with row 0 the CLS token; ``score`` is [B, N], the predictor's keep score of
each patch token; ``k`` is the number of patch tokens kept, ``1 <= k <= N``. The output is CLS then the ``k``
best-scored rows in descending score order, [B, k+1, C]. There is no early return: ``k == N`` returns every
token, reordered by score.

``dynamicvit`` uses the official ``argsort``, which orders tied scores arbitrarily; ``dynamicvit_stable`` sorts
stably (lower token index first among equal scores). ``dynamicvit_ordered`` (and its stable form) keep the
selected tokens in index order (``keep_policy, _ = torch.sort(keep_policy)`` after the argsort), as several
DynamicViT-style codes do. ``dynamicvit_keep`` converts a keep rate into ``k`` as the official code does
(``int``, a floor, where EViT takes the ceiling).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["DYNAMICVIT_REFERENCES", "dynamicvit", "dynamicvit_keep", "dynamicvit_ordered",
           "dynamicvit_ordered_stable", "dynamicvit_stable"]


def _as_int(value: int, name: str) -> int:
    """``value`` as a Python int (bools and floats rejected)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an int, got {value!r}") from None


def dynamicvit_keep(keep_rate: float, n: int) -> int:
    """The official kept count: ``int(n * keep_rate)``, a floor in floating point (``int(100 * 0.29) == 28``).

    The official model applies each stage's rate to ``init_n = 14 * 14`` (the original patch count), with rates
    ``[rho, rho ** 2, rho ** 3]``. Raises ValueError when the rate is outside (0, 1] or the count comes out 0.
    """
    if isinstance(keep_rate, bool) or not isinstance(keep_rate, int | float):
        raise ValueError(f"keep rate must be a number, got {keep_rate!r}")
    if math.isnan(keep_rate) or not 0 < keep_rate <= 1:
        raise ValueError(f"keep rate must be in (0, 1], got {keep_rate}")
    n = _as_int(n, "n")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    k = int(n * keep_rate)
    if k < 1:
        raise ValueError(f"keep rate {keep_rate} keeps no token of {n}: int({n} * {keep_rate}) = 0")
    return k


def _check(x: Tensor, score: Tensor, k: int) -> int:
    """Validate the inputs; return ``k`` as a Python int."""
    for name, tensor, ndim, shape in (("x", x, 3, "[B, N+1, C]"), ("score", score, 2, "[B, N]")):
        if not isinstance(tensor, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.ndim != ndim:
            raise ValueError(f"{name} must be {ndim}-D {shape}, got shape {tuple(tensor.shape)}")
    if score.shape[0] != x.shape[0]:
        raise ValueError(f"batch mismatch: x has B={x.shape[0]}, score has B={score.shape[0]}")
    if score.shape[1] != x.shape[1] - 1:
        raise ValueError(f"token mismatch: x has N+1={x.shape[1]}, score has N={score.shape[1]}")
    n = score.shape[1]
    if n < 1:
        raise ValueError(f"need at least one non-CLS token (N >= 1), got N={n}")
    if not (x.dtype.is_floating_point and score.dtype.is_floating_point) or x.dtype != score.dtype:
        raise ValueError(f"x and score must share one floating dtype, got {x.dtype} and {score.dtype}")
    k = _as_int(k, "k")
    if not 1 <= k <= n:
        raise ValueError(f"k must satisfy 1 <= k <= N (N={n}, got k={k})")
    if not bool(torch.isfinite(score).all()):
        raise ValueError("score must be finite (found NaN or inf)")
    return k


def _batch_index_select(x: Tensor, idx: Tensor) -> Tensor:
    """Rows ``idx[b]`` of ``x[b]`` for each b: x [B, N, C], idx [B, K] -> [B, K, C]."""
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))


def _select(x: Tensor, score: Tensor, k: int, stable: bool, ordered: bool) -> Tensor:
    """Shared body: the k best-scored tokens (descending, or in index order), after the CLS token."""
    k = _check(x, score, k)
    keep_policy = torch.argsort(score, dim=1, descending=True, stable=stable)[:, :k]  # [B, k]
    if ordered:
        keep_policy = keep_policy.sort(dim=1).values
    cls_policy = torch.zeros(x.shape[0], 1, dtype=keep_policy.dtype, device=keep_policy.device)
    return _batch_index_select(x, torch.cat([cls_policy, keep_policy + 1], dim=1))


def dynamicvit(x: Tensor, score: Tensor, k: int) -> Tensor:
    """Official DynamicViT inference selection: CLS then the k best-scored tokens, descending -> [B, k+1, C]."""
    return _select(x, score, k, stable=False, ordered=False)


def dynamicvit_stable(x: Tensor, score: Tensor, k: int) -> Tensor:
    """As :func:`dynamicvit`, but tied scores rank the lower token index first (stable descending sort)."""
    return _select(x, score, k, stable=True, ordered=False)


def dynamicvit_ordered(x: Tensor, score: Tensor, k: int) -> Tensor:
    """As :func:`dynamicvit`, but the kept tokens in index order (the selected indices sorted ascending)."""
    return _select(x, score, k, stable=False, ordered=True)


def dynamicvit_ordered_stable(x: Tensor, score: Tensor, k: int) -> Tensor:
    """As :func:`dynamicvit_ordered`, with ties in the selection broken by the lower token index first."""
    return _select(x, score, k, stable=True, ordered=True)


DYNAMICVIT_REFERENCES: dict[str, dict[str, Callable[[Tensor, Tensor, int], Tensor]]] = {
    "dynamicvit": {"official": dynamicvit, "stable": dynamicvit_stable},
    "dynamicvit_ordered": {"official": dynamicvit_ordered, "stable": dynamicvit_ordered_stable},
}
