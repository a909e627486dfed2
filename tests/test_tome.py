"""ToMe: the program in its original form and its linearized form equal the torch references -- the official code
on continuous inputs, the stable variant on ties (duplicated metric rows make equal similarities) -- over T = 2..9
and 197, every r up to the clip and past it, B > 1, float32 and float64, numpy and torch, planned and node by node;
and bad inputs are one-line errors."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import linearize as L
from linearize.ir.form import is_linearized, linearized_problems, ops_present
from linearize.reference import tome, tome_r, tome_stable

SELECTIONS = {"argsort", "topk", "gather", "complement", "argmax", "scatter_add", "rank_of", "sort_by_key", "kth"}


@functools.cache
def forms() -> dict[str, L.Program]:
    prog = L.programs.get("tome")
    return {"original": prog, "linearized": L.linearize(prog).result}


@functools.cache
def compiled(form: str, backend: str, planned: bool) -> L.Compiled:
    return L.compile(forms()[form], backend, planned=planned)


def run(form: str, backend: str, planned: bool, x: torch.Tensor, metric: torch.Tensor, size: torch.Tensor,
        r: int) -> tuple[np.ndarray, np.ndarray]:
    args = {"x": x, "metric": metric, "size": size}
    if backend == "numpy":
        args = {k: v.numpy() for k, v in args.items()}
    out = compiled(form, backend, planned)(**args, r=r)
    assert isinstance(out, tuple) and len(out) == 2
    return tuple(np.asarray(o) for o in out)  # type: ignore[return-value]


def assert_equal(got: tuple[np.ndarray, np.ndarray], want: tuple[torch.Tensor, torch.Tensor]) -> None:
    """x' to rounding (sources are summed in another order than the scatter's), size' exactly when sizes are
    integers; the same shapes and dtype."""
    (gx, gs), (ex, es) = got, (want[0].numpy(), want[1].numpy())
    assert gx.shape == ex.shape and gs.shape == es.shape and gx.dtype == ex.dtype and gs.dtype == es.dtype
    tol = 1e-12 if ex.dtype == np.float64 else 2e-6
    np.testing.assert_allclose(gx, ex, rtol=tol, atol=tol)
    np.testing.assert_allclose(gs, es, rtol=tol, atol=0)


MODES = [(form, backend, planned) for form in ("linearized", "original") for backend in ("numpy", "torch")
         for planned in (True, False)]
MODE_IDS = [f"{f}-{b}-{'planned' if p else 'generic'}" for f, b, p in MODES]
DTYPES = [torch.float64, torch.float32]
# every T from 2 to 9 with every r up to the clip (T - 1) // 2, and ViT sizes: T = 197 at r = 16 (DeiT-S's) and 98
SIZES = [(t, r) for t in range(2, 10) for r in range(0, (t - 1) // 2 + 1)] + [(197, 0), (197, 1), (197, 16), (197, 98)]


def continuous(b: int, t: int, dtype: torch.dtype, seed: int, sizes: str = "int"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, 5, generator=g, dtype=dtype)
    metric = torch.randn(b, t, 4, generator=g, dtype=dtype)  # continuous: distinct similarities
    size = (torch.randint(1, 5, (b, t, 1), generator=g).to(dtype) if sizes == "int"
            else torch.rand(b, t, 1, generator=g, dtype=dtype) * 3 + 0.25)
    return x, metric, size


def test_the_linearized_form_has_no_selection_left():
    original, linearized = forms()["original"], forms()["linearized"]
    assert {"argmax", "argsort", "gather", "complement", "scatter_add", "sqrt", "amax"} <= set(ops_present(original))
    assert not is_linearized(original) and linearized_problems(original)
    assert is_linearized(linearized), linearized_problems(linearized)
    assert not set(ops_present(linearized)) & SELECTIONS
    assert {"heaviside", "delta", "amax", "sqrt", "div"} <= set(ops_present(linearized))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_equals_the_official_code_on_continuous_inputs(mode, dtype):
    for n, (t, r) in enumerate(SIZES):
        if t == 197 and not (mode[0] == "linearized" or r in (0, 16)):
            continue  # the original form's gathers at T = 197: two sizes are enough
        x, metric, size = continuous(3, t, dtype, seed=n, sizes="int" if n % 2 else "float")
        assert_equal(run(*mode, x, metric, size, r), tome(x, metric, size, r))


def exact_metric(rng: np.random.Generator, b: int, t: int, dtype: torch.dtype, pool_size: int = 3) -> torch.Tensor:
    """Rows drawn from a few vectors of exact norm (one or four entries of +-1) at scales 1/2, 1, 2: the unit rows
    and their dot products are exact, so equal rows give exactly equal similarities, ties in both the argmax
    (an even row's best odd rows) and the order of the edge weights."""
    pool = np.array([[1, 0, 0, 0], [0, -1, 0, 0], [1, 1, 1, 1], [1, -1, 1, -1], [-1, -1, 1, 1]], float)[:pool_size]
    rows = pool[rng.integers(0, len(pool), (b, t))] * 2.0 ** rng.integers(-1, 2, (b, t, 1))
    return torch.tensor(rows, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_equals_the_stable_variant_on_ties(mode, dtype):
    rng = np.random.default_rng(7)
    for t, r in SIZES + [(33, 8), (60, 29)]:  # above 16 edge weights torch's official sort reorders ties
        if t == 197 and mode[0] == "original" and r != 16:
            continue
        for pool_size in (1, 3, 5):  # one vector: every similarity is 1
            metric = exact_metric(rng, 2, t, dtype, pool_size)
            x = torch.tensor(rng.normal(size=(2, t, 3)), dtype=dtype)
            size = torch.tensor(rng.integers(1, 4, (2, t, 1)), dtype=dtype)
            assert_equal(run(*mode, x, metric, size, r), tome_stable(x, metric, size, r))


@st.composite
def tied_cases(draw):
    b, t = draw(st.integers(2, 3)), draw(st.integers(2, 12))
    pool = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    return exact_metric(rng, b, t, torch.float64, pool), t, draw(st.integers(0, t)), seed


@settings(deadline=None, max_examples=40)
@given(case=tied_cases(), backend=st.sampled_from(["numpy", "torch"]))
def test_property_ties(case, backend):
    metric, t, r, seed = case
    rng = np.random.default_rng(seed + 1)
    x = torch.tensor(rng.choice([-1.0, 0.0, 0.5, 2.0], size=(metric.shape[0], t, 2)))
    size = torch.tensor(rng.choice([1.0, 2.0, 3.0], size=(metric.shape[0], t, 1)))
    want = tome_stable(x, metric, size, r)
    got = run("linearized", backend, True, x, metric, size, r)
    if t <= 2 and r > 0:  # the official code's round trip (x * size) / size, see test_small_t_with_r
        want = (x, size)
    assert_equal(got, want)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_r_is_clipped_as_the_official_code_clips_it(backend):
    for t in (3, 4, 9):
        x, metric, size = continuous(2, t, torch.float64, seed=t)
        for r in (tome_r(10**6, t), t, 10**6):
            got = run("linearized", backend, True, x, metric, size, r)
            assert got[0].shape == (2, t - tome_r(r, t), 5)
            assert_equal(got, tome(x, metric, size, r))


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_r_zero_returns_the_inputs(mode):
    x, metric, size = continuous(2, 7, torch.float64, seed=3, sizes="float")
    gx, gs = run(*mode, x, metric, size, 0)
    assert np.array_equal(gx, x.numpy()) and np.array_equal(gs, size.numpy())


def test_small_t_with_r():
    """T <= 2 leaves no even row to merge: r is clipped to 0. The official block still runs merge_wavg with its
    do_nothing merge and returns ((x * size) / size, size); the program's clipped r == 0 returns (x, size), the
    same to rounding, and exactly the same where the sizes are powers of two (ones at the first layer)."""
    for t in (1, 2):
        x, metric, size = continuous(2, t, torch.float64, seed=t, sizes="float")
        got = run("linearized", "numpy", True, x, metric, size, 1)
        assert_equal(got, tome(x, metric, size, 1))
        ones = torch.ones_like(size)
        gx, gs = run("linearized", "torch", True, x, metric, ones, 3)
        ex, es = tome(x, metric, ones, 3)
        assert np.array_equal(gx, ex.numpy()) and np.array_equal(gs, es.numpy())


def bad_inputs() -> list[tuple[str, dict, str]]:
    x, metric, size = (a.numpy() for a in continuous(2, 5, torch.float64, seed=0))
    zero_row, tiny_row, huge_row = metric.copy(), metric.copy(), metric.copy()
    zero_row[1, 3] = 0.0
    tiny_row[0, 2] = 1e-200  # its squares underflow: the norm is 0
    huge_row[0, 2] = 1e200  # its squares overflow: the norm is inf
    nonpositive = size.copy()
    nonpositive[1, 0, 0] = 0.0
    nan = x.copy()
    nan[0, 1, 1] = np.nan
    ok = {"x": x, "metric": metric, "size": size, "r": 1}
    return [("zero-norm", {**ok, "metric": zero_row}, "metric must have a finite nonzero L2 norm"),
            ("underflow", {**ok, "metric": tiny_row}, "metric must have a finite nonzero L2 norm"),
            ("overflow", {**ok, "metric": huge_row}, "metric must have a finite nonzero L2 norm"),
            ("size-zero", {**ok, "size": nonpositive}, "size must be > 0"),
            ("size-negative", {**ok, "size": -size}, "size must be > 0"),
            ("r-negative", {**ok, "r": -1}, "r out of range"),
            ("r-float", {**ok, "r": 1.5}, "size r must be an integer"),
            ("nan", {**ok, "x": nan}, "x contains NaN"),
            ("shapes", {**ok, "size": size[:, :4]}, "shapes disagree")]


@pytest.mark.parametrize("form", ["linearized", "original"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("case", bad_inputs(), ids=lambda c: c[0])
def test_bad_inputs_are_one_line_errors(case, backend, form):
    _, args, message = case
    with pytest.raises(L.InputError, match=message) as err:
        L.compile(forms()[form], backend)(**args)
    assert "\n" not in str(err.value)
