"""Backend tables: for each array library, the elementwise ops by IR op and the few array primitives
the evaluator's structural ops need. torch is imported only when its backend is asked for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ir import Op


@dataclass(frozen=True)
class Backend:
    name: str
    ops: dict[Op, Callable[..., Any]]  # elementwise: ADD, SUB, MUL, DIV, NEG, HEAVISIDE, DELTA
    asarray: Callable[[Any, Any], Any]  # (value, dtype) -> array
    arange: Callable[[int, int], Any]  # int64
    to_dtype: Callable[[Any, Any], Any]
    sum: Callable[[Any, int], Any]
    mean: Callable[[Any, int], Any]
    where: Callable[[Any, Any, Any], Any]
    concat: Callable[[list[Any], int], Any]
    moveaxis: Callable[[Any, int, int], Any]
    broadcast_to: Callable[[Any, tuple[int, ...]], Any]
    take_along: Callable[[Any, Any, int], Any]
    argsort: Callable[[Any, bool], Any]  # stable, along the last axis
    clip: Callable[[Any, int, int], Any]
    int_dtype: Any
    isfinite_all: Callable[[Any], bool]
    is_float: Callable[[Any], bool]
    convert: Callable[[Any], Any]  # user input -> this library's array


def _np_argsort(a: np.ndarray, descending: bool) -> np.ndarray:
    if not descending:
        return np.argsort(a, axis=-1, kind="stable")
    # stable descending: reverse, sort ascending stably, reverse back and undo the index reversal,
    # so that equal keys keep the lower index first
    n = a.shape[-1]
    rev = np.argsort(a[..., ::-1], axis=-1, kind="stable")[..., ::-1]
    return (n - 1 - rev).astype(np.int64)


def _np_convert(x: Any) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


NUMPY = Backend(
    name="numpy",
    ops={
        Op.ADD: np.add, Op.SUB: np.subtract, Op.MUL: np.multiply, Op.DIV: np.true_divide, Op.NEG: np.negative,
        Op.HEAVISIDE: lambda x: (x > 0).astype(x.dtype if x.dtype.kind == "f" else np.float64),
        Op.DELTA: lambda x: (x == 0).astype(x.dtype if x.dtype.kind == "f" else np.float64),
    },
    asarray=lambda v, dtype: np.asarray(v, dtype=dtype),
    arange=lambda lo, hi: np.arange(lo, hi, dtype=np.int64),
    to_dtype=lambda a, dtype: a.astype(dtype, copy=False),
    sum=lambda a, axis: a.sum(axis=axis),
    mean=lambda a, axis: a.mean(axis=axis),
    where=np.where,
    concat=lambda parts, axis: np.concatenate(parts, axis=axis),
    moveaxis=np.moveaxis,
    broadcast_to=np.broadcast_to,
    take_along=np.take_along_axis,
    argsort=_np_argsort,
    clip=np.clip,
    int_dtype=np.int64,
    isfinite_all=lambda a: bool(np.isfinite(a).all()),
    is_float=lambda a: a.dtype.kind == "f",
    convert=_np_convert,
)


def _torch_backend() -> Backend:
    import torch

    def heaviside(x: Any) -> Any:
        return (x > 0).to(x.dtype if x.is_floating_point() else torch.float64)

    def delta(x: Any) -> Any:
        return (x == 0).to(x.dtype if x.is_floating_point() else torch.float64)

    def convert(x: Any) -> Any:
        return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))

    def as_dtype(dtype: Any) -> Any:
        if isinstance(dtype, torch.dtype):
            return dtype
        return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
                np.dtype(np.float16): torch.float16, np.dtype(np.int64): torch.int64}[np.dtype(dtype)]

    return Backend(
        name="torch",
        ops={Op.ADD: torch.add, Op.SUB: torch.sub, Op.MUL: torch.mul, Op.DIV: torch.true_divide,
             Op.NEG: torch.neg, Op.HEAVISIDE: heaviside, Op.DELTA: delta},
        asarray=lambda v, dtype: torch.as_tensor(v, dtype=as_dtype(dtype)),
        arange=lambda lo, hi: torch.arange(lo, hi, dtype=torch.int64),
        to_dtype=lambda a, dtype: a.to(as_dtype(dtype)),
        sum=lambda a, axis: a.sum(dim=axis),
        mean=lambda a, axis: a.mean(dim=axis),
        where=lambda m, a, b: torch.where(m, a, torch.as_tensor(b, dtype=a.dtype)),
        concat=lambda parts, axis: torch.cat(parts, dim=axis),
        moveaxis=torch.movedim,
        broadcast_to=lambda a, shape: a.expand(shape),
        take_along=lambda a, idx, axis: torch.take_along_dim(a, idx, dim=axis),
        argsort=lambda a, descending: torch.sort(a, dim=-1, descending=descending, stable=True).indices,
        clip=lambda a, lo, hi: a.clamp(lo, hi),
        int_dtype=torch.int64,
        isfinite_all=lambda a: bool(torch.isfinite(a).all()),
        is_float=lambda a: a.is_floating_point(),
        convert=convert,
    )


_BACKENDS: dict[str, Callable[[], Backend]] = {"numpy": lambda: NUMPY, "torch": _torch_backend}
_loaded: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(_BACKENDS)}")
    if name not in _loaded:
        _loaded[name] = _BACKENDS[name]()
    return _loaded[name]
