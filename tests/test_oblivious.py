"""The default plan of a linearized program is data-oblivious: every aten op a torch call executes is recorded (a
TorchDispatchMode) and must be in the allow-list below (elementwise arithmetic and comparisons, reductions, matrix
products, static views, reshapes, concatenation), with one host read, the input check's; and the recorded trace
(ops, shapes, non-tensor arguments such as the views' offsets) is the same for any values of the inputs, ties or
none. The sort-based plan (strategy="sort") is the control: the recorder must catch its sorts and index ops."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import linearize as L
from linearize.reference import REFERENCES

ALLOWED = {
    # elementwise arithmetic and comparisons (in place on the plan's own intermediates included)
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "neg", "sign", "sign_", "clamp", "clamp_",
    "nan_to_num", "nan_to_num_", "abs", "where", "gt", "ge", "lt", "le", "eq", "ne", "logical_and",
    "bitwise_and", "logical_not", "bitwise_not", "isfinite",
    # reductions and matrix products
    "sum", "mean", "all", "bmm", "mm", "matmul",
    "_linear_pointwise",  # oneDNN's matmul, image by image for a large product (linearize/eval/products.py)
    # static views, reshapes, copies and concatenation
    "as_strided", "view", "_unsafe_view", "reshape", "_reshape_alias", "unsqueeze", "squeeze", "expand", "permute",
    "transpose", "t", "slice", "select", "alias", "detach", "clone", "contiguous", "_to_copy", "copy_", "flip",
    "cat", "empty", "empty_like", "zeros", "zeros_like", "zero_", "fill_",
    # the input check's one host read of a finiteness reduction
    "_local_scalar_dense",
}
DATA_DEPENDENT = {"sort", "topk", "argsort", "gather", "index_select", "index", "scatter", "scatter_", "scatter_add_",
                  "nonzero", "masked_select", "searchsorted", "cummax", "take_along_dim", "unique"}


class Recorder(TorchDispatchMode):
    """Every aten op executed inside the `with`, with its tensors' shapes and its other arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.trace: list[tuple[str, tuple]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        flat = torch.utils._pytree.tree_leaves((args, kwargs or {}))
        self.trace.append((func.overloadpacket.__name__,
                           tuple(("tensor", tuple(a.shape), tuple(a.stride()), str(a.dtype))
                                 if isinstance(a, torch.Tensor) else a for a in flat)))
        return out

    @property
    def ops(self) -> list[str]:
        return [name for name, _ in self.trace]


@functools.cache
def linearized(name: str) -> L.Program:
    return L.linearize(L.programs.get(name)).result


def inputs(seed: int, b: int, n: int, c: int, h: int, ties: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n + 1, c, generator=g)
    attn = torch.rand(b, h, n + 1, n + 1, generator=g)
    if ties:  # CLS attention from a few dyadic values: head means tie exactly
        attn[:, :, 0] = torch.tensor([0.0, 0.25, 0.5, 1.0])[torch.randint(0, 4, (b, h, n + 1), generator=g)]
    return x, attn


def record(f, x, attn, k) -> tuple[Recorder, torch.Tensor]:
    with Recorder() as rec:
        out = f(x=x, attn=attn, k=k)
    return rec, out


SIZES = [(1, 16, 8, 2, 5), (1, 16, 8, 2, 1), (4, 16, 8, 2, 11), (3, 10, 5, 3, 9), (2, 40, 6, 2, 28), (5, 7, 4, 1, 3),
         (2, 196, 128, 2, 138)]  # the last: a product large enough for oneDNN image by image (products.LARGE)


@pytest.mark.parametrize("name", ["evit", "topk"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "B{}-N{}-C{}-H{}-k{}".format(*s))
def test_default_plan_executes_only_oblivious_ops(name, size):
    b, n, c, h, k = size
    f = L.compile(linearized(name), "torch")
    traces = []
    for seed, ties in ((0, False), (1, True), (2, False)):
        x, attn = inputs(seed, b, n, c, h, ties)
        f(x=x, attn=attn, k=k)  # the plan is made outside the recording
        rec, out = record(f, x, attn, k)
        assert set(rec.ops) <= ALLOWED, f"not data-oblivious: {sorted(set(rec.ops) - ALLOWED)}"
        assert rec.ops.count("_local_scalar_dense") <= 1, "one host read, the input check's"
        traces.append(rec.trace)
        ref = REFERENCES[name]["stable" if ties else "official"](x, attn, k)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        assert torch.equal(out[:, :k + 1], ref[:, :k + 1])
    assert traces[0] == traces[1] == traces[2], "the ops or their arguments depend on the values"


@pytest.mark.parametrize("name", ["evit", "topk"])
def test_views_of_inputs_at_an_offset_read_only_the_layout(name):
    """An input that is a view into a larger tensor is read with strides and an offset from its layout: two inputs
    at the same offset with different values give the same trace."""
    b, n, c, h, k = 2, 12, 4, 2, 6
    f = L.compile(linearized(name), "torch")
    traces = []
    for seed in (3, 4):
        x, attn = inputs(seed, b + 1, n, c, h, ties=seed == 4)
        f(x=x[1:], attn=attn[1:], k=k)
        rec, _ = record(f, x[1:], attn[1:], k)
        assert set(rec.ops) <= ALLOWED
        traces.append(rec.trace)
    assert traces[0] == traces[1]


def test_the_recorder_catches_the_sort_plan():
    """The control: the sort-based plan sorts and moves rows by index, and the recorder sees it."""
    x, attn = inputs(0, 3, 16, 8, 2, ties=False)
    f = L.compile(linearized("evit"), "torch", strategy="sort")
    f(x=x, attn=attn, k=5)
    rec, _ = record(f, x, attn, 5)
    assert set(rec.ops) & DATA_DEPENDENT, rec.ops
    assert not (ALLOWED & DATA_DEPENDENT)


@pytest.mark.parametrize("b", [1, 3])
def test_the_input_check_is_the_only_host_read_and_raises_on_bad_input(b):
    x, attn = inputs(0, b, 9, 4, 2, ties=False)
    f = L.compile(linearized("evit"), "torch")
    f(x=x, attn=attn, k=4)
    rec, _ = record(f, x, attn, 4)
    assert rec.ops.count("_local_scalar_dense") == 1
    attn[0, 0, 0, 3] = float("nan")
    with pytest.raises(L.InputError, match="attn contains NaN"):
        f(x=x, attn=attn, k=4)


def test_numpy_runs_the_same_plan():
    """The numpy backend plans the same oblivious strategies (its kernels are the torch ones' numpy twins)."""
    x, attn = inputs(5, 2, 12, 3, 2, ties=True)
    plans = [L.compile(linearized("evit"), backend).plan(x=a, attn=b, k=7)
             for backend, a, b in (("torch", x, attn), ("numpy", x.numpy(), attn.numpy()))]
    assert [s.strategy for s in plans[0].steps] == [s.strategy for s in plans[1].steps]
    assert plans[0].mode == plans[1].mode == "oblivious"
    out = L.compile(linearized("evit"), "numpy")(x=x.numpy(), attn=attn.numpy(), k=7)
    np.testing.assert_allclose(out, REFERENCES["evit"]["stable"](x, attn, 7).numpy(), rtol=1e-5, atol=1e-5)


def test_the_large_product_runs_onednn_image_by_image_where_it_can():
    """At a size past products.LARGE the rows product is oneDNN's matmul per image when the op is there (and then
    the recorder sees it), and torch.bmm otherwise; float64 and autograd always take bmm."""
    from linearize.eval.products import LARGE, onednn_linear, torch_rows_product
    b, n, c, h, k = SIZES[-1]
    assert (k + 2) * (n + 1) * c >= LARGE
    x, attn = inputs(6, b, n, c, h, ties=True)
    f = L.compile(linearized("evit"), "torch")
    f(x=x, attn=attn, k=k)
    rec, _ = record(f, x, attn, k)
    assert ("_linear_pointwise" in rec.ops) == (onednn_linear() is not None)
    assert ("bmm" in rec.ops) == (onednn_linear() is None)
    g = torch.Generator().manual_seed(7)
    y = torch.randn(3, 300, 128, generator=g)
    d = torch.zeros(3, 120, 300)
    d[:, torch.arange(120), torch.randperm(300, generator=g)[:120]] = 1.0
    assert torch.equal(torch_rows_product(d, y), torch.bmm(d, y))  # one-hot rows: moved bit for bit
    w = torch.rand(3, 120, 300, generator=g)
    torch.testing.assert_close(torch_rows_product(w, y), torch.bmm(w, y), rtol=1e-5, atol=1e-4)
    for dd, yy in ((d.double(), y.double()), (d, y.clone().requires_grad_())):
        with Recorder() as rec:
            out = torch_rows_product(dd, yy)
        assert "bmm" in rec.ops and "_linear_pointwise" not in rec.ops
    out.sum().backward()
    assert yy.grad is not None
    before, torch.backends.mkldnn.enabled = torch.backends.mkldnn.enabled, False  # the user turned oneDNN off
    try:
        with Recorder() as rec:
            torch_rows_product(d, y)
    finally:
        torch.backends.mkldnn.enabled = before
    assert "bmm" in rec.ops and "_linear_pointwise" not in rec.ops
