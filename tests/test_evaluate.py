"""The evaluator: evit and topk in their ORIGINAL form against the torch references (official code on continuous
draws, stable variants on tied draws), each op against a numpy oracle written here, and input validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import linearize as L
from linearize import InputError
from linearize.reference import REFERENCES

BACKENDS = ["numpy", "torch"]
DTYPES = [np.float32, np.float64]
TOL = {np.float32: (1e-5, 1e-6), np.float64: (1e-12, 1e-12)}  # rtol, atol (atol scaled by the terms' size)
TIES = [0.0, 0.25, 0.5, 1.0]  # dyadic: head means of tied columns are tied in every implementation


def run(prog, backend, **kw):
    """Evaluate with numpy arrays in and out; the torch backend gets torch tensors."""
    if backend == "torch":
        kw = {n: torch.from_numpy(a) if isinstance(a, np.ndarray) else a for n, a in kw.items()}
    out = L.compile(prog, backend)(**kw)
    if backend == "torch":
        assert isinstance(out, torch.Tensor)
        out = out.numpy()
    return out


def scores(attn):
    """Head-mean CLS attention, by a loop: [B, N]."""
    return sum(attn[:, h, 0, 1:].astype(np.float64) for h in range(attn.shape[1])) / attn.shape[1]


def check_selection(name, backend, x, attn, k, variant):
    ref = REFERENCES[name][variant](torch.from_numpy(x), torch.from_numpy(attn), k).numpy()
    out = run(L.programs.get(name), backend, x=x, attn=attn, k=k)
    assert out.dtype == x.dtype and out.shape == ref.shape
    n = x.shape[1] - 1
    if k == n:  # the official code returns x itself: nothing pruned, no fused token
        assert np.array_equal(out, x)
        return
    assert out.shape == (x.shape[0], k + (2 if name == "evit" else 1), x.shape[2])
    assert np.array_equal(out[:, :k + 1], ref[:, :k + 1])  # selected rows are copied, so exactly equal
    if name == "evit":
        rtol, atol = TOL[x.dtype.type]
        size = np.einsum("bn,bnc->bc", np.abs(scores(attn)), np.abs(x[:, 1:].astype(np.float64)))
        err = np.abs(out[:, -1].astype(np.float64) - ref[:, -1])
        assert np.all(err <= atol * (1 + size) + rtol * np.abs(ref[:, -1])), err


@st.composite
def selection_inputs(draw, dtype, tied):
    b, h, n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 8)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x, attn = rng.normal(size=(b, n + 1, c)), rng.random((b, h, n + 1, n + 1))
    if tied:
        attn[:, :, 0, :] = draw(hnp.arrays(np.float64, (b, h, n + 1), elements=st.sampled_from(TIES)))
    return x.astype(dtype), attn.astype(dtype), draw(st.integers(1, n))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["evit", "topk"])
@pytest.mark.parametrize("tied", [False, True], ids=["continuous", "tied"])
def test_original_form_matches_the_reference(name, backend, dtype, tied):
    @given(selection_inputs(dtype, tied))
    def prop(case):
        check_selection(name, backend, *case, variant="stable" if tied else "official")
    prop()


SIZES = [(1, 1, 1, 1, 1), (2, 2, 1, 3, 1), (1, 1, 2, 1, 1), (3, 2, 2, 2, 2), (2, 3, 5, 4, 1), (2, 3, 5, 4, 3),
         (2, 4, 6, 3, 6), (4, 12, 16, 8, 7)]  # (B, H, N, C, k): N + 1 = 2, k = 1, k = N, B > 1, H > 1


@pytest.mark.parametrize("b, h, n, c, k", SIZES, ids=[f"B{b}H{h}N{n}C{c}k{k}" for b, h, n, c, k in SIZES])
@pytest.mark.parametrize("name", ["evit", "topk"])
def test_sizes(name, b, h, n, c, k):
    rng = np.random.default_rng(n * 100 + k)
    for backend in BACKENDS:
        for dtype in DTYPES:
            x, attn = rng.normal(size=(b, n + 1, c)).astype(dtype), rng.random((b, h, n + 1, n + 1)).astype(dtype)
            check_selection(name, backend, x, attn, k, "official")
            attn[:, :, 0, :] = rng.choice(TIES, size=(b, h, n + 1))
            check_selection(name, backend, x, attn, k, "stable")


# -------------------------------------------------------------------------------- ops, one by one
N, C, H, k = L.sizes("N C H k")
x, attn, v, w = L.tensor("x", N + 1, C), L.tensor("attn", H, N + 1, N + 1), L.tensor("v", N), L.tensor("w", N)
i, j, r = L.index("i", N), L.index("j", N), L.index("r", k)
j_lt_i, j_from_i = L.index("j", i), L.index("j", i, N)


def order(key, descending):
    """Stable order of one key vector: equal keys keep the lower index first."""
    return sorted(range(len(key)), key=lambda t: (-key[t] if descending else key[t], t))


def per_example(f):
    return lambda a, kk: np.stack([f({n: arr[b] for n, arr in a.items()}, kk) for b in range(len(a["v"]))])


OPS = {  # name: (output node, oracle on one example's arrays and k)
    "sum<j < i>": (L.stack_over(i, L.sum_over(j_lt_i, v[j_lt_i])), lambda a, kk: [sum(a["v"][:t]) for t in
                                                                              range(len(a["v"]))]),
    "sum<i <= j < N>": (L.stack_over(i, L.sum_over(j_from_i, v[j_from_i] * w[i])),
                        lambda a, kk: [sum(a["v"][t:]) * a["w"][t] for t in range(len(a["v"]))]),
    "ragged-count": (L.stack_over(i, L.sum_over(j_lt_i, L.delta(v[j_lt_i] - v[i]))),
                     lambda a, kk: [sum(a["v"][s] == a["v"][t] for s in range(t)) for t in range(len(a["v"]))]),
    "stack_over": (L.stack_over(r, x[r + 1] * 2.0), lambda a, kk: [2 * a["x"][t + 1] for t in range(kk)]),
    "stack-constant": (L.stack_over(r, x[0]), lambda a, kk: [a["x"][0]] * kk),
    "slice": (attn[:, 0, 1:], lambda a, kk: [[a["attn"][h][0][t + 1] for t in range(len(a["v"]))]
                                             for h in range(len(a["attn"]))]),
    "slice-middle": (x[1:N], lambda a, kk: a["x"][1:len(a["v"])]),
    "cat": (L.cat(x[0:1], x[1:] * 2.0, x[0:1] - x[0:1]), lambda a, kk: [a["x"][0], *(2 * a["x"][1:]),
                                                                         0 * a["x"][0]]),
    "cat-axis1": (L.cat(x, x[:, 0:1], axis=1), lambda a, kk: [[*row, row[0]] for row in a["x"]]),
    "mean": (L.mean(attn[:, 0, 1:], axis=0), lambda a, kk: [sum(m[0][t + 1] for m in a["attn"]) / len(a["attn"])
                                                            for t in range(len(a["v"]))]),
    "argsort-desc": (L.argsort(v, descending=True), lambda a, kk: order(a["v"], True)),
    "argsort-asc": (L.argsort(v), lambda a, kk: order(a["v"], False)),
    "sort_by_key-desc": (L.sort_by_key(x[1:], v, True), lambda a, kk: [a["x"][t + 1] for t in order(a["v"], True)]),
    "sort_by_key-asc": (L.sort_by_key(w, v), lambda a, kk: [a["w"][t] for t in order(a["v"], False)]),
    "gather-topk": (L.gather(x[1:], L.topk(v, k)), lambda a, kk: [a["x"][t + 1] for t in order(a["v"], True)[:kk]]),
    "gather-vector": (L.gather(w, L.argsort(v)), lambda a, kk: [a["w"][t] for t in order(a["v"], False)]),
    "complement": (L.complement(L.topk(v, k), N),
                   lambda a, kk: sorted(set(range(len(a["v"]))) - set(order(a["v"], True)[:kk]))),
    "rank_of": (L.rank_of(v, True), lambda a, kk: [order(a["v"], True).index(t) for t in range(len(a["v"]))]),
    "kth_largest": (L.stack_over(r, L.kth_largest(x[1:], v, r)),
                    lambda a, kk: [a["x"][t + 1] for t in order(a["v"], True)[:kk]]),
    "heaviside": (L.heaviside(v - w), lambda a, kk: [1.0 if p > q else 0.0 for p, q in zip(a["v"], a["w"])]),
    "delta": (L.delta(v - w), lambda a, kk: [1.0 if p == q else 0.0 for p, q in zip(a["v"], a["w"])]),
    "arithmetic": (v * w - v / (w * w + 1.0) + -w, lambda a, kk: [p * q - p / (q * q + 1) - q
                                                                  for p, q in zip(a["v"], a["w"])]),
}
VALUES = st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0])  # few values: ties and zero differences


@pytest.mark.parametrize("op", list(OPS))
def test_op_against_numpy_oracle(op):
    node, oracle = OPS[op]
    used = [t for t in (x, attn, v, w) if t in node.toposort()]
    prog = L.program(op, used, node, sizes={k: (1, N)})  # every program takes k, used or not

    @given(st.data())
    def prop(data):
        b, n, c, h = (data.draw(st.integers(lo, hi)) for lo, hi in ((1, 3), (1, 6), (1, 3), (1, 3)))
        kk = data.draw(st.integers(1, n))
        shapes = {"v": (b, n), "w": (b, n), "x": (b, n + 1, c), "attn": (b, h, n + 1, n + 1)}
        arr = {t: data.draw(hnp.arrays(np.float64, shapes[t], elements=VALUES)) if t in prog.input_names
               else np.zeros(shapes[t]) for t in shapes}
        expected = per_example(lambda a, kk: np.asarray(oracle(a, kk), dtype=np.float64))(arr, kk)
        for backend in BACKENDS:
            out = run(prog, backend, **{t: arr[t] for t in prog.input_names}, k=kk)
            assert out.shape == expected.shape
            np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12, err_msg=backend)
    prop()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_heaviside_is_strict_and_delta_exact(backend, dtype):
    vals = np.array([[0.0, -0.0, 1e-30, -1e-30, 3.0, -3.0]], dtype=dtype)
    prog = L.program("steps", [v], L.cat(L.heaviside(v)[None], L.delta(v)[None]))
    out = run(prog, backend, v=vals)
    assert out.dtype == dtype
    assert out.tolist() == [[[0, 0, 1, 0, 1, 0], [1, 1, 0, 0, 0, 0]]]  # heaviside(0) = 0, delta(-0.0) = 1


# ----------------------------------------------------------------------------------- input validation
def _inputs(b=2, n=4, c=3, h=2, dtype=np.float64):
    rng = np.random.default_rng(1)
    return {"x": rng.normal(size=(b, n + 1, c)).astype(dtype), "attn": rng.random((b, h, n + 1, n + 1)).astype(dtype)}


def _bad(arr, name, value):
    arr = dict(arr)
    arr[name] = value
    return arr


GOOD = _inputs()
NAN, INF = GOOD["attn"].copy(), GOOD["x"].copy()
NAN[1, 0, 0, 2], INF[0, 3, 1] = np.nan, -np.inf
INVALID = {  # name: (inputs, k, fragments the message must contain)
    "missing-array": ({"x": GOOD["x"]}, 2, ["missing", "attn"]),
    "wrong-rank": (_bad(GOOD, "x", GOOD["x"][0]), 2, ["x", "rank 3", "rank 2"]),
    "attn-rows": (_bad(GOOD, "attn", GOOD["attn"][:, :, :4]), 2, ["shapes disagree", "attn", "4", "5"]),
    "attn-cols": (_bad(GOOD, "attn", GOOD["attn"][..., :4]), 2, ["shapes disagree", "attn", "4", "5"]),
    "batch": (_bad(GOOD, "x", GOOD["x"][:1]), 2, ["batch", "x has 1", "attn has 2"]),
    "dtypes": (_bad(GOOD, "x", GOOD["x"].astype(np.float32)), 2, ["dtype", "float32", "float64"]),
    "integers": ({"x": np.ones((2, 5, 3), np.int64), "attn": np.ones((2, 2, 5, 5), np.int64)}, 2,
                 ["x", "floating-point", "int64"]),
    "nan": (_bad(GOOD, "attn", NAN), 2, ["attn", "NaN"]),
    "inf": (_bad(GOOD, "x", INF), 2, ["x", "inf"]),
    "k-zero": (GOOD, 0, ["k out of range", "1 <= k <= N", "k = 0"]),
    "k-negative": (GOOD, -1, ["k out of range", "k = -1"]),
    "k-above-N": (GOOD, 5, ["k out of range", "N = 4", "k = 5"]),
    "k-fraction": (GOOD, 2.5, ["k", "integer", "2.5"]),
    "k-none": (GOOD, None, ["k", "integer", "None"]),
    "k-string": (GOOD, "2", ["k", "integer", "'2'"]),
    "k-bool": (GOOD, True, ["k", "integer", "True"]),
    "no-k": (GOOD, "omit", ["k", "required"]),
    "no-tokens": (_inputs(n=0), 1, ["k out of range", "N = 0"]),
    "not-numbers": (_bad(GOOD, "x", "x"), 2, ["x", "not an array of numbers", "str"]),
    "none": (_bad(GOOD, "attn", None), 2, ["attn", "not an array of numbers", "NoneType"]),
}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tensor_off_the_cpu_is_named(backend):
    """The torch backend computes on the CPU and says so; numpy cannot read a meta tensor, and says that."""
    kw = {"x": torch.from_numpy(GOOD["x"]).to("meta"), "attn": torch.from_numpy(GOOD["attn"])}
    fragments = {"torch": ["x ", "meta device", "CPU", ".cpu()"], "numpy": ["x ", "numpy array", "meta"]}[backend]
    with pytest.raises(InputError) as info:
        L.compile(L.programs.get("evit"), backend)(**kw, k=2)
    message = str(info.value)
    assert message.startswith("x ") and "\n" not in message and all(f in message for f in fragments), message


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_inputs_are_named(case, backend):
    arrays, kk, fragments = INVALID[case]
    kw = {**arrays, **({} if isinstance(kk, str) and kk == "omit" else {"k": kk})}
    with pytest.raises(InputError) as info:
        run(L.programs.get("evit"), backend, **kw)
    message = str(info.value)
    assert "\n" not in message and all(f in message for f in fragments), message


@pytest.mark.parametrize("backend", BACKENDS)
def test_valid_integral_k_forms_are_accepted(backend):
    expected = run(L.programs.get("evit"), backend, **GOOD, k=2)
    for kk in (np.int64(2), 2.0):
        assert np.array_equal(run(L.programs.get("evit"), backend, **GOOD, k=kk), expected)
