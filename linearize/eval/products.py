"""The rows product's matrix multiply on torch: oneDNN image by image where that is faster than `torch.bmm`.

torch's float32 `bmm` on the CPU calls MKL's batched sgemm, and MKL picks its kernels by CPU vendor: on AMD CPUs
it runs its AVX2 code even where AVX-512 is there (about 86·10^9 multiply-adds a second on this project's 2-core
Zen 5 host). oneDNN, which torch also ships, picks by CPU features: its matmul, reached through
`torch.ops.mkldnn._linear_pointwise` (the op torch.compile emits for a linear layer on the CPU), runs the EViT
product at ViT-B/16 in about 10 ms against bmm's 15.5 ms, one image per call (`benchmarks/bench_evit.py --steps`).

Used only where it is a plain product: float32, no autograd (the op has no derivative), a product of at least
LARGE multiply-adds per image (below that a call's overhead loses), oneDNN not turned off
(`torch.backends.mkldnn.enabled`), and the op present and exact here: at first use it must move the rows of a
one-hot product bit for bit, as a product with one nonzero term per sum does in any order of summation. The
choice reads shapes, the dtype, autograd's state and torch's flags, never a value: the sequence of operations
stays data-oblivious. Under OMP_WAIT_POLICY=PASSIVE each image's call wakes the sleeping OpenMP workers, and the
product is then about as slow as bmm's (docs/performance.md, "The product").
"""

from __future__ import annotations

import functools
from typing import Any

LARGE = 1 << 21  # multiply-adds per image (m * k * n) from which oneDNN image by image beats torch.bmm


@functools.cache
def onednn_linear() -> Any:
    """torch.ops.mkldnn._linear_pointwise when it is present and exact on a one-hot product; else None."""
    import torch
    try:
        op = torch.ops.mkldnn._linear_pointwise
        g = torch.Generator().manual_seed(0)
        y = torch.randn(160, 96, generator=g)
        picked = torch.randperm(160, generator=g)[:120]
        d = torch.zeros(120, 160)
        d[torch.arange(120), picked] = 1.0
        with torch.no_grad():
            moved = op(d, y.t(), None, "none", [], "")
        return op if torch.equal(moved, y[picked]) else None
    except (AttributeError, RuntimeError, TypeError):  # not built with oneDNN, or another signature
        return None


def torch_rows_product(d: Any, y: Any) -> Any:
    """d @ y for d [G, m, k], y [G, k, n]: torch.bmm, or oneDNN image by image (see the module's docstring)."""
    import torch
    G, m, k = d.shape
    n = y.shape[2]
    if (d.dtype is not torch.float32 or y.dtype is not torch.float32 or m * k * n < LARGE
            or (torch.is_grad_enabled() and (d.requires_grad or y.requires_grad))):
        return torch.bmm(d, y)
    op = onednn_linear()
    if op is None or not torch.backends.mkldnn.is_available() or not _enabled(torch):
        return torch.bmm(d, y)  # no oneDNN, or the user turned it off (torch.backends.mkldnn.enabled = False)
    out = torch.empty((G, m, n), dtype=d.dtype)
    for g in range(G):
        out[g] = op(d[g], y[g].t(), None, "none", [], "")
    return out


def _enabled(torch: Any) -> bool:
    flag = getattr(torch._C, "_get_mkldnn_enabled", None)
    return True if flag is None else bool(flag())
