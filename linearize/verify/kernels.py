"""The few array primitives the bound computation needs beyond the evaluation backends' (eval/backends.py):
elementwise min/max, nonzero, sums of the least entries, per-batch row gathers and counting.
One table per array library; torch is imported only when its table is asked for.

Bounds are computed by the verifier, not by the program, so these may depend on the data (nonzero, sort).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Kernels:
    minimum: Callable[[Any, Any], Any]
    maximum: Callable[[Any, Any], Any]
    where: Callable[[Any, Any, Any], Any]  # (mask, a, b) with a or b possibly a Python number
    isnan: Callable[[Any], Any]
    nonzero: Callable[[Any], tuple[Any, ...]]  # indices of the True entries, in row-major order
    least_sums: Callable[[Any, Any], Any]  # (a [B, U, *F], m [B]) -> the sum of the m[b] least a[b, :, f], [B, *F]
    arange: Callable[[int], Any]  # int64
    rows: Callable[[Any, Any], Any]  # (A [B, n, *F], idx [B, M]) -> A[b, idx[b, m]], [B, M, *F]
    full: Callable[[tuple[int, ...], float, Any], Any]  # (shape, value, an array whose dtype it takes)
    take: Callable[[Any, Any], Any]  # (a, idx) -> a[idx] along the first axis
    put: Callable[[Any, Any, Any], None]  # (out, idx, values): out[idx] = values along the first axis, in place
    bincount: Callable[[Any, int], Any]  # (int array, minlength) -> counts
    cumsum: Callable[[Any], Any]  # along the only axis
    to_numpy: Callable[[Any], np.ndarray]


def _np_least_sums(a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """A partition (not a sort) along a contiguous last axis, once per distinct m; three to four times faster than
    sorting and a running sum."""
    rows = np.moveaxis(a, 1, -1).copy()  # [B, *F, U], contiguous, ours to partition in place
    out = np.zeros(rows.shape[:-1], a.dtype)
    counts = np.unique(m)
    for count in counts:
        if count > 0:
            at = np.flatnonzero(m == count)
            part = rows if len(counts) == 1 else rows[at]
            part.partition(count - 1, axis=-1)
            out[at] = part[..., :count].sum(-1)
    return out


def _np_put(out: np.ndarray, idx: np.ndarray, values: np.ndarray) -> None:
    out[idx] = values


NUMPY_KERNELS = Kernels(
    minimum=np.minimum,
    maximum=np.maximum,
    where=np.where,
    isnan=np.isnan,
    nonzero=np.nonzero,
    least_sums=_np_least_sums,
    arange=lambda n: np.arange(n, dtype=np.int64),
    rows=lambda A, idx: A[np.arange(idx.shape[0])[:, None], idx],
    full=lambda shape, value, like: np.full(shape, value, like.dtype),
    take=lambda a, idx: a[idx],
    put=_np_put,
    bincount=lambda a, n: np.bincount(a, minlength=n),
    cumsum=np.cumsum,
    to_numpy=np.asarray,
)


def _torch_kernels() -> Kernels:
    import torch

    def where(mask: Any, a: Any, b: Any) -> Any:
        return torch.where(mask, a, b)

    return Kernels(
        minimum=torch.minimum,
        maximum=torch.maximum,
        where=where,
        isnan=torch.isnan,
        nonzero=lambda m: torch.nonzero(m, as_tuple=True),
        # through a numpy view: torch has no partition, and its CPU sort of many short rows is slow
        least_sums=lambda a, m: torch.from_numpy(_np_least_sums(a.detach().numpy(), m.numpy())),
        arange=lambda n: torch.arange(n, dtype=torch.int64),
        rows=lambda A, idx: A[torch.arange(idx.shape[0])[:, None], idx],
        full=lambda shape, value, like: torch.full(shape, value, dtype=like.dtype),
        take=lambda a, idx: a.index_select(0, idx),  # much faster than a[idx]
        put=lambda out, idx, values: out.index_copy_(0, idx, values),  # and than out[idx] = values
        bincount=lambda a, n: torch.bincount(a, minlength=n),
        cumsum=lambda a: torch.cumsum(a, 0),
        to_numpy=lambda a: a.detach().cpu().numpy(),
    )


_KERNELS: dict[str, Callable[[], Kernels]] = {"numpy": lambda: NUMPY_KERNELS, "torch": _torch_kernels}
_loaded: dict[str, Kernels] = {}


def get_kernels(name: str) -> Kernels:
    if name not in _loaded:
        _loaded[name] = _KERNELS[name]()
    return _loaded[name]

