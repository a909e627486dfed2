"""Trusted torch reference for POMT (Prune One More Token), batched.

Follows ``pomt/timm_patch.py`` of nickjeliopoulos/PruneOneMoreToken: ``POMTMetric(attn, v)`` then
``POMTForward(x, metric)``, with one prefix (CLS) token.

Conventions: ``x`` is [B, N+1, C] with row 0 the CLS token; ``attn`` is [B, H, N+1, N+1], the softmax attention;
``v`` is [B, H, N+1, D], the values; ``r`` is the number of tokens removed. The score of patch token ``j``
(0-based among the N patch tokens) is

    metric_attn[j] = sum_{i < N} max_h attn[h, 1 + i, 1 + j]   (CLS query row and CLS column left out)
    metric_attn   /= max(metric_attn)                           (see below: over what)
    metric_v       = softmax_t(sum_d max_h v[h, t, d])[1:]      (softmax over all N+1 tokens, then CLS dropped)
    metric         = metric_attn + metric_v

``T = N + 1 - r - 2`` tokens are kept, in descending metric order, and the other ``r + 1`` are replaced by their
mean: the output is cat(CLS, kept rows, mean of the discarded rows), [B, N + 1 - r, C]. When ``r == 0`` or
``T <= 1`` the official code returns ``x`` unchanged.

The official code normalizes ``metric_attn`` by ``torch.max(metric_attn)``: the maximum over the whole batch
tensor, so one image's selection depends on the other images in its batch (not only by a common factor:
``metric_v`` is added after the division). ``pomt`` reproduces that; ``pomt_per_image`` divides by the maximum over
the image's own tokens, which is what a per-image program computes (the two agree at B = 1); ``pomt_stable`` is
``pomt_per_image`` with ties in the metric broken by the lower token index first (``argsort`` orders ties
arbitrarily).
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["POMT_REFERENCES", "pomt", "pomt_metric", "pomt_per_image", "pomt_stable"]

_PREFIX = 1  # pomt_info.prefix_tokens: the CLS token


def _check(x: Tensor, attn: Tensor, v: Tensor, r: int) -> int:
    """Validate the inputs; return ``r`` as a Python int."""
    for name, tensor, ndim, shape in (("x", x, 3, "[B, N+1, C]"), ("attn", attn, 4, "[B, H, N+1, N+1]"),
                                      ("v", v, 4, "[B, H, N+1, D]")):
        if not isinstance(tensor, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.ndim != ndim:
            raise ValueError(f"{name} must be {ndim}-D {shape}, got shape {tuple(tensor.shape)}")
    if attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"attn must be square in its last two dims, got shape {tuple(attn.shape)}")
    for name, tensor in (("attn", attn), ("v", v)):
        if tensor.shape[0] != x.shape[0]:
            raise ValueError(f"batch mismatch: x has B={x.shape[0]}, {name} has B={tensor.shape[0]}")
        if tensor.shape[2] != x.shape[1]:
            raise ValueError(f"token mismatch: x has N+1={x.shape[1]}, {name} has N+1={tensor.shape[2]}")
    if v.shape[1] != attn.shape[1]:
        raise ValueError(f"head mismatch: attn has H={attn.shape[1]}, v has H={v.shape[1]}")
    n = x.shape[1] - 1
    if n < 1:
        raise ValueError(f"need at least one non-CLS token (N >= 1), got N={n}")
    if attn.shape[1] < 1 or v.shape[-1] < 1:
        raise ValueError(f"need H >= 1 and D >= 1, got H={attn.shape[1]}, D={v.shape[-1]}")
    if not all(t.dtype.is_floating_point for t in (x, attn, v)) or not x.dtype == attn.dtype == v.dtype:
        raise ValueError(f"x, attn and v must share one floating dtype, got {x.dtype}, {attn.dtype} and {v.dtype}")
    if isinstance(r, bool):
        raise ValueError(f"r must be an int, got {r!r}")
    try:
        r = operator.index(r)
    except TypeError:
        raise ValueError(f"r must be an int, got {r!r}") from None
    if r < 0:
        raise ValueError(f"r must be >= 0, got r={r}")
    for name, tensor in (("x", x), ("attn", attn), ("v", v)):
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{name} must be finite (found NaN or inf)")
    if not bool((attn >= 0).all()):
        raise ValueError("attn must be non-negative (a softmax attention)")
    return r


def pomt_metric(attn: Tensor, v: Tensor, per_image: bool = False) -> Tensor:
    """POMT's token score, [B, N, 1] (the official layout), for ``attn`` [B, H, N+1, N+1] and ``v`` [B, H, N+1, D].

    ``per_image=False`` divides ``metric_attn`` by its maximum over the whole batch (the official
    ``torch.max(metric_attn)``); ``per_image=True`` by each image's own maximum. Inputs are not validated here.
    """
    metric_attn = attn[:, :, _PREFIX:, _PREFIX:].amax(dim=1).sum(dim=1, keepdim=True).transpose(-2, -1)  # [B, N, 1]
    if per_image:
        metric_attn = metric_attn / metric_attn.amax(dim=1, keepdim=True)
    else:
        metric_attn = metric_attn / torch.max(metric_attn)
    metric_v = torch.softmax(v.amax(dim=1).sum(dim=-1, keepdim=True), dim=1)[:, _PREFIX:]  # [B, N, 1]
    return metric_attn + metric_v


def _pomt(x: Tensor, attn: Tensor, v: Tensor, r: int, per_image: bool, stable: bool) -> Tensor:
    """Shared body: validate, score, keep the T best (descending), append the mean of the r + 1 others."""
    r = _check(x, attn, v, r)
    patch_max = attn[:, :, _PREFIX:, _PREFIX:].amax(dim=(1, 2, 3))  # [B]: zero iff metric_attn is all zero
    if per_image and not bool((patch_max > 0).all()):
        b = int(torch.nonzero(patch_max <= 0)[0, 0])
        raise ValueError(f"attn[{b}, :, 1:, 1:] is all zero: image {b}'s metric_attn / max(metric_attn) is 0 / 0")
    if not per_image and not bool((patch_max > 0).any()):
        raise ValueError("attn[:, :, 1:, 1:] is all zero: metric_attn / max(metric_attn) is 0 / 0")
    b_size, n1, c = x.shape
    t = n1 - r - 2
    if r == 0 or t <= _PREFIX:
        return x
    metric = pomt_metric(attn, v, per_image=per_image)  # [B, N, 1]
    order = torch.argsort(metric, dim=1, descending=True, stable=stable) + _PREFIX  # [B, N, 1], rows of x
    kept, discarded = order[:, :t], order[:, t:]
    x_discarded = torch.gather(x, 1, discarded.expand(b_size, discarded.shape[1], c)).mean(dim=1, keepdim=True)
    return torch.cat([x[:, :_PREFIX], torch.gather(x, 1, kept.expand(b_size, t, c)), x_discarded], dim=1)


def pomt(x: Tensor, attn: Tensor, v: Tensor, r: int) -> Tensor:
    """Official POMT (batch-wide maximum): cat(CLS, the T = N - 1 - r best rows, mean of the rest) -> [B, N+1-r, C].

    ``r == 0`` or ``T <= 1`` returns ``x`` unchanged.
    """
    return _pomt(x, attn, v, r, per_image=False, stable=False)


def pomt_per_image(x: Tensor, attn: Tensor, v: Tensor, r: int) -> Tensor:
    """As :func:`pomt`, but ``metric_attn`` is divided by the maximum over the image's own tokens."""
    return _pomt(x, attn, v, r, per_image=True, stable=False)


def pomt_stable(x: Tensor, attn: Tensor, v: Tensor, r: int) -> Tensor:
    """As :func:`pomt_per_image`, but tied scores rank the lower token index first (stable descending sort)."""
    return _pomt(x, attn, v, r, per_image=True, stable=True)


# "official" is the published code (batch-wide maximum); "per_image" is what a per-image program must equal on
# continuous inputs (it equals "official" at B = 1); "stable" is "per_image" with ties broken by index.
POMT_REFERENCES: dict[str, dict[str, Callable[[Tensor, Tensor, Tensor, int], Tensor]]] = {
    "pomt": {"official": pomt, "per_image": pomt_per_image, "stable": pomt_stable},
}
