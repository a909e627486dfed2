"""linearize.bounds: sound by test. Boxes are drawn with hypothesis; points inside them (corners, interior points,
the centre, and points that make two tokens' scores tie) go through the official torch code, through every order
of the tied tokens (enumerated) and through the stable variant, and every output must lie within the bounds.
A degenerate box gives the output itself. Values are dyadic (multiples of 1/64, sums over at most 3 heads), so
the scores at a box's corner are computed exactly alike by the bounds and by torch."""

from __future__ import annotations

import functools
import itertools
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import linearize as L
from linearize import rank_of, tensor
from linearize.ir.nodes import Op
from linearize.reference import REFERENCES
from linearize.verify.bounds import DROPPED, KEPT, UNDECIDED
from linearize.verify.intervals import INTERVAL_RULES, LINEARIZE_FIRST

GRID = 64
TOL = 1e-12


@functools.cache
def linearized(name: str) -> L.Program:
    return L.linearize(L.programs.get(name)).result


# --- drawing boxes and points ----------------------------------------------------------------------------------------
@st.composite
def boxes(draw, max_n: int = 6, widths=(0, 1, 2, 4, 8)):
    """(lower, upper, k): x and attn boxes on the 1/64 grid; narrow or zero widths make touching and tied scores."""
    b, n, c, h = (draw(st.integers(1, m)) for m in (2, max_n, 3, 3))
    k = draw(st.integers(1, n))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    values = draw(st.sampled_from([4, 16, GRID]))  # few distinct centre values: many ties
    x = rng.integers(-GRID, GRID + 1, (b, n + 1, c)) / GRID
    attn = rng.integers(0, values + 1, (b, h, n + 1, n + 1)) * (GRID // values) / GRID
    w = np.array(widths)
    lower = {"x": x - rng.choice(w, x.shape) / GRID, "attn": attn - rng.choice(w, attn.shape) / GRID}
    upper = {"x": x + rng.choice(w, x.shape) / GRID, "attn": attn + rng.choice(w, attn.shape) / GRID}
    return lower, upper, k, seed


def points(lower: dict, upper: dict, seed: int, count: int = 6) -> list[dict]:
    """Corners, grid points inside, the centre, and points where two tokens' scores tie."""
    rng = np.random.default_rng(seed + 1)
    out = [{n: (lower[n] + upper[n]) / 2 for n in lower}]
    for _ in range(count):
        out.append({n: np.where(rng.random(lower[n].shape) < 0.5, lower[n], upper[n]) for n in lower})  # a corner
        out.append({n: lower[n] + np.floor(rng.random(lower[n].shape) * (upper[n] - lower[n]) * GRID + 0.5) / GRID
                    for n in lower})
    if "attn" in lower:
        lo, hi, col = lower["attn"][:, :, 0, 1:], upper["attn"][:, :, 0, 1:], lambda p, i: p["attn"][:, :, 0, 1 + i]
    elif "key" in lower or "score" in lower:  # scores [B, N]
        key = "key" if "key" in lower else "score"
        lo, hi, col = lower[key][:, None], upper[key][:, None], lambda p, i: p[key][:, i]
    elif "a" in lower:  # operands a and b of one op: a == b wherever the boxes meet
        common = np.maximum(lower["a"], lower["b"])
        meet = common <= np.minimum(upper["a"], upper["b"])
        for base in out[:3]:
            out.append({"a": np.where(meet, common, base["a"]), "b": np.where(meet, common, base["b"])})
        return out
    else:
        return out
    n = lo.shape[-1]
    for i, j in itertools.combinations(range(n), 2):  # the same scores for tokens i and j, where the boxes allow
        common = np.maximum(lo[..., i], lo[..., j])
        if (common <= np.minimum(hi[..., i], hi[..., j])).all():
            base = out[rng.integers(len(out))]
            p = {name: base[name].copy() for name in lower}
            col(p, i)[...] = col(p, j)[...] = common.reshape(col(p, i).shape)
            out.append(p)
    return out


# --- the oracle: the official code and every order of tied scores -----------------------------------------------------
def scores_of(attn: np.ndarray) -> np.ndarray:
    return torch.as_tensor(attn)[:, :, 0, 1:].mean(dim=1).numpy()  # as the official code computes them


def tie_orders(s: np.ndarray, limit: int = 720) -> list[np.ndarray]:
    """Every descending order of the scores s [N], tied scores in every order (stable first)."""
    groups = [np.flatnonzero(s == v) for v in sorted(set(s.tolist()), reverse=True)]
    if math.prod(math.factorial(len(g)) for g in groups) > limit:
        return [np.argsort(-s, kind="stable")]
    return [np.concatenate(p) for p in itertools.product(*(itertools.permutations(g) for g in groups))]


def select(x: np.ndarray, s: np.ndarray, order: np.ndarray, k: int, fused: bool) -> np.ndarray:
    """The official selection for one batch item with the given order of the tokens: CLS, the rows of order[:k],
    and for EViT the score-weighted sum of the others."""
    n = s.shape[0]
    if k == n:
        return x
    rows = [x[:1], x[1 + order[:k]]]
    if fused:
        rest = order[k:]
        rows.append((s[rest, None] * x[1 + rest]).sum(0, keepdims=True))
    return np.concatenate(rows)


def outputs(name: str, point: dict, k: int, stable_only: bool = False) -> list[np.ndarray]:
    """[B, ...] outputs: the official torch code, its stable variant, and every tie order (batch items combined
    item by item, each with its own tie orders, so each output varies one item at a time)."""
    x, attn = point["x"], point["attn"]
    refs = REFERENCES[name]
    tx, ta = torch.as_tensor(x), torch.as_tensor(attn)
    outs = [refs["stable"](tx, ta, k).numpy()]
    if stable_only:
        return outs
    outs.append(refs["official"](tx, ta, k).numpy())
    s = scores_of(attn)
    for b in range(x.shape[0]):
        for order in tie_orders(s[b]):
            out = outs[0].copy()
            out[b] = select(x[b], s[b], order, k, name == "evit")
            outs.append(out)
    return outs


def assert_within(bounds: L.verify.bounds.Bounds, out: np.ndarray, what: str = "") -> None:
    lo, hi = np.asarray(bounds.lower), np.asarray(bounds.upper)
    assert lo.shape == out.shape, (lo.shape, out.shape)
    slack = TOL * (1 + np.abs(out))
    bad = (out < lo - slack) | (out > hi + slack)
    assert not bad.any(), f"{what}: output outside the bounds at {np.argwhere(bad)[:5].tolist()}: " \
                          f"out {out[bad][:5]}, lower {lo[bad][:5]}, upper {hi[bad][:5]}"


def to_backend(arrays: dict, backend: str) -> dict:
    return {n: torch.as_tensor(a) if backend == "torch" else a for n, a in arrays.items()}


def np_bounds(b):
    """The bounds' arrays as numpy (the torch backend returns tensors)."""
    conv = lambda a: None if a is None else (a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a))
    return type(b)(conv(b.lower), conv(b.upper), conv(b.rank_lower), conv(b.rank_upper), b.k, b.ties, b.naive)


def run_bounds(name: str, lower: dict, upper: dict, k: int, backend: str = "numpy", **kw):
    return np_bounds(L.bounds(L.programs.get(name), to_backend(lower, backend), to_backend(upper, backend), k=k,
                              backend=backend, **kw))


# --- the op table ------------------------------------------------------------------------------------------------
def test_every_op_has_an_interval_rule_or_must_be_linearized_first():
    missing = [op.name for op in Op if op not in INTERVAL_RULES and op not in LINEARIZE_FIRST]
    assert not missing, f"ops with neither an interval rule nor a place in LINEARIZE_FIRST: {missing}"
    assert not set(INTERVAL_RULES) & LINEARIZE_FIRST
    from linearize.ir.ops import SELECTIONS
    assert LINEARIZE_FIRST == SELECTIONS  # the op table's data-dependent ops, and only those


def _selecting(op: Op) -> L.Program:
    N, C = L.sizes("N C")
    X, key = tensor("X", N, C), tensor("key", N)
    out = {Op.ARGSORT: L.argsort(key), Op.SORT_BY_KEY: L.sort_by_key(X, key), Op.TOPK: L.topk(key, 2),
           Op.GATHER: L.gather(X, L.topk(key, 2)) * 1.0, Op.COMPLEMENT: L.complement(L.topk(key, 2), N),
           Op.KTH: L.kth_largest(X, key, 1), Op.RANK: L.rank_of(key),
           Op.ARGMAX: L.argmax(X, axis=1) * 1.0,
           Op.SCATTER_ADD: L.scatter_add(X, L.stack_over(L.index("m", 2), L.index("m", 2)), X[0:2])}[op]
    return L.program(op.name.lower(), [X, key], out)


@pytest.mark.parametrize("op", sorted(LINEARIZE_FIRST, key=lambda o: o.name), ids=lambda o: o.name.lower())
def test_a_data_dependent_op_is_refused_by_name(op):
    from linearize.eval.backends import NUMPY
    from linearize.verify.intervals import IntervalEvaluation
    from linearize.verify.kernels import NUMPY_KERNELS
    prog = _selecting(op)
    X, key = np.zeros((1, 4, 2)), np.zeros((1, 4))
    env = L.compile(prog).prepare({"X": X, "key": key})[0]
    iv = IntervalEvaluation(NUMPY, NUMPY_KERNELS, env, {"X": X, "key": key}, {"X": X, "key": key}, X.dtype)
    with pytest.raises(L.IRError, match=rf"bounds: {op.name.lower()} .*selects by data.*linearize the program first"):
        iv.box(prog.output)


# --- soundness ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", ["evit", "topk"])
@given(drawn=boxes())
def test_every_output_of_every_point_lies_within_the_bounds(name, backend, drawn):
    lower, upper, k, seed = drawn
    b = run_bounds(name, lower, upper, k, backend)
    for p in points(lower, upper, seed):
        for out in outputs(name, p, k):
            assert_within(b, out, f"{name} k={k}")


@pytest.mark.parametrize("name", ["evit", "topk"])
@given(drawn=boxes())
def test_stable_ties_bound_the_stable_output(name, drawn):
    lower, upper, k, seed = drawn
    b = run_bounds(name, lower, upper, k, ties="stable")
    for p in points(lower, upper, seed):
        assert_within(b, outputs(name, p, k, stable_only=True)[0], f"{name} k={k} stable")


@pytest.mark.parametrize("name", ["evit", "topk"])
@given(drawn=boxes())
def test_naive_propagation_is_sound_and_never_tighter(name, drawn):
    lower, upper, k, seed = drawn
    naive = run_bounds(name, lower, upper, k, naive=True, ties="stable")
    tight = run_bounds(name, lower, upper, k, ties="stable")
    for p in points(lower, upper, seed, count=2):
        assert_within(naive, outputs(name, p, k, stable_only=True)[0], f"{name} naive")
    slack = TOL * (1 + np.abs(tight.lower) + np.abs(tight.upper))
    assert (naive.lower <= tight.lower + slack).all() and (tight.upper <= naive.upper + slack).all()


# --- degenerate boxes ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", ["evit", "topk"])
@given(drawn=boxes(widths=(0,)))
def test_a_degenerate_box_gives_the_output(name, backend, drawn):
    lower, upper, k, _ = drawn
    want = outputs(name, lower, k, stable_only=True)[0]
    b = run_bounds(name, lower, upper, k, backend, ties="stable")
    np.testing.assert_allclose(b.lower, want, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(b.upper, want, rtol=TOL, atol=TOL)
    # every tie order: the bounds are the elementwise hull of the outputs, no wider
    outs = np.stack(outputs(name, lower, k))
    b = run_bounds(name, lower, upper, k, backend)
    np.testing.assert_allclose(b.lower, outs.min(0), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(b.upper, outs.max(0), rtol=TOL, atol=TOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_degenerate_box_in_float32_equals_the_compiled_form(dtype):
    rng = np.random.default_rng(3)
    x, attn = rng.random((3, 17, 8)).astype(dtype), rng.random((3, 4, 17, 17)).astype(dtype)
    want = L.compile(linearized("evit"))(x=x, attn=attn, k=11)
    b = L.bounds(L.programs.get("evit"), {"x": x, "attn": attn}, {"x": x.copy(), "attn": attn.copy()}, k=11)
    assert b.lower.dtype == dtype and b.upper.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(b.lower, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(b.upper, want, rtol=tol, atol=tol)
    assert (b.status == KEPT).sum() == 3 * 11 and (b.status == DROPPED).sum() == 3 * 5


# --- the tight rules, one by one ----------------------------------------------------------------------------------
def rank_program(descending: bool = True) -> L.Program:
    N = L.size("N")
    key = tensor("key", N)
    return L.linearize(L.program("ranks", [key], rank_of(key, descending=descending))).result


@pytest.mark.parametrize("descending", [True, False])
@given(n=st.integers(1, 6), seed=st.integers(0, 2**32 - 1), values=st.sampled_from([2, 4, 64]))
def test_rank_intervals_hold_every_tie_order_and_the_stable_rank(descending, n, seed, values):
    rng = np.random.default_rng(seed)
    centre = rng.integers(0, values, (2, n)) / values
    lo, hi = centre - rng.choice([0, 1, 2], centre.shape) / 64, centre + rng.choice([0, 1, 2], centre.shape) / 64
    prog = rank_program(descending)
    any_order = L.bounds(prog, {"key": lo}, {"key": hi})
    stable = L.bounds(prog, {"key": lo}, {"key": hi}, ties="stable")
    np.testing.assert_array_equal(any_order.lower, any_order.rank_lower)  # the output is the rank itself
    for p in points({"key": lo}, {"key": hi}, seed):
        key = p["key"]
        for b in range(2):
            s = key[b] if descending else -key[b]
            for order in tie_orders(s):
                rank = np.empty(n, np.int64)
                rank[order] = np.arange(n)
                assert (any_order.rank_lower[b] <= rank).all() and (rank <= any_order.rank_upper[b]).all()
            rank = np.empty(n, np.int64)
            rank[np.argsort(-s, kind="stable")] = np.arange(n)
            assert (stable.rank_lower[b] <= rank).all() and (rank <= stable.rank_upper[b]).all()
    assert (any_order.rank_lower <= stable.rank_lower).all() and (stable.rank_upper <= any_order.rank_upper).all()


@given(drawn=boxes())
def test_a_selected_row_is_the_hull_of_its_candidates(drawn):
    """topk's rank-r row: within the bounds for every point and tie order, and the bounds are exactly the hull of
    the x rows of the tokens whose rank interval holds r (computed here by a loop)."""
    lower, upper, k, seed = drawn
    b = run_bounds("topk", lower, upper, k)
    for p in points(lower, upper, seed):
        for out in outputs("topk", p, k):
            assert_within(b, out, "topk rows")
    n = lower["x"].shape[1] - 1
    if k == n:
        return
    for bi, r in itertools.product(range(lower["x"].shape[0]), range(k)):
        cand = [i for i in range(n) if b.rank_lower[bi, i] <= r <= b.rank_upper[bi, i]]
        assert cand, "every rank has a token"
        np.testing.assert_array_equal(b.lower[bi, 1 + r], lower["x"][bi, 1 + np.array(cand)].min(0))
        np.testing.assert_array_equal(b.upper[bi, 1 + r], upper["x"][bi, 1 + np.array(cand)].max(0))


@given(drawn=boxes())
def test_the_fused_token_adds_exactly_n_minus_k_tokens(drawn):
    """EViT's fused token: within the bounds for every point and tie order, and the bounds equal the extremes,
    channel by channel, over every set of N - k tokens holding each certainly dropped token and no certainly kept
    one (enumerated here), of the sum of the products' bounds."""
    lower, upper, k, seed = drawn
    n = lower["x"].shape[1] - 1
    if k == n:
        return
    b = run_bounds("evit", lower, upper, k)
    for p in points(lower, upper, seed):
        for out in outputs("evit", p, k):
            assert_within(b, out, "evit")
    s_lo, s_hi = scores_of(lower["attn"]), scores_of(upper["attn"])
    for bi in range(lower["x"].shape[0]):
        xl, xh = lower["x"][bi, 1:], upper["x"][bi, 1:]
        corners = np.stack([s_lo[bi, :, None] * xl, s_lo[bi, :, None] * xh, s_hi[bi, :, None] * xl,
                            s_hi[bi, :, None] * xh])
        p_lo, p_hi = corners.min(0), corners.max(0)
        sets = [S for S in itertools.combinations(range(n), n - k)
                if all(i in S for i in range(n) if b.rank_lower[bi, i] >= k)
                and not any(b.rank_upper[bi, i] < k for i in S)]
        assert sets
        np.testing.assert_allclose(b.lower[bi, -1], np.min([p_lo[list(S)].sum(0) for S in sets], 0), rtol=TOL,
                                   atol=TOL)
        np.testing.assert_allclose(b.upper[bi, -1], np.max([p_hi[list(S)].sum(0) for S in sets], 0), rtol=TOL,
                                   atol=TOL)


def test_statuses_follow_the_rank_intervals():
    rng = np.random.default_rng(0)
    x, attn = rng.random((2, 9, 3)), rng.random((2, 2, 9, 9))
    b = L.bounds(L.programs.get("evit"), {"attn": attn - 0.05}, {"attn": attn + 0.05}, x=x, k=4)
    status = b.status
    assert b.k == 4 and status.shape == (2, 8)
    np.testing.assert_array_equal(status == KEPT, b.rank_upper < 4)
    np.testing.assert_array_equal(status == DROPPED, b.rank_lower >= 4)
    assert (status == UNDECIDED).any()  # this box leaves some tokens undecided
    s = b.summary()
    assert s["kept"] + s["dropped"] + s["undecided"] == 16 and s["mean_width"] > 0


# --- programs the structural rules do not recognize -----------------------------------------------------------------
@given(drawn=boxes(max_n=5))
def test_the_shared_pipeline_falls_back_to_plain_intervals_soundly(drawn):
    lower, upper, k, seed = drawn
    shared = L.linearize(L.programs.get("evit"), L.rewrite.SHARED_PIPELINE).result
    b = np_bounds(L.bounds(shared, lower, upper, k=k, ties="stable"))
    for p in points(lower, upper, seed, count=2):
        assert_within(b, outputs("evit", p, k, stable_only=True)[0], "shared pipeline")


# --- the per-op interval rules ------------------------------------------------------------------------------------
def _elementwise(op):
    N = L.size("N")
    a, b = tensor("a", N), tensor("b", N)
    out = {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b, "neg": -a, "heaviside": L.heaviside(a - b),
           "delta": L.delta(a - b), "mean": L.mean(L.cat(a[None], b[None]), axis=0),
           "amax": L.amax(L.cat(a[None], b[None]), axis=0), "exp": L.exp(a - b)}[op]
    return L.program(op, [a, b], out)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "neg", "heaviside", "delta", "mean", "amax", "exp"])
@given(seed=st.integers(0, 2**32 - 1), nonneg=st.sampled_from(["", "a", "b", "ab"]))
def test_each_op_rule_holds_at_sampled_points(op, seed, nonneg):
    rng = np.random.default_rng(seed)
    lo = {n: rng.integers(0 if n in nonneg else -4, 5, (3, 5)) / 4 for n in "ab"}  # a product of a box >= 0 is
    hi = {n: lo[n] + rng.integers(0, 3, (3, 5)) / 4 for n in "ab"}  # taken by a rule of its own
    prog = _elementwise(op)
    b = L.bounds(prog, lo, hi)
    f = L.compile(prog)
    for p in points(lo, hi, seed):
        if op == "div" and (p["b"] == 0).any():
            continue
        out = f(**p)
        assert_within(b, out, op)


def test_a_step_of_an_interval_is_decided_when_it_excludes_zero_or_is_zero():
    prog_h, prog_d = _elementwise("heaviside"), _elementwise("delta")
    a_lo, a_hi = np.array([[1.0, 0.0, -1.0, 0.0, 0.5]]), np.array([[2.0, 0.0, -0.5, 1.0, 0.5]])
    zero = np.zeros((1, 5))
    h, d = L.bounds(prog_h, {"a": a_lo}, {"a": a_hi}, b=zero), L.bounds(prog_d, {"a": a_lo}, {"a": a_hi}, b=zero)
    np.testing.assert_array_equal(h.lower, [[1, 0, 0, 0, 1]])
    np.testing.assert_array_equal(h.upper, [[1, 0, 0, 1, 1]])
    np.testing.assert_array_equal(d.lower, [[0, 1, 0, 0, 0]])
    np.testing.assert_array_equal(d.upper, [[0, 1, 0, 1, 0]])


def test_division_by_an_interval_holding_zero_is_unbounded():
    prog = _elementwise("div")
    b = L.bounds(prog, {"b": np.array([[-1.0, 1.0]])}, {"b": np.array([[1.0, 2.0]])}, a=np.array([[1.0, 1.0]]))
    assert b.lower[0, 0] == -np.inf and b.upper[0, 0] == np.inf
    np.testing.assert_array_equal([b.lower[0, 1], b.upper[0, 1]], [0.5, 1.0])


# --- bad input ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(lower={"x": np.ones((1, 3, 2))}, upper={}), "has a lower bound but no upper bound"),
    (dict(lower={"x": np.ones((1, 3, 2))}, upper={"x": np.zeros((1, 3, 2))}), "lower bound of x exceeds"),
    (dict(lower={"y": np.ones((1, 3, 2))}, upper={"y": np.ones((1, 3, 2))}), "no input 'y'"),
    (dict(lower={"x": np.ones((1, 3, 2))}, upper={"x": np.ones((1, 4, 2))}), "shapes disagree|different shapes"),
    (dict(lower={"x": np.full((1, 3, 2), np.nan)}, upper={"x": np.ones((1, 3, 2))}), "NaN"),
    (dict(ties="some"), "ties must be one of"),
])
def test_bad_boxes_are_input_errors(kwargs, message):
    args = {"x": np.ones((1, 3, 2)), "attn": np.ones((1, 1, 3, 3)), "k": 1}
    for name in kwargs.get("lower", {}):
        args.pop(name, None)
    with pytest.raises(L.InputError, match=message):
        L.bounds(L.programs.get("evit"), **kwargs, **args)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 12), first=st.integers(0, 3), count=st.integers(1, 12))
def test_both_ways_to_the_covering_hull_agree_with_a_loop(backend, seed, n, first, count):
    """The hull of the rows covering each rank, directly (one pair per covered rank) and through a segment tree,
    against a loop over ranks and rows."""
    from linearize.eval.backends import get_backend
    from linearize.verify.hull import covering_hull
    from linearize.verify.kernels import get_kernels
    rng = np.random.default_rng(seed)
    B, F = 2, 3
    a = rng.integers(0, n, (B, n))
    c = np.minimum(a + rng.integers(0, n, (B, n)) * (rng.random((B, n)) < 0.5), n - 1)
    lo = rng.integers(-8, 8, (B * n, F)).astype(np.float64)
    hi = lo + rng.integers(0, 4, lo.shape)
    want_lo, want_hi = np.zeros((B, count, F)), np.zeros((B, count, F))
    for b, r in itertools.product(range(B), range(count)):
        rows = [b * n + i for i in range(n) if a[b, i] <= first + r <= c[b, i]]
        if rows:
            want_lo[b, r], want_hi[b, r] = lo[rows].min(0), hi[rows].max(0)
    conv = (lambda v: torch.as_tensor(v)) if backend == "torch" else (lambda v: v)
    for method in ("direct", "tree"):
        got = covering_hull(get_backend(backend), get_kernels(backend), conv(lo), conv(hi), conv(a), conv(c), first,
                            count, method)
        np.testing.assert_array_equal(np.asarray(got[0]), want_lo, err_msg=method)
        np.testing.assert_array_equal(np.asarray(got[1]), want_hi, err_msg=method)


def test_every_bound_rule_is_documented_with_its_math():
    from pathlib import Path

    from linearize.verify.selection import STRUCTURAL_RULES
    text = (Path(__file__).resolve().parent.parent / "docs" / "rules.md").read_text()
    bounds_section = text[text.index("## Bounds"):]
    for rule in STRUCTURAL_RULES:
        assert f"### {rule.name}\n`{rule.math}`" in bounds_section, rule.name


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("B, C", [(0, 4), (2, 0), (0, 0)])
def test_an_empty_batch_or_no_channels_gives_empty_bounds(backend, B, C):
    x, attn = np.ones((B, 9, C)), np.ones((B, 3, 9, 9))
    want = L.compile(linearized("evit"))(x=x, attn=attn, k=5)
    b = run_bounds("evit", {"x": x - 0.1, "attn": attn - 0.1}, {"x": x + 0.1, "attn": attn + 0.1}, 5, backend)
    assert b.lower.shape == b.upper.shape == want.shape and b.rank_lower.shape == (B, 8)
    assert b.summary()["mean_width"] == 0.0


SIZES = {"N": 6, "C": 3, "H": 2, "D": 2}


def _signature_inputs(prog: L.Program, rng: np.random.Generator, batch: int = 2) -> dict:
    env = {s.name: v for s, v in ((s, SIZES[s.name]) for n in prog.inputs for d in n.arg[1] for s in d.syms)}
    return {n.arg[0]: rng.integers(1, 9, (batch, *(d.value({s: env[s.name] for s in d.syms}) for d in n.arg[1])))
            / 8 for n in prog.inputs}  # positive: POMT requires attn > 0


@pytest.mark.parametrize("name", L.programs.names())
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 6))
def test_every_built_in_program_is_bounded_soundly(name, seed, size):
    """Any linearized program: its stable output at points of the box (the compiled linearized form) lies within
    the bounds, whether or not the structural rules recognize its parts."""
    prog = L.programs.get(name)
    if isinstance(prog.output, tuple):  # ToMe's (x, size): bounds takes one output, and says so
        with pytest.raises(L.InputError, match="has 2 outputs; bounds takes a program with one"):
            L.bounds(prog, {}, {})
        return
    lin = linearized(name)
    given = prog.given_sizes[0]
    rng = np.random.default_rng(seed)
    centre = _signature_inputs(prog, rng)
    lower = {n: a - rng.integers(0, 2, a.shape) / 16 for n, a in centre.items()}
    upper = {n: a + rng.integers(0, 2, a.shape) / 16 for n, a in centre.items()}
    value = min(size, SIZES["N"] - (given == "r"))
    f = L.compile(lin)
    try:
        f(**centre, **{given: value})
    except L.InputError as e:  # the hand derivation indexes past the scores at k == N: both refuse alike
        with pytest.raises(L.InputError, match=re.escape(str(e).split(",")[0])):
            L.bounds(prog, lower, upper, ties="stable", **{given: value})
        return
    b = L.bounds(prog, lower, upper, ties="stable", **{given: value})
    for p in points(lower, upper, seed, count=3):
        assert_within(b, f(**p, **{given: value}), name)
