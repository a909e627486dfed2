"""The planned evaluator: its fast strategies give the generic evaluator's values and the torch references'
(ties, k = 1, k = N, float32 and float64, numpy and torch), on both kernels of each strategy (the small-size
one and the large-size one); the plan for EViT takes the fast path and never builds a (rank x token x channel)
array; plans are made once per size environment."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

import linearize as L
from linearize.eval import counting, scatter
from linearize.eval.planner import Planner
from linearize.ir.printing import show
from linearize.reference import evit, evit_stable, topk, topk_stable

BACKENDS = ["numpy", "torch"]
STRATEGIES = ["oblivious", "sort"]
REFERENCE = {"evit": (evit, evit_stable), "topk": (topk, topk_stable)}
TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-5}, np.float64: {"rtol": 1e-12, "atol": 1e-12}}


@functools.cache
def linearized(name: str) -> L.Program:
    return L.linearize(L.programs.get(name)).result


@pytest.fixture(params=["oblivious", "sort-small", "sort-large"])
def kernels(request, monkeypatch):
    """The strategy to plan with: the oblivious kernels, or the sort-based plan's; "sort-large" forces the sort
    plan's kernels meant for large sizes (sorts, moved rows) onto the small test inputs."""
    if request.param == "sort-large":
        monkeypatch.setattr(counting, "PAIRS_MAX", 0)
        monkeypatch.setattr(scatter, "ONEHOT_MAX", 0)
    return request.param.split("-")[0]


def run(program: L.Program, backend: str, strategy: str = "oblivious", **arrays) -> np.ndarray:
    """The planned evaluation, as numpy; once more with each step's shape checked against the plan."""
    f = L.compile(program, backend, strategy=strategy)
    conv = {k: torch.from_numpy(v) if backend == "torch" and isinstance(v, np.ndarray) else v
            for k, v in arrays.items()}
    f.plan(**conv).run({k: v for k, v in conv.items() if k in program.input_names}, check=True)
    out = f(**conv)
    return out.numpy() if hasattr(out, "numpy") else np.asarray(out)


def generic(program: L.Program, **arrays) -> np.ndarray:
    return np.asarray(L.compile(program, planned=False)(**arrays))


def evit_inputs(seed: int, b: int, n: int, c: int, h: int, dtype, ties: bool):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, n + 1, c)).astype(dtype)
    attn = rng.random((b, h, n + 1, n + 1)).astype(dtype)
    if ties:  # CLS attention from a few dyadic values: head means tie exactly, in every implementation
        attn[:, :, 0, :] = rng.choice([0.0, 0.25, 0.5, 1.0], size=(b, h, n + 1)).astype(dtype)
    return x, attn


CASES = [(seed, b, n, c, h, k, ties) for seed, (b, n, c, h, k) in enumerate(
    [(2, 8, 3, 2, 1), (2, 8, 3, 2, 8), (3, 9, 4, 3, 6), (1, 1, 2, 1, 1), (4, 16, 5, 2, 11), (2, 30, 3, 4, 7)])
    for ties in (False, True)]


@pytest.mark.parametrize("name", ["evit", "topk"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"b{c[1]}-n{c[2]}-k{c[5]}-{'ties' if c[6] else 'cont'}")
def test_fast_path_equals_generic_and_reference(name, dtype, backend, case, kernels):
    seed, b, n, c, h, k, ties = case
    x, attn = evit_inputs(seed, b, n, c, h, dtype, ties)
    prog = linearized(name)
    got = run(prog, backend, kernels, x=x, attn=attn, k=k)
    want = generic(prog, x=x, attn=attn, k=k)
    ref = REFERENCE[name][ties](torch.from_numpy(x), torch.from_numpy(attn), k).numpy()
    assert got.dtype == want.dtype == dtype and got.shape == want.shape == ref.shape
    kept = k + 1
    np.testing.assert_array_equal(got[:, :kept], want[:, :kept])  # rows are moved, not summed: exactly equal
    np.testing.assert_array_equal(got[:, :kept], ref[:, :kept])
    np.testing.assert_allclose(got, want, **TOL[dtype])  # the fused token: the same sum in another order
    np.testing.assert_allclose(got, ref, **TOL[dtype])


def test_the_fast_path_is_taken_and_nothing_of_rank_x_token_x_channel_is_built():
    """The sort-based plan (strategy="sort"): nothing larger than x itself."""
    B, N, C, H, k = 4, 196, 64, 2, 138
    x, attn = evit_inputs(0, B, N, C, H, np.float32, False)
    f = L.compile(linearized("evit"), "numpy", strategy="sort")
    plan = f.plan(x=x, attn=attn, k=k)
    chosen = {show(n): s for n, s in plan.strategies.items()}
    assert chosen["[sum<i < N>(delta(rank[i] - r) * x[i + 1]) for r in range(k)]"] == "scatter"
    assert chosen["sum<i < N>(heaviside(rank[i] - k + 1) * cls_attn[i] * x[i + 1])"] == "contract"
    assert chosen["num_greater[i] + sum<j < i>(delta(cls_attn[j] - cls_attn[i]))"] == "rank"  # one stable sort
    for inner in ("sum<i < N>(delta(rank[i] - r) * x[i + 1])", "sum<j < N>(heaviside(cls_attn[j] - cls_attn[i]))",
                  "sum<j < i>(delta(cls_attn[j] - cls_attn[i]))"):
        assert inner not in chosen  # never planned on its own
    assert plan.largest <= B * (N + 1) * C < k * N * C  # no array beyond the size of x
    generic_plan = L.compile(linearized("evit"), "numpy", fast=False).plan(x=x, attn=attn, k=k)
    assert generic_plan.largest >= B * k * N * C  # what the fast path avoids
    np.testing.assert_allclose(f(x=x, attn=attn, k=k), generic(linearized("evit"), x=x, attn=attn, k=k),
                               rtol=1e-5, atol=1e-5)


def test_the_oblivious_plan_builds_nothing_of_rank_x_token_x_channel():
    """The default plan: the same strategies, with the (B, N, N) comparison matrix and the (B, k, N) one-hot matrix
    as its largest arrays beside x; the generic plan's (B, k, N, C) product never appears."""
    B, N, C, H, k = 4, 196, 64, 2, 138
    x, attn = evit_inputs(0, B, N, C, H, np.float32, False)
    plan = L.compile(linearized("evit"), "numpy").plan(x=x, attn=attn, k=k)
    chosen = {show(n): s for n, s in plan.strategies.items()}
    assert chosen[show(linearized("evit").output)] == "rows"  # CLS, kept rows and fused token: one product
    assert chosen["num_greater[i] + sum<j < i>(delta(cls_attn[j] - cls_attn[i]))"] == "rank"
    for inner in ("[sum<i < N>(delta(rank[i] - r) * x[i + 1]) for r in range(k)]", "x[:1]",
                  "sum<i < N>(heaviside(rank[i] - k + 1) * cls_attn[i] * x[i + 1])"):
        assert inner not in chosen  # never planned on its own
    assert plan.mode == "oblivious"
    # the (B, N, N) differences, the (B, k + 2, N + 1) coefficients, the output: nothing of size B * k * N * C
    assert plan.largest == max(B * N * N, B * (k + 2) * (N + 1), B * (k + 2) * C)
    np.testing.assert_allclose(L.compile(linearized("evit"), "numpy")(x=x, attn=attn, k=k),
                               generic(linearized("evit"), x=x, attn=attn, k=k), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_plan_is_made_once_per_size_environment(backend, monkeypatch):
    made = []
    original = Planner.plan
    monkeypatch.setattr(Planner, "plan", lambda self, root: made.append(1) or original(self, root))
    f = L.compile(linearized("evit"), backend)
    x, attn = evit_inputs(1, 2, 8, 3, 2, np.float32, False)
    if backend == "torch":
        x, attn = torch.from_numpy(x), torch.from_numpy(attn)
    for _ in range(3):
        f(x=x, attn=attn, k=3)
    assert len(made) == 1 and f.plan(x=x, attn=attn, k=3) is f.plan(x=x, attn=attn, k=3)
    f(x=x, attn=attn, k=4)
    f(x=x[:1], attn=attn[:1], k=3)
    assert len(made) == 3
    with pytest.raises(L.InputError, match="k out of range"):
        f(x=x, attn=attn, k=9)


# --- each strategy on programs of its own, against the generic evaluator -----------------------------------
N, C, k = L.sizes("N C k")
X, A, Bk = L.tensor("x", N, C), L.tensor("a", N), L.tensor("b", N)
i, j, r = L.index("i", N), L.index("j", N), L.index("r", k)
below = L.index("j", i)
big = L.define("big", i, A[i] * 1e30)  # overflows float32 to inf where |a| > ~3.4e8
num_greater = L.define("num_greater", i, L.sum_over(j, L.heaviside(A[j] - A[i])))
rank = L.define("rank", i, num_greater[i] + L.sum_over(below, L.delta(A[below] - A[i])))
rank_up = L.define("rank_ascending", i, L.sum_over(below, L.delta(A[i] - A[below]))
                   + L.sum_over(j, L.heaviside(A[i] - A[j])))
big_rank = L.define("big_rank", i, L.sum_over(j, L.heaviside(big[j] - big[i]))
                    + L.sum_over(below, L.delta(big[below] - big[i])))
PROGRAMS = {
    "count-two-keys": L.stack_over(i, (L.sum_over(j, L.heaviside(A[j] - Bk[i]))
                                       + 2.0 * L.sum_over(j, L.heaviside(Bk[i] - A[j]))
                                       + 4.0 * L.sum_over(j, L.delta(A[j] - Bk[i]))) * X[i]),
    "ties-before": L.stack_over(i, L.sum_over(below, L.delta(A[below] - A[i])) * X[i]),
    "scatter-collide": L.stack_over(r, L.sum_over(i, L.delta(L.sum_over(j, L.heaviside(A[j] - A[i])) - r) * X[i])),
    "scatter-offset": L.stack_over(r, L.sum_over(i, L.delta(r + 1 - L.sum_over(j, L.heaviside(A[j] - A[i])))
                                                 * Bk[i] * X[i])),
    "scatter-not-integer": L.stack_over(r, L.sum_over(i, L.delta(A[i] - r) * X[i])),
    "scatter-overflow": L.stack_over(r, L.sum_over(i, L.delta(L.sum_over(j, L.heaviside(A[j] - A[i])) - r)
                                                   * big[i] * X[i])),
    "count-overflow": L.stack_over(i, (L.sum_over(j, L.heaviside(big[j] - big[i]))
                                       + 2.0 * L.sum_over(j, L.delta(big[j] - big[i]))
                                       + 4.0 * L.sum_over(below, L.delta(big[below] - big[i]))) * X[i]),

    "contract-ragged": L.stack_over(i, L.sum_over(below, A[below] * Bk[i] * X[below])),
    "compare": L.stack_over(i, L.heaviside(A[i] - Bk[i]) * X[i] + L.delta(big[i] - big[0]) * X[i]),
    "rank-scatter": L.stack_over(r, L.sum_over(i, L.delta(rank[i] - r) * X[i])),
    "rank-ascending": L.stack_over(r, L.sum_over(i, L.delta(rank_up[i] - r) * Bk[i] * X[i])),
    "rank-and-counts": L.stack_over(i, (rank[i] + 2.0 * num_greater[i]) * X[i]),
    "rank-overflow": L.stack_over(r, L.sum_over(i, L.delta(big_rank[i] - r) * big[i] * X[i])),

}


def keys(rng, n: int, kind: str) -> np.ndarray:
    if kind == "ties":
        return rng.choice([0.0, 0.5, 1.0], size=(2, n))
    if kind == "overflow":
        return rng.choice([0.0, 1.0, 1e9, -1e9, 2e9], size=(2, n))
    return rng.choice([0.0, 0.5, 1.0, 2.0, 2.5], size=(2, n)) if kind == "integers" else rng.normal(size=(2, n))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", ["continuous", "ties", "integers", "overflow"])
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_each_strategy_equals_the_generic_evaluator(name, kind, dtype, backend, kernels):
    prog = L.program(name, [X, A, Bk], PROGRAMS[name], sizes={k: (1, N)})
    rng = np.random.default_rng(len(name))
    n = 7
    a, b = keys(rng, n, kind).astype(dtype), keys(rng, n, kind).astype(dtype)
    x = rng.normal(size=(2, n, 3)).astype(dtype)
    for kk in (1, 4, n):
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is what the "overflow" keys are for
            got = run(prog, backend, kernels, x=x, a=a, b=b, k=kk)
            want = generic(prog, x=x, a=a, b=b, k=kk)
        np.testing.assert_allclose(got, want, **TOL[dtype])  # NaN where the evaluator has NaN
    fast = {s for s in L.compile(prog, backend, strategy=kernels).plan(x=x, a=a, b=b, k=n).strategies.values()}
    assert fast - {"generic", "constant"}, "no strategy was used"


# --- the strategy table: each entry states itself, and near misses of its pattern are left to the generic steps
def test_every_strategy_states_its_math_and_condition():
    from linearize.eval.strategies import STRATEGIES
    doc = (Path(__file__).resolve().parent.parent / "docs" / "performance.md").read_text()
    assert [s.name for s in STRATEGIES] == ["rows", "scatter", "rank", "count", "contract", "compare"]
    for s in STRATEGIES:
        assert "=" in s.math and s.needs and s.oblivious and s.sort, s.name
        assert f"\n| `{s.name}` " in doc, f"docs/performance.md does not list {s.name}"


upto = L.index("j", i + 1)  # j <= i
ranked = L.define("ranked", i, num_greater[i] + L.sum_over(below, L.delta(A[below] - A[i])))
NEAR_MISSES = {  # name: (the strategy that must not take the node, the node)
    "scatter-coefficient-2": ("scatter", L.stack_over(r, L.sum_over(i, L.delta(ranked[i] - 2 * r) * X[i]))),
    "scatter-two-factors-use-r": ("scatter", L.stack_over(r, L.sum_over(i, L.delta(ranked[i] - r) * A[r] * X[i]))),
    "scatter-heaviside": ("scatter", L.stack_over(r, L.sum_over(i, L.heaviside(ranked[i] - r) * X[i]))),
    "scatter-ragged": ("scatter", L.stack_over(i, L.sum_over(below, L.delta(A[below] - i) * X[below]))),
    "rank-ties-up-to-i": ("rank", L.stack_over(i, (num_greater[i] + L.sum_over(upto, L.delta(A[upto] - A[i])))
                                               * X[i])),
    "rank-ties-of-another-key": ("rank", L.stack_over(i, (num_greater[i]
                                                           + L.sum_over(below, L.delta(Bk[below] - Bk[i]))) * X[i])),
    "rank-greater-over-j-below-i": ("rank", L.stack_over(i, (L.sum_over(below, L.heaviside(A[below] - A[i]))
                                                             + L.sum_over(below, L.delta(A[below] - A[i]))) * X[i])),
    "rank-delta-for-greater": ("rank", L.stack_over(i, (L.sum_over(j, L.delta(A[j] - A[i]))
                                                        + L.sum_over(below, L.delta(A[below] - A[i]))) * X[i])),
    "count-operand-uses-both": ("count", L.sum_over(j, L.heaviside(A[j] * Bk[i] - Bk[i]))),
    "count-not-a-difference": ("count", L.sum_over(j, L.heaviside(A[j] + Bk[i]))),
    "count-ties-of-two-keys": ("count", L.sum_over(below, L.delta(A[below] - Bk[i]))),
    "count-rows": ("count", L.sum_over(j, L.heaviside(X[j] - X[i]))),
    "contract-one-factor": ("contract", L.sum_over(i, X[i])),
    "contract-nothing-saved": ("contract", L.sum_over(i, A[i] * Bk[i])),
    "compare-not-a-difference": ("compare", L.heaviside(A[i] + Bk[i])),
    "compare-index-expression": ("compare", L.heaviside(i - 2)),
    "rows-of-two-inputs": ("rows", L.cat(X[0:1], L.sum_over(i, A[i] * L.stack_over(j, X[j] * 2.0)[i])[None])),
    "rows-a-product-of-a-slice": ("rows", L.cat(X[0:1] * 2.0, L.sum_over(i, A[i] * X[i])[None])),
    "rows-slices-only": ("rows", L.cat(X[0:1], X[2:4])),
    "rows-a-sum-not-in-a-unit-axis": ("rows", L.cat(X[0:2], L.stack_over(r, L.sum_over(i, A[i] * X[i])))),
    "rows-a-row-read-backwards": ("rows", L.cat(X[0:1], L.sum_over(i, A[i] * X[N - 1 - i])[None])),
}


ROWS = {  # concatenations the rows strategy takes: slices, moved rows (offsets, weights, s = -1, R over i), sums
    "evit-like": L.cat(X[0:1], L.stack_over(r, L.sum_over(i, L.delta(ranked[i] - r) * X[i])),
                       L.sum_over(i, L.heaviside(ranked[i] - k + 1) * A[i] * X[i])[None]),
    "weights-and-offset": L.cat(L.stack_over(r, L.sum_over(i, L.delta(r + 1 - ranked[i]) * Bk[i] * X[i])),
                                X[1:3], L.sum_over(i, X[i])[None]),
    "reversed-positions": L.cat(L.stack_over(r, L.sum_over(i, L.delta(ranked[i] - (N - 1 - r)) * X[i])), X[0:1]),
    "collisions": L.cat(X[2:3], L.stack_over(r, L.sum_over(i, L.delta(num_greater[i] - r) * X[i]))),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(ROWS))
def test_rows_takes_a_concatenation_of_linear_maps_of_one_input(name, backend):
    prog = L.program(name, [X, A, Bk], ROWS[name], sizes={k: (1, N)})
    rng = np.random.default_rng(12)
    arrays = {"x": rng.normal(size=(3, 6, 2)), "a": rng.choice([0.0, 0.5, 1.0], (3, 6)),
              "b": rng.choice([0.0, 0.5, 2.0], (3, 6))}
    for kk in (1, 3, 6):
        got = run(prog, backend, **arrays, k=kk)
        np.testing.assert_allclose(got, generic(prog, **arrays, k=kk), rtol=1e-12, atol=1e-12)
        assert L.compile(prog, "numpy").plan(**arrays, k=kk).strategies[ROWS[name]] == "rows"
        assert "rows" not in L.compile(prog, "numpy", strategy="sort").plan(**arrays, k=kk).strategies.values()


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", list(NEAR_MISSES))
def test_a_strategy_does_not_take_a_near_miss(name, strategy):
    declined, target = NEAR_MISSES[name]
    out = target if not target.free else L.stack_over(next(iter(sorted(target.free, key=lambda v: v.name))), target)
    while out.free:
        out = L.stack_over(next(iter(out.free)), out)
    prog = L.program(name, [X, A, Bk], out, sizes={k: (1, N)})
    rng = np.random.default_rng(11)
    arrays = {"x": rng.choice([0.0, 0.5, 1.0], (2, 6, 3)), "a": rng.choice([0.0, 0.5, 1.0, 2.0], (2, 6)),
              "b": rng.choice([0.0, 0.5, 1.0], (2, 6))}
    plan = L.compile(prog, "numpy", strategy=strategy).plan(**arrays, k=3)
    assert plan.strategies[target] != declined, f"{declined} took {show(target)}"
    np.testing.assert_allclose(run(prog, "numpy", strategy, **arrays, k=3), generic(prog, **arrays, k=3),
                               rtol=1e-12, atol=1e-12)


def test_counts_past_the_mantissa_are_left_to_the_generic_steps():
    """In float16 an integer count is exact only below 2048: a rank over more keys, and rows moved to positions
    past it, are not planned by `rank` and `scatter` (whose kernels assume exact counts)."""
    prog = L.program("rank-scatter", [X, A], PROGRAMS["rank-scatter"], sizes={k: (1, N)})
    n = 2050
    arrays = {"x": np.ones((1, n, 1), np.float16), "a": np.zeros((1, n), np.float16)}
    for strategy in STRATEGIES:
        chosen = set(L.compile(prog, "numpy", strategy=strategy).plan(**arrays, k=n).strategies.values())
        assert not chosen & {"rank", "scatter"}, chosen
        small = {"x": arrays["x"][:, :40], "a": arrays["a"][:, :40]}
        assert {"rank", "scatter"} <= set(L.compile(prog, "numpy", strategy=strategy).plan(**small, k=40)
                                          .strategies.values())


def test_variable_index_on_a_later_axis():
    """x[:, i] over i lays out i's axis first, in the generic evaluator and in the plan."""
    x = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    ci = L.index("i", C)
    prog = L.program("columns", [X], L.stack_over(ci, X[:, ci]))
    np.testing.assert_array_equal(generic(prog, x=x), x.transpose(0, 2, 1))
    for backend in BACKENDS:
        np.testing.assert_array_equal(run(prog, backend, x=x), x.transpose(0, 2, 1))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_rank_known_while_planning_scatters_batched_rows(backend, strategy):
    """A key that does not depend on the inputs is ranked once, while planning; its rows still come per batch."""
    key = L.define("key", i, L.heaviside(i - 2) * 1.0)  # 0, 0, 0, 1, 1, ...: ties and a constant order
    greater = L.define("greater", i, L.sum_over(j, L.heaviside(key[j] - key[i])))
    ranked = L.define("ranked", i, greater[i] + L.sum_over(below, L.delta(key[below] - key[i])))
    prog = L.program("constant-key", [X], L.stack_over(r, L.sum_over(i, L.delta(ranked[i] - r) * X[i])),
                     sizes={k: (1, N)})
    x = np.random.default_rng(3).normal(size=(3, 6, 2))
    np.testing.assert_array_equal(run(prog, backend, strategy, x=x, k=4), generic(prog, x=x, k=4))
    np.testing.assert_array_equal(run(prog, backend, strategy, x=x, k=4), x[:, [3, 4, 5, 0]])


# --- small-size economies: each must keep the values ----------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=["f16", "f32", "f64"])
def test_mean_is_the_library_mean_to_the_bit(backend, dtype):
    """The planned mean (a sum, then a division by a prepared count) and the evaluator's mean are the
    library's own mean, bit for bit, also in half precision (whose library mean accumulates wider)."""
    (H,) = L.sizes("H")
    heads = L.tensor("attn", H, N)
    prog = L.program("head-mean", [heads], L.mean(heads, axis=0))
    attn = (np.random.default_rng(4).random((3, 12, 197)) * 100).astype(dtype)
    if backend == "torch":
        attn = torch.from_numpy(attn)
    want = attn.mean(1) if backend == "numpy" else attn.mean(dim=1)
    for f in (L.compile(prog, backend), L.compile(prog, backend, planned=False)):
        got = f(attn=attn)
        assert got.dtype == want.dtype
        assert (got == want).all(), f"{backend} {dtype.__name__}: mean differs from the library's"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sum_stacked_into_a_unit_axis_comes_out_of_its_product_in_shape(backend):
    """The fused-token pattern, sum<i>(w[i] * x[i]) put in a [1, C] axis: the product makes [1, C] itself (one
    step fewer); the same sum used a second time keeps its own step, and both outputs stay right. In the sort plan:
    the oblivious plan makes the whole concatenation one product (the `rows` strategy, tested below)."""
    fused = L.sum_over(i, A[i] * X[i])
    once = L.program("once", [X, A], L.cat(X[0:1], fused[None]))
    twice = L.program("twice", [X, A], L.cat(X[0:1], fused[None], (fused * 2.0)[None]))
    rng = np.random.default_rng(5)
    x, a = rng.normal(size=(2, 6, 3)), rng.normal(size=(2, 6))
    steps = {}
    for prog in (once, twice):
        np.testing.assert_allclose(run(prog, backend, "sort", x=x, a=a), generic(prog, x=x, a=a), rtol=1e-12,
                                   atol=1e-12)
        conv = {"x": torch.from_numpy(x), "a": torch.from_numpy(a)} if backend == "torch" else {"x": x, "a": a}
        steps[prog.name] = L.compile(prog, backend, strategy="sort").plan(**conv).steps
    contract = [s for s in steps["once"] if s.strategy == "contract"]
    assert len(contract) == 1 and contract[0].out in steps["once"][-1].ins  # straight into the cat
    assert len(steps["twice"]) == len(steps["once"]) + 3  # its reshape, the product by 2 and that one's


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_kept_token_whose_score_times_row_overflows_stays_out_of_the_fused_token(backend, strategy):
    """float32: token 1 has the top score (1e10) and a row of 1e30, so score * row is inf. The official code never
    forms that product (it weights the dropped tokens only); neither may the linearized form, planned or not
    (mask * (score * row) would be 0 * inf = NaN; the mask-first rule makes it (mask * score) * row = 0)."""
    x, attn = evit_inputs(6, 1, 6, 3, 2, np.float32, False)
    x[:, 2] = 1e30  # token 1 (row 2)
    attn[:, :, 0, 2] = 1e10
    want = evit(torch.from_numpy(x), torch.from_numpy(attn), 3).numpy()
    assert np.isfinite(want).all()
    with np.errstate(over="ignore", invalid="ignore"):
        planned = run(linearized("evit"), backend, strategy, x=x, attn=attn, k=3)
        for got in (planned, generic(linearized("evit"), x=x, attn=attn, k=3)):
            np.testing.assert_array_equal(got[:, :4], want[:, :4])
            np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("strategy", [*STRATEGIES, "generic"])
@pytest.mark.parametrize("ties", [False, True], ids=["continuous", "ties"])
def test_torch_backend_gradients_are_the_official_codes(strategy, ties):
    """In a model the linearized EViT must train like the original: d(out . R)/dx and /dattn through the torch
    backend equal those through the official code (the stable variant on ties)."""
    x, attn = evit_inputs(7, 2, 8, 4, 3, np.float64, ties)
    R = torch.from_numpy(np.random.default_rng(8).normal(size=(2, 7, 4)))
    f = L.compile(linearized("evit"), "torch", strategy=strategy)
    grads = []
    for fn in (lambda a, b: REFERENCE["evit"][ties](a, b, 5), lambda a, b: f(x=a, attn=b, k=5)):
        a, b = torch.from_numpy(x).requires_grad_(), torch.from_numpy(attn).requires_grad_()
        (fn(a, b) * R).sum().backward()
        grads.append((a.grad, b.grad))
    (gx, ga), (lx, la) = grads
    assert ga.abs().sum() > 0  # the scores get a gradient through the fused token's weights
    torch.testing.assert_close(lx, gx, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(la, ga, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_that_are_views_give_the_same_output(backend, strategy):
    """Slices of the inputs are taken with strides worked out while planning when an input is contiguous: an
    input that is a view at an offset into a larger array, or not contiguous at all, gives the same output."""
    x, attn = evit_inputs(9, 2, 8, 5, 3, np.float32, True)
    want = run(linearized("evit"), backend, strategy, x=x, attn=attn, k=4)
    lib = torch if backend == "torch" else np
    tx, ta = (torch.from_numpy(x), torch.from_numpy(attn)) if backend == "torch" else (x, attn)
    pad = lib.full((1, 9, 5), float("nan"), dtype=tx.dtype)
    padded = lib.concatenate([pad, tx])[1:]  # contiguous, at an offset into its storage
    strided = tx.transpose(1, 2).contiguous().transpose(1, 2) if backend == "torch" else \
        np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)  # not contiguous
    f = L.compile(linearized("evit"), backend, strategy=strategy)
    f(x=tx, attn=ta, k=4)  # the plan is made with contiguous inputs, then reused
    for xs in (padded, strided):
        got = np.asarray(f(x=xs, attn=ta, k=4))
        np.testing.assert_array_equal(got[:, :5], want[:, :5])  # rows are moved: exactly
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # a product's sum order follows the layout


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", [1, 3])
def test_rows_of_a_sorted_range_not_from_the_top(backend, batch, strategy):
    """[sum<i>(delta(rank[i] - r) * x[i]) for 1 <= r < k]: the sorted order's rows 1..k-1 (B=1 takes them
    with one strided view of the order), equal to the generic evaluator and to numpy's stable argsort."""
    tail = L.index("r", 1, k)
    prog = L.program("tail", [X, A], L.stack_over(tail, L.sum_over(i, L.delta(rank[i] - tail) * X[i])),
                     sizes={k: (1, N)})
    rng = np.random.default_rng(10)
    a = rng.choice([0.0, 0.5, 1.0], size=(batch, 7))
    x = rng.normal(size=(batch, 7, 3))
    got = run(prog, backend, strategy, x=x, a=a, k=5)
    order = np.argsort(-a, axis=1, kind="stable")[:, 1:5]
    np.testing.assert_array_equal(got, np.take_along_axis(x, order[:, :, None], 1))
    np.testing.assert_array_equal(got, generic(prog, x=x, a=a, k=5))
    conv = {"x": x, "a": a} if backend == "numpy" else {"x": torch.from_numpy(x), "a": torch.from_numpy(a)}
    assert "scatter" in L.compile(prog, backend, strategy=strategy).plan(**conv, k=5).strategies.values()
