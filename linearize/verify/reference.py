"""Trusted torch references for EViT and Top-K token selection, batched.

Conventions: ``x`` is [B, N+1, C] with row 0 the CLS token; ``attn`` is [B, H, N+1, N+1]; ``k`` is the number of
non-CLS tokens kept, ``1 <= k <= N``.

The ``official`` variants follow the official EViT code path (``torch.topk``, ``complement_idx``, a weighted *sum* of
the dropped tokens). ``torch.topk`` orders tied scores arbitrarily, so the ``stable`` variants select with a stable
descending sort instead (lower token index first among equal scores); use them on inputs with ties.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
from torch import Tensor

from ..ir.program import keep_rate_to_k  # the official conversion, shared with the CLI (which must not import torch)

__all__ = ["DYNAMICVIT_REFERENCES", "POMT_REFERENCES", "REFERENCES", "TOME_REFERENCES", "complement_idx",
           "dynamicvit", "dynamicvit_keep", "dynamicvit_ordered", "dynamicvit_ordered_stable", "dynamicvit_stable",
           "evit", "evit_stable", "keep_rate_to_k", "pomt", "pomt_metric", "pomt_per_image", "pomt_stable", "tome",
           "tome_r", "tome_stable", "topk", "topk_stable"]


def complement_idx(idx: Tensor, dim: int) -> Tensor:
    """The official EViT helper: ascending indices in ``range(dim)`` not in ``idx`` (along the last axis).

    Assumes the entries of each row of ``idx`` are distinct (as ``torch.topk`` indices are).
    """
    a = torch.arange(dim, device=idx.device)
    ndim = idx.ndim
    dims = idx.shape
    n_idx = dims[-1]
    dims = dims[:-1] + (-1,)
    for _ in range(1, ndim):
        a = a.unsqueeze(0)
    a = a.expand(*dims)
    masked = torch.scatter(a, -1, idx, 0)
    compl, _ = torch.sort(masked, dim=-1, descending=False)
    compl = compl.permute(-1, *tuple(range(ndim - 1)))
    compl = compl[n_idx:].permute(*(tuple(range(1, ndim)) + (0,)))
    return compl


def _check(x: Tensor, attn: Tensor, k: int) -> int:
    """Validate the inputs; return ``k`` as a Python int."""
    if x.ndim != 3:
        raise ValueError(f"x must be 3-D [B, N+1, C], got shape {tuple(x.shape)}")
    if attn.ndim != 4:
        raise ValueError(f"attn must be 4-D [B, H, N+1, N+1], got shape {tuple(attn.shape)}")
    if attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"attn must be square in its last two dims, got shape {tuple(attn.shape)}")
    if attn.shape[0] != x.shape[0]:
        raise ValueError(f"batch mismatch: x has B={x.shape[0]}, attn has B={attn.shape[0]}")
    if attn.shape[-1] != x.shape[1]:
        raise ValueError(f"token mismatch: x has N+1={x.shape[1]}, attn has N+1={attn.shape[-1]}")
    n = x.shape[1] - 1
    if n < 1:
        raise ValueError(f"need at least one non-CLS token (N >= 1), got N={n}")
    if not (x.dtype.is_floating_point and attn.dtype.is_floating_point) or x.dtype != attn.dtype:
        raise ValueError(f"x and attn must share one floating dtype, got {x.dtype} and {attn.dtype}")
    if isinstance(k, bool):
        raise ValueError(f"k must be an int, got {k!r}")
    try:
        k = operator.index(k)
    except TypeError:
        raise ValueError(f"k must be an int, got {k!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"k must satisfy 1 <= k <= N (N={n}, got k={k})")
    if not bool(torch.isfinite(attn).all()):
        raise ValueError("attn must be finite (found NaN or inf)")
    return k


def _select(x: Tensor, attn: Tensor, k: int, stable: bool, extra: bool) -> Tensor:
    """Shared body: score by head-mean CLS attention, keep the k best (descending), optionally add the fused token."""
    _, n1, c = x.shape
    n = n1 - 1
    cls_attn = attn[:, :, 0, 1:].mean(dim=1)  # [B, N]
    if stable:
        order = torch.sort(cls_attn, dim=1, descending=True, stable=True).indices  # [B, N]
        idx, compl = order[:, :k], order[:, k:]
    else:
        _, idx = torch.topk(cls_attn, k, dim=1, largest=True, sorted=True)  # [B, k]
        compl = complement_idx(idx, n) if extra else None  # [B, N-k]
    non_cls = x[:, 1:]
    x_others = torch.gather(non_cls, dim=1, index=idx.unsqueeze(-1).expand(-1, -1, c))  # [B, k, C]
    if not extra:
        return torch.cat([x[:, 0:1], x_others], dim=1)
    non_topk = torch.gather(non_cls, dim=1, index=compl.unsqueeze(-1).expand(-1, -1, c))  # [B, N-k, C]
    non_topk_attn = torch.gather(cls_attn, dim=1, index=compl)  # [B, N-k]
    extra_token = torch.sum(non_topk * non_topk_attn.unsqueeze(-1), dim=1, keepdim=True)  # [B, 1, C]
    return torch.cat([x[:, 0:1], x_others, extra_token], dim=1)


def evit(x: Tensor, attn: Tensor, k: int) -> Tensor:
    """Official EViT: CLS, the k top tokens (descending score), and the score-weighted sum of the rest -> [B, k+2, C].

    When ``k == N`` the official code returns ``x`` unchanged ([B, N+1, C]).
    """
    k = _check(x, attn, k)
    if k == x.shape[1] - 1:
        return x
    return _select(x, attn, k, stable=False, extra=True)


def topk(x: Tensor, attn: Tensor, k: int) -> Tensor:
    """Top-K: CLS then the k top tokens in descending score order -> [B, k+1, C]; ``k == N`` returns ``x``."""
    k = _check(x, attn, k)
    if k == x.shape[1] - 1:
        return x
    return _select(x, attn, k, stable=False, extra=False)


def evit_stable(x: Tensor, attn: Tensor, k: int) -> Tensor:
    """As :func:`evit`, but ties in the score rank the lower token index first (stable descending sort)."""
    k = _check(x, attn, k)
    if k == x.shape[1] - 1:
        return x
    return _select(x, attn, k, stable=True, extra=True)


def topk_stable(x: Tensor, attn: Tensor, k: int) -> Tensor:
    """As :func:`topk`, but ties in the score rank the lower token index first (stable descending sort)."""
    k = _check(x, attn, k)
    if k == x.shape[1] - 1:
        return x
    return _select(x, attn, k, stable=True, extra=False)


REFERENCES: dict[str, dict[str, Callable[[Tensor, Tensor, int], Tensor]]] = {
    "evit": {"official": evit, "stable": evit_stable},
    "topk": {"official": topk, "stable": topk_stable},
}

# the methods with other inputs than x, attn and k: ToMe (x, metric, size, r), POMT (x, attn, v, r), DynamicViT
# (x, score, k); their modules say what each variant is for (docs/semantics.md, "More methods")
from .reference_dynamicvit import (  # noqa: E402
    DYNAMICVIT_REFERENCES,
    dynamicvit,
    dynamicvit_keep,
    dynamicvit_ordered,
    dynamicvit_ordered_stable,
    dynamicvit_stable,
)
from .reference_pomt import POMT_REFERENCES, pomt, pomt_metric, pomt_per_image, pomt_stable  # noqa: E402
from .reference_tome import TOME_REFERENCES, tome, tome_r, tome_stable  # noqa: E402
