"""Tests of linearize.reference against an independent per-example plain-Python/numpy oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from linearize.reference import (
    REFERENCES,
    complement_idx,
    evit,
    evit_stable,
    keep_rate_to_k,
    topk,
    topk_stable,
)

TOL = {torch.float32: {"rtol": 1e-5, "atol": 1e-6}, torch.float64: {"rtol": 1e-12, "atol": 1e-12}}
DTYPES = [torch.float32, torch.float64]
ALL_FNS = [evit, topk, evit_stable, topk_stable]

# (B, H, N, C, k): includes N+1 = 2, k = 1, k = N, B > 1, H > 1, and an EViT-sized case.
SIZES = [
    (1, 1, 1, 1, 1),
    (1, 1, 2, 1, 1),
    (1, 1, 2, 3, 2),
    (2, 1, 3, 2, 1),
    (1, 3, 4, 2, 2),
    (2, 3, 5, 4, 1),
    (2, 3, 5, 4, 4),
    (2, 3, 5, 4, 5),
    (3, 2, 16, 8, 7),
    (4, 4, 49, 16, 35),
    (2, 12, 196, 8, 138),
]
SIZE_IDS = [f"B{b}H{h}N{n}C{c}k{k}" for b, h, n, c, k in SIZES]


# ----------------------------------------------------------------------------------------------- oracle


def oracle(x: np.ndarray, attn: np.ndarray, k: int, extra: bool) -> np.ndarray:
    """Per-example transcription: head-mean CLS row, stable descending rank, keep k, fuse the rest (weighted sum)."""
    b_size, n1, c = x.shape
    n = n1 - 1
    if k == n:
        return x.copy()
    outs = []
    for b in range(b_size):
        heads = attn.shape[1]
        score = [sum(attn[b, h, 0, 1 + i] for h in range(heads)) / heads for i in range(n)]
        order = sorted(range(n), key=lambda i: -score[i])
        rows = [x[b, 0]] + [x[b, 1 + i] for i in order[:k]]
        if extra:
            fused = np.zeros(c, dtype=x.dtype)
            for i in order[k:]:
                fused = fused + score[i] * x[b, 1 + i]
            rows.append(fused)
        outs.append(np.stack(rows))
    return np.stack(outs)


def oracle_scores(attn: np.ndarray) -> np.ndarray:
    """Head-mean CLS-row scores, per example, by explicit loops: [B, N]."""
    b_size, heads, n1, _ = attn.shape
    return np.array([[sum(attn[b, h, 0, 1 + i] for h in range(heads)) / heads for i in range(n1 - 1)]
                     for b in range(b_size)])


def check_close(out: torch.Tensor, expected: np.ndarray, dtype: torch.dtype) -> None:
    assert out.dtype == dtype
    assert tuple(out.shape) == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, **TOL[dtype])


# ----------------------------------------------------------------------------------------------- inputs


def continuous(b: int, h: int, n: int, c: int, dtype: torch.dtype, seed: int,
               softmax: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(b, n + 1, c, generator=gen, dtype=dtype) * 2 - 1
    attn = torch.rand(b, h, n + 1, n + 1, generator=gen, dtype=dtype)
    if softmax:
        attn = torch.softmax(attn * 4, dim=-1)
    return x, attn


def tied(b: int, h: int, n: int, c: int, dtype: torch.dtype, seed: int,
         all_equal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(b, n + 1, c, generator=gen, dtype=dtype) * 2 - 1
    if all_equal:
        attn = torch.full((b, h, n + 1, n + 1), 0.25, dtype=dtype)
    else:
        attn = torch.randint(0, 3, (b, h, n + 1, n + 1), generator=gen).to(dtype) / 2  # values in {0, 0.5, 1}
    return x, attn


# ----------------------------------------------------------------------------------------------- official vs oracle


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("b", "h", "n", "c", "k"), SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize(("fn", "extra"), [(evit, True), (topk, False)], ids=["evit", "topk"])
def test_official_matches_oracle_continuous(fn, extra, b, h, n, c, k, seed, dtype):
    x, attn = continuous(b, h, n, c, dtype, seed, softmax=seed == 2)
    out = fn(x, attn, k)
    check_close(out, oracle(x.numpy(), attn.numpy(), k, extra), dtype)
    expected_rows = n + 1 if k == n else k + 1 + extra
    assert out.shape == (b, expected_rows, c)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("b", "h", "n", "c", "k"), SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("name", ["evit", "topk"])
def test_official_equals_stable_continuous(name, b, h, n, c, k, seed, dtype):
    x, attn = continuous(b, h, n, c, dtype, seed)
    official, stable = REFERENCES[name]["official"], REFERENCES[name]["stable"]
    # Same selection; the fused token may differ in the last bits (summation order: index vs score order).
    torch.testing.assert_close(official(x, attn, k), stable(x, attn, k), **TOL[dtype])


@pytest.mark.parametrize("fn", ALL_FNS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(("b", "h", "n", "c"), [(1, 1, 1, 1), (2, 3, 5, 4), (3, 2, 9, 1)])
def test_k_equals_n_returns_x_unchanged(fn, b, h, n, c):
    x, attn = continuous(b, h, n, c, torch.float32, seed=7)
    out = fn(x, attn, n)
    assert out.shape == x.shape
    assert torch.equal(out, x)


def test_evit_extra_token_is_weighted_sum_not_mean():
    # N=3, k=1, scores (0.5, 0.3, 0.2): token 1 kept, fused = 0.3 * x2 + 0.2 * x3 (weights are not renormalized).
    x = torch.tensor([[[9.0], [1.0], [10.0], [100.0]]], dtype=torch.float64)
    attn = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    attn[0, 0, 0, 1:] = torch.tensor([0.4, 0.4, 0.2], dtype=torch.float64)
    attn[0, 1, 0, 1:] = torch.tensor([0.6, 0.2, 0.2], dtype=torch.float64)
    out = evit(x, attn, 1)
    torch.testing.assert_close(out, torch.tensor([[[9.0], [1.0], [0.3 * 10 + 0.2 * 100]]], dtype=torch.float64))
    torch.testing.assert_close(topk(x, attn, 2), torch.tensor([[[9.0], [1.0], [10.0]]], dtype=torch.float64))


# ----------------------------------------------------------------------------------------------- ties


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("all_equal", [False, True], ids=["012", "equal"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("b", "h", "n", "c", "k"), SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize(("fn", "extra"), [(evit_stable, True), (topk_stable, False)], ids=["evit", "topk"])
def test_stable_matches_oracle_tied(fn, extra, b, h, n, c, k, seed, all_equal, dtype):
    x, attn = tied(b, h, n, c, dtype, seed, all_equal)
    check_close(fn(x, attn, k), oracle(x.numpy(), attn.numpy(), k, extra), dtype)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(("b", "h", "n", "k"), [(2, 3, 6, 2), (3, 1, 10, 4), (1, 2, 12, 1), (2, 2, 7, 6)])
def test_official_tied_selects_a_valid_top_k(b, h, n, k, seed):
    """With ties, torch.topk's order is arbitrary, but the kept scores and the fused total are determined.

    x[:, 1:] is the identity, so each output row reveals which tokens it came from.
    """
    _, attn = tied(b, h, n, 1, torch.float64, seed)
    x = torch.cat([torch.zeros(b, 1, n, dtype=torch.float64), torch.eye(n, dtype=torch.float64).expand(b, n, n)], 1)
    scores = oracle_scores(attn.numpy())
    out_topk, out_evit = topk(x, attn, k).numpy(), evit(x, attn, k).numpy()
    assert np.array_equal(out_topk, out_evit[:, :-1])
    for bi in range(b):
        kept = [int(np.argmax(row)) for row in out_topk[bi, 1:]]
        assert len(set(kept)) == k
        assert [scores[bi][i] for i in kept] == sorted(scores[bi], reverse=True)[:k]
        dropped = [i for i in range(n) if i not in kept]
        fused = np.zeros(n)
        fused[dropped] = scores[bi][dropped]
        np.testing.assert_allclose(out_evit[bi, -1], fused, rtol=1e-12, atol=1e-12)


@st.composite
def tied_case(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int]:
    b = draw(st.integers(1, 3))
    n = draw(st.integers(1, 8))
    c = draw(st.integers(1, 4))
    h = draw(st.integers(1, 3))
    k = draw(st.integers(1, n))
    dtype = draw(st.sampled_from(DTYPES))
    levels = draw(st.sampled_from([(0.0, 0.5, 1.0), (0.5,), (0.0, 1.0)]))
    attn_vals = draw(st.lists(st.sampled_from(levels), min_size=b * h * (n + 1) ** 2, max_size=b * h * (n + 1) ** 2))
    x_vals = draw(st.lists(st.floats(-4, 4, allow_nan=False, width=32), min_size=b * (n + 1) * c,
                           max_size=b * (n + 1) * c))
    attn = torch.tensor(attn_vals, dtype=dtype).reshape(b, h, n + 1, n + 1)
    x = torch.tensor(x_vals, dtype=dtype).reshape(b, n + 1, c)
    return x, attn, k


@settings(deadline=None)
@given(tied_case())
def test_property_stable_matches_oracle(case):
    x, attn, k = case
    for fn, extra in [(evit_stable, True), (topk_stable, False)]:
        check_close(fn(x, attn, k), oracle(x.numpy(), attn.numpy(), k, extra), x.dtype)


# ----------------------------------------------------------------------------------------------- complement_idx


def expected_complement(idx: torch.Tensor, dim: int) -> list:
    rows = idx.reshape(-1, idx.shape[-1]).tolist()
    flat = [sorted(set(range(dim)) - set(row)) for row in rows]
    return torch.tensor(flat, dtype=torch.long).reshape(*idx.shape[:-1], dim - idx.shape[-1]).tolist()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("lead", "dim", "n_idx"), [((3,), 5, 2), ((2,), 1, 1), ((4,), 6, 6), ((1,), 9, 1),
                                                   ((2, 3), 7, 3), ((5,), 196, 137), ((), 6, 2)])
def test_complement_idx_random(lead, dim, n_idx, seed):
    gen = torch.Generator().manual_seed(seed)
    count = math.prod(lead)
    idx = torch.stack([torch.randperm(dim, generator=gen)[:n_idx] for _ in range(count)]).reshape(*lead, n_idx)
    out = complement_idx(idx, dim)
    assert out.shape == (*lead, dim - n_idx)
    assert out.dtype == torch.long
    assert out.tolist() == expected_complement(idx, dim)


@pytest.mark.parametrize(("idx", "dim", "expected"), [
    ([[0, 3]], 5, [[1, 2, 4]]),
    ([[3, 0]], 5, [[1, 2, 4]]),
    ([[4, 2]], 5, [[0, 1, 3]]),
    ([[0]], 2, [[1]]),
    ([[1]], 2, [[0]]),
    ([[0], [2]], 3, [[1, 2], [0, 1]]),
    ([[2, 1, 0]], 3, [[]]),
])
def test_complement_idx_cases(idx, dim, expected):
    assert complement_idx(torch.tensor(idx), dim).tolist() == expected


# ----------------------------------------------------------------------------------------------- dtype, API


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("fn", ALL_FNS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("k", [1, 3, 4])
def test_output_dtype(fn, k, dtype):
    x, attn = continuous(2, 2, 4, 3, dtype, seed=0)
    assert fn(x, attn, k).dtype == dtype


def test_references_table():
    assert REFERENCES == {"evit": {"official": evit, "stable": evit_stable},
                          "topk": {"official": topk, "stable": topk_stable}}


@pytest.mark.parametrize(("keep_rate", "n", "k"), [(0.7, 196, 138), (0.5, 196, 98), (1.0, 196, 196), (0.01, 5, 1),
                                                   (0.5, 1, 1), (0.5, 3, 2), (0.25, 8, 2)])
def test_keep_rate_to_k(keep_rate, n, k):
    out = keep_rate_to_k(keep_rate, n)
    assert out == k
    assert type(out) is int


def test_keep_rate_to_k_float_rounding_is_official():
    # ceil(keep_rate * n) in floating point, as the official code does: 0.07 * 100 == 7.000000000000001 -> 8.
    assert keep_rate_to_k(0.07, 100) == 8


@pytest.mark.parametrize("keep_rate", [0.0, -0.1, 1.5, float("nan")])
def test_keep_rate_to_k_rejects(keep_rate):
    with pytest.raises(ValueError, match="keep rate must be in"):
        keep_rate_to_k(keep_rate, 10)


# ----------------------------------------------------------------------------------------------- validation


def _inputs(b=2, h=3, n=4, c=5, dtype=torch.float32):
    return torch.rand(b, n + 1, c, dtype=dtype), torch.rand(b, h, n + 1, n + 1, dtype=dtype)


def _bad_cases():
    x, attn = _inputs()
    nan_attn = attn.clone()
    nan_attn[1, 2, 0, 3] = float("nan")
    inf_attn = attn.clone()
    inf_attn[0, 0, 4, 4] = float("inf")
    return [
        ("x_rank", x[0], attn, 2, r"x must be 3-D"),
        ("x_rank4", x[None], attn, 2, r"x must be 3-D"),
        ("attn_rank", x, attn[:, 0], 2, r"attn must be 4-D"),
        ("batch", x[:1], attn, 2, r"batch mismatch: x has B=1, attn has B=2"),
        ("tokens", x[:, :4], attn, 2, r"token mismatch: x has N\+1=4, attn has N\+1=5"),
        ("square", x, attn[..., :4], 2, r"attn must be square"),
        ("k0", x, attn, 0, r"k must satisfy 1 <= k <= N \(N=4, got k=0\)"),
        ("k_neg", x, attn, -1, r"k must satisfy 1 <= k <= N \(N=4, got k=-1\)"),
        ("k_big", x, attn, 5, r"k must satisfy 1 <= k <= N \(N=4, got k=5\)"),
        ("k_float", x, attn, 2.0, r"k must be an int"),
        ("nan", x, nan_attn, 2, r"attn must be finite"),
        ("inf", x, inf_attn, 2, r"attn must be finite"),
        ("dtype_mix", x.double(), attn, 2, r"must share one floating dtype"),
        ("int_dtype", (x * 10).long(), (attn * 10).long(), 2, r"must share one floating dtype"),
    ]


@pytest.mark.parametrize("fn", ALL_FNS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", _bad_cases(), ids=lambda case: case[0])
def test_value_errors(fn, case):
    _, x, attn, k, match = case
    with pytest.raises(ValueError, match=match):
        fn(x, attn, k)
