"""Backend tables: for each array library, the array primitives the op table's implementations and the
generic steps and strategies call. torch is imported only when its backend is asked for."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ir import Op


@dataclass(frozen=True)
class Backend:
    name: str
    flag: Callable[[Any, Any], Any]  # (boolean mask, like) -> 0/1 in like's float dtype (float64 for integer like)
    asarray: Callable[[Any, Any], Any]  # (value, dtype) -> array
    arange: Callable[[int, int], Any]  # int64
    to_dtype: Callable[[Any, Any], Any]
    sum: Callable[[Any, int], Any]
    mean: Callable[..., Any]  # (a, axis, divisor=None) -> the mean along axis; a divisor only for float32/64
    amax: Callable[[Any, int], Any]  # the largest value along an axis
    exp: Callable[[Any], Any]  # e ** a, elementwise
    where: Callable[[Any, Any, Any], Any]
    concat: Callable[[list[Any], int], Any]
    moveaxis: Callable[[Any, int, int], Any]
    broadcast_to: Callable[[Any, tuple[int, ...]], Any]
    take_along: Callable[[Any, Any, int], Any]
    argsort: Callable[[Any, bool], Any]  # stable, along the last axis
    clip: Callable[[Any, int, int], Any]
    int_dtype: Any
    isfinite_all: Callable[[Any], bool]
    sums_finite: Callable[[list[Any]], bool]  # True proves every entry of every array finite (one host read)
    is_float: Callable[[Any], bool]
    convert: Callable[[Any], Any]  # user input -> this library's array; ValueError("is not ...") if it can't be
    viewer: Callable[[tuple, tuple[int, ...]], Callable[[Any], Any]]  # (key, shape) -> x -> x[key], planned once
    permute: Callable[[Any, tuple[int, ...]], Any]  # (a, order) -> a with its axes in that order (a view)
    # writing into a step's own new array (rows.py): no copies of the parts
    empty: Callable[[tuple[int, ...], Any], Any]  # (shape, dtype) -> uninitialized
    copy_into: Callable[[Any, Any], None]  # (dst, src): dst[...] = src, broadcast
    fill_zero: Callable[[Any], None]
    equal_into: Callable[[Any, Any, Any], None]  # (a, b, dst): dst[...] = (a == b) as 0/1 in dst's dtype
    multiply_into: Callable[[Any, Any], None]  # (dst, b): dst *= b
    # the strategies' kernels (strategies.py); the sort-based ones only in plans made with strategy="sort"
    # (u [G, n], descending, below [n, n] = 1 where j < i, finite) -> [G, n]: #{j: u[j] > u[i]} + #{j < i: u[j] ==
    # u[i]} in u's dtype (< for ascending), the generic semantics' heaviside and delta of u[j] - u[i], from one
    # (i, j) difference matrix: on it, the clamp of sign(d) + below to [0, 1] is d > 0 where j >= i, d >= 0 where j < i
    pair_ranks: Callable[[Any, bool, Any, bool], Any]
    einsum: Callable[..., Any]  # (spec, *operands)
    bmm: Callable[[Any, Any], Any]  # [G, m, k] @ [G, k, n] -> [G, m, n]
    rows_product: Callable[[Any, Any], Any]  # bmm for the rows strategy's large product (torch: products.py)
    count_below: Callable[[Any, Any, bool], Any]  # (a [G, n], v [G, m], inclusive) -> #{a < v} or #{a <= v}, int64
    unpermute: Callable[[Any, Any], Any]  # (order [G, n], values [G, n]) -> out[g, order[g, p]] = values[g, p]
    ties_before: Callable[[Any], Any]  # u [G, n] -> #{j < i: u[g, j] == u[g, i]}, int64, by one stable sort
    rows: Callable[[Any, Any], Any]  # (Y [G, n, F], src [G, R] int) -> Y[g, src[g, r]], [G, R, F]
    scatter_rows: Callable[[Any, Any, int], Any]  # (Y [G, n, F], t [G, n] in [0, R]) -> sums by t, [G, R, F]
    invert: Callable[[Any, int], Any]  # (t [G, n] in [0, R]) -> (src [G, R + 1], count [G, R + 1]): who lands where
    # an op evaluated otherwise than its op-table `impl` on this backend: (xp, *arrays) -> array, by op
    overrides: Mapping[Op, Callable[..., Any]] = field(default_factory=dict)


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
        try:
            return x.detach().cpu().numpy()
        except (TypeError, RuntimeError, NotImplementedError):
            raise ValueError(f"cannot be read as a numpy array (a {x.device.type} tensor of {x.dtype})") from None
    a = np.asarray(x)
    if a.dtype.kind not in "biufc":
        raise ValueError(f"is not an array of numbers ({type(x).__name__})")
    return a


def _np_sum(a: np.ndarray) -> Any:
    # a finite sum proves every entry finite (NaN and inf propagate) without a boolean copy of the array. Half
    # precision sums in float32: a float16 sum overflows (and warns) past 65504, which an attention map reaches
    return a.sum(dtype=np.float32 if a.dtype == np.float16 else None)


def _np_finite(a: np.ndarray) -> bool:
    return math.isfinite(_np_sum(a)) or bool(np.isfinite(a).all())  # only an overflowed sum tests each entry


def _np_unpermute(order: np.ndarray, values: np.ndarray) -> np.ndarray:
    """out[g, order[g, p]] = values[g, p]."""
    out = np.empty_like(values)
    out[np.arange(order.shape[0])[:, None], order] = values
    return out


def _np_stable_pos(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, axis=-1, kind="stable")
    return _np_unpermute(order, np.broadcast_to(np.arange(a.shape[-1]), order.shape))


def _np_ties_before(u: np.ndarray) -> np.ndarray:
    """In a stable sort equal keys keep their index order: an entry's position within its run of equal keys
    is the number of equal keys at lower indices."""
    order = np.argsort(u, axis=-1, kind="stable")
    vals = np.take_along_axis(u, order, -1)
    ar = np.arange(u.shape[-1])
    new = np.ones(u.shape, bool)
    new[:, 1:] = vals[:, 1:] != vals[:, :-1]
    start = np.maximum.accumulate(np.where(new, ar, 0), axis=-1)
    return _np_unpermute(order, ar - start)


def _np_count_below(a: np.ndarray, v: np.ndarray, inclusive: bool) -> np.ndarray:
    """#{j: a[g, j] < v[g, m]} (or <=) for every g, m: one stable sort of a and v merged, minus v's own ranks.

    Merged as [a, v] (inclusive) an a equal to v sorts before it; merged as [v, a], after it.
    """
    n, m = a.shape[-1], v.shape[-1]
    pos = _np_stable_pos(np.concatenate([a, v] if inclusive else [v, a], axis=-1))
    return (pos[..., n:] if inclusive else pos[..., :m]) - _np_stable_pos(v)


def _np_pair_ranks(u: np.ndarray, descending: bool, below: np.ndarray, finite: bool) -> np.ndarray:
    d = u[:, None, :] - u[:, :, None] if descending else u[:, :, None] - u[:, None, :]  # [g, i, j]
    if not finite:  # a NaN difference (inf - inf) compares false both ways: count it nowhere (fmax drops a NaN, and
        np.fmax(d, -1.0, out=d)  # only the sign of what is below -1 matters); nan_to_num would copy the matrix
    np.sign(d, out=d)
    d += below
    return np.clip(d, 0, 1, out=d).sum(2)  # in place: a fresh (B, N, N) array costs more than the arithmetic


def _np_invert(t: np.ndarray, R: int) -> tuple[np.ndarray, np.ndarray]:
    G, n = t.shape
    flat = (np.arange(G)[:, None] * (R + 1) + t).ravel()
    count = np.bincount(flat, minlength=G * (R + 1)).reshape(G, R + 1)
    src = np.zeros(G * (R + 1), np.int64)
    src[flat] = np.tile(np.arange(n), G)
    return src.reshape(G, R + 1), count


def _np_scatter_rows(Y: np.ndarray, t: np.ndarray, R: int) -> np.ndarray:
    G, _, F = Y.shape
    out = np.zeros((G, R + 1, F), Y.dtype)
    np.add.at(out, (np.arange(G)[:, None], t), Y)
    return out[:, :R]


NUMPY = Backend(
    name="numpy",
    flag=lambda mask, like: mask.astype(like.dtype if like.dtype.kind == "f" else np.float64),
    asarray=lambda v, dtype: np.asarray(v, dtype=dtype),
    arange=lambda lo, hi: np.arange(lo, hi, dtype=np.int64),
    to_dtype=lambda a, dtype: a.astype(dtype, copy=False),
    sum=lambda a, axis: a.sum(axis=axis),
    mean=lambda a, axis, d=None: a.mean(axis) if d is None else np.add.reduce(a, axis) / d,  # see torch's
    amax=lambda a, axis: a.max(axis),
    exp=np.exp,
    where=np.where,
    concat=lambda parts, axis: np.concatenate(parts, axis=axis),
    moveaxis=np.moveaxis,
    broadcast_to=np.broadcast_to,
    take_along=np.take_along_axis,
    argsort=_np_argsort,
    clip=np.clip,
    int_dtype=np.int64,
    isfinite_all=_np_finite,
    sums_finite=lambda arrays: math.isfinite(sum(float(_np_sum(a)) for a in arrays)),  # Python floats: no warning
    is_float=lambda a: a.dtype.kind == "f",
    convert=_np_convert,
    viewer=lambda key, shape: lambda x: x[key],  # numpy's basic indexing is cheap already
    permute=np.transpose,
    empty=lambda shape, dtype: np.empty(shape, dtype),
    copy_into=np.copyto,
    fill_zero=lambda a: a.fill(0),
    equal_into=lambda a, b, out: np.equal(a, b, out=out),
    multiply_into=lambda a, b: np.multiply(a, b, out=a),
    pair_ranks=_np_pair_ranks,
    einsum=np.einsum,
    bmm=np.matmul,
    rows_product=np.matmul,
    count_below=_np_count_below,
    ties_before=_np_ties_before,
    unpermute=_np_unpermute,
    rows=lambda Y, src: Y[np.arange(src.shape[0])[:, None], src],
    scatter_rows=_np_scatter_rows,
    invert=_np_invert,
)


def _torch_backend() -> Backend:
    import torch

    from .products import torch_rows_product

    def convert(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            if not x.is_cpu:  # plans hold CPU constants; other devices are not tested here
                raise ValueError(f"is on the {x.device.type} device; the torch backend computes on the CPU "
                                 "(pass .cpu())")
            return x
        try:
            return torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"is not an array of numbers ({type(x).__name__})") from None

    def viewer(key: tuple, shape: tuple[int, ...]) -> Callable[[Any], Any]:
        """x[key] for ints and slices. For a contiguous x (inputs usually are) one as_strided call with the
        strides worked out now (at B=1 indexing's parsing of the key costs more than the view); its offset is
        the input's own plus a constant, never a value. torch slices step forward only: an axis read backwards
        is flipped first (a copy)."""
        flips = tuple(d for d, e in enumerate(key) if isinstance(e, slice) and e.indices(shape[d])[2] < 0)
        if flips:
            def mirror(d: int, e: Any) -> Any:
                if d not in flips:
                    return e
                start, stop, step = e.indices(shape[d])
                count = len(range(start, stop, step))
                first = shape[d] - 1 - start
                return slice(first, first - step * (count - 1) + 1, -step)
            forward = viewer(tuple(mirror(d, e) for d, e in enumerate(key)), shape)
            return lambda x: forward(x.flip(flips))

        def index(x: Any) -> Any:
            return x[key]
        strides = [math.prod(shape[d + 1:]) for d in range(len(shape))]
        size, stride, delta = [], [], 0
        for d, e in enumerate(key):
            if isinstance(e, slice):
                start, stop, step = e.indices(shape[d])
                if stop <= start:
                    return index
                size.append(len(range(start, stop, step)))
                stride.append(strides[d] * step)
                delta += start * strides[d]
            else:
                delta += (e % shape[d]) * strides[d]
        size += shape[len(key):]
        stride += strides[len(key):]

        def strided(x: Any) -> Any:
            return x.as_strided(size, stride, x.storage_offset() + delta) if x.is_contiguous() else x[key]
        return strided

    def as_dtype(dtype: Any) -> Any:
        if isinstance(dtype, torch.dtype):
            return dtype
        return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
                np.dtype(np.float16): torch.float16, np.dtype(np.int64): torch.int64}[np.dtype(dtype)]

    def finite(a: Any) -> bool:
        return math.isfinite(a.sum().item()) or bool(torch.isfinite(a).all())

    def sums_finite(arrays: list[Any]) -> bool:
        total = arrays[0].sum()
        for a in arrays[1:]:
            total = total + a.sum()
        return math.isfinite(total.item())  # the call's one read of a value on the host

    def ties_before(u: Any) -> Any:
        vals, order = torch.sort(u, dim=-1, stable=True)
        ar = torch.arange(u.shape[-1])
        new = torch.ones(u.shape, dtype=torch.bool)
        new[:, 1:] = vals[:, 1:] != vals[:, :-1]
        start = torch.where(new, ar, 0).cummax(-1).values
        return torch.empty_like(order).scatter_(-1, order, ar - start)

    def pair_ranks(u: Any, descending: bool, below: Any, finite: bool) -> Any:
        if u.requires_grad:  # a count has no gradient (the generic heaviside is a comparison cast to the dtype)
            u = u.detach()
        d = u.unsqueeze(1) - u.unsqueeze(2) if descending else u.unsqueeze(2) - u.unsqueeze(1)  # [g, i, j]
        if not finite:  # a NaN difference (inf - inf) compares false both ways: count it nowhere
            d.nan_to_num_(-1.0, math.inf, -math.inf)
        return d.sign_().add_(below).clamp_(0, 1).sum(2)  # in place: a fresh (B, N, N) tensor costs more

    def count_below(a: Any, v: Any, inclusive: bool) -> Any:
        ordered = torch.sort(a, dim=-1).values
        return torch.searchsorted(ordered, v.contiguous(), right=inclusive)

    def rows(Y: Any, src: Any) -> Any:
        """Y[g, src[g, r]] as one index_select over Y's rows in memory (x[:, 1:] is not copied first)."""
        G, n, F = Y.shape
        R = src.shape[1]
        if G == 1:
            return Y.index_select(1, src.squeeze(0))  # squeeze, not src[0]: no index to parse
        sg, si, sf = Y.stride()
        if sf == 1 or F == 1:
            if sg == 0:

                return Y[0].index_select(0, src.reshape(-1)).view(G, R, F)
            if si > 0 and sg % si == 0:
                step = sg // si
                flat = torch.as_strided(Y, ((G - 1) * step + n, F), (si, 1), Y.storage_offset())
                return flat.index_select(0, (torch.arange(G)[:, None] * step + src).reshape(-1)).view(G, R, F)
        return Y.reshape(G * n, F).index_select(0, (torch.arange(G)[:, None] * n + src).reshape(-1)).view(G, R, F)

    def scatter_rows(Y: Any, t: Any, R: int) -> Any:
        G, n, F = Y.shape
        out = torch.zeros((G, R + 1, F), dtype=Y.dtype)
        return out.scatter_add_(1, t[:, :, None].expand(G, n, F), Y)[:, :R]

    def invert(t: Any, R: int) -> tuple[Any, Any]:
        G, n = t.shape
        count = torch.zeros((G, R + 1), dtype=torch.int64).scatter_add_(1, t, torch.ones_like(t))
        src = torch.zeros((G, R + 1), dtype=torch.int64).scatter_(1, t, torch.arange(n).expand(G, n))
        return src, count

    return Backend(
        name="torch",
        flag=lambda mask, like: mask.to(like.dtype if like.is_floating_point() else torch.float64),
        asarray=lambda v, dtype: torch.as_tensor(v, dtype=as_dtype(dtype)),
        arange=lambda lo, hi: torch.arange(lo, hi, dtype=torch.int64),
        to_dtype=lambda a, dtype: a.to(as_dtype(dtype)),
        sum=lambda a, axis: a.sum(dim=axis),
        # for float32/64 (and a divisor prepared as a 0-dim tensor, not converted per call) mean is this
        mean=lambda a, axis, d=None: a.mean(dim=axis) if d is None else a.sum(dim=axis).div_(d),
        amax=lambda a, axis: a.amax(dim=axis),
        exp=torch.exp,
        where=lambda m, a, b: torch.where(m, a, torch.as_tensor(b, dtype=a.dtype)),
        concat=lambda parts, axis: torch.cat(parts, dim=axis),
        moveaxis=torch.movedim,
        broadcast_to=lambda a, shape: a.expand(shape),
        take_along=lambda a, idx, axis: torch.take_along_dim(a, idx, dim=axis),
        argsort=lambda a, descending: torch.sort(a, dim=-1, descending=descending, stable=True).indices,
        clip=lambda a, lo, hi: a.clamp(lo, hi),
        int_dtype=torch.int64,
        isfinite_all=finite,
        sums_finite=sums_finite,
        is_float=lambda a: a.is_floating_point(),
        convert=convert,
        viewer=viewer,
        permute=torch.permute,
        empty=lambda shape, dtype: torch.empty(shape, dtype=as_dtype(dtype)),
        copy_into=lambda a, b: a.copy_(b),
        fill_zero=lambda a: a.zero_(),
        equal_into=lambda a, b, out: torch.eq(a, b, out=out),
        multiply_into=lambda a, b: a.mul_(b),
        pair_ranks=pair_ranks,
        einsum=torch.einsum,
        bmm=torch.bmm,  # much less overhead than matmul's broadcasting for small operands
        rows_product=torch_rows_product,
        count_below=count_below,
        ties_before=ties_before,
        unpermute=lambda o, values: torch.empty_like(values).scatter_(-1, o, values),
        rows=rows,
        scatter_rows=scatter_rows,
        invert=invert,
    )


_BACKENDS: dict[str, Callable[[], Backend]] = {"numpy": lambda: NUMPY, "torch": _torch_backend}
_loaded: dict[str, Backend] = {}


def permuter(xp: Backend, order: list[int]) -> Callable[[Any], Any] | None:
    """a -> a with its axes in `order` (a view), or None when the order is the identity."""
    if order == list(range(len(order))):
        return None
    perm, permute = tuple(order), xp.permute
    return lambda a: permute(a, perm)


def get_backend(name: str) -> Backend:
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(_BACKENDS)}")
    if name not in _loaded:
        _loaded[name] = _BACKENDS[name]()
    return _loaded[name]
