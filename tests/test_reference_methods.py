"""Tests of the ToMe, POMT and DynamicViT references against transcriptions of their official code.

Two kinds of oracle, neither calling the code under test:

* ``official_*``: the official functions transcribed as literally as possible (the file, function and lines are
  named above each). The ``official`` references must reproduce them on random continuous inputs (bit for bit:
  they use the same torch calls), and on tied inputs too where they make the same calls.
* ``*_oracle``: an independent per-example plain-Python transcription of the semantics with a stable tie-break
  (``sorted`` is stable), for the ``stable`` references on inputs with forced ties (values drawn from small sets).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from linearize.reference import (
    DYNAMICVIT_REFERENCES,
    POMT_REFERENCES,
    TOME_REFERENCES,
    dynamicvit,
    dynamicvit_keep,
    dynamicvit_ordered,
    dynamicvit_ordered_stable,
    dynamicvit_stable,
    pomt,
    pomt_metric,
    pomt_per_image,
    pomt_stable,
    tome,
    tome_r,
    tome_stable,
)

# torch's CPU sort without stable=True keeps tied values in index order for up to 16 values and reorders them
# beyond (torch 2.x): the tied tests include sizes with more than 16 values to sort, where only the stable
# references match the stable oracles.
TOL = {torch.float32: {"rtol": 1e-5, "atol": 1e-5}, torch.float64: {"rtol": 1e-12, "atol": 1e-12}}
DTYPES = [torch.float32, torch.float64]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_same(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Bit-for-bit equality, with shape and dtype."""
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    assert torch.equal(got, expected), (got - expected).abs().max()


def assert_near(got: torch.Tensor, expected: np.ndarray) -> None:
    assert tuple(got.shape) == expected.shape
    np.testing.assert_allclose(got.numpy(), expected, **TOL[got.dtype])


def one_line_value_error(fn: Callable, args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        fn(*args)
    assert "\n" not in str(info.value)


# ================================================================================================================
# ToMe
# ================================================================================================================

# ---------------------------------------------------------------------------------------------- transcription
# facebookresearch/ToMe, tome/merge.py: `do_nothing`, `bipartite_soft_matching` (its body up to `return merge,
# unmerge`, without `unmerge`, which merge_wavg does not use) and `merge_wavg`, verbatim but for the comments.


def do_nothing(x, mode=None):
    return x


def bipartite_soft_matching(metric, r, class_token=False, distill_token=False):
    protected = 0
    if class_token:
        protected += 1
    if distill_token:
        protected += 1

    # We can only reduce by a maximum of 50% tokens
    t = metric.shape[1]
    r = min(r, (t - protected) // 2)

    if r <= 0:
        return do_nothing, do_nothing

    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        a, b = metric[..., ::2, :], metric[..., 1::2, :]
        scores = a @ b.transpose(-1, -2)

        if class_token:
            scores[..., 0, :] = -math.inf
        if distill_token:
            scores[..., :, 0] = -math.inf

        node_max, node_idx = scores.max(dim=-1)
        edge_idx = node_max.argsort(dim=-1, descending=True)[..., None]

        unm_idx = edge_idx[..., r:, :]  # Unmerged Tokens
        src_idx = edge_idx[..., :r, :]  # Merged Tokens
        dst_idx = node_idx[..., None].gather(dim=-2, index=src_idx)

        if class_token:
            # Sort to ensure the class token is at the start
            unm_idx = unm_idx.sort(dim=1)[0]

    def merge(x, mode="mean"):
        src, dst = x[..., ::2, :], x[..., 1::2, :]
        n, t1, c = src.shape
        unm = src.gather(dim=-2, index=unm_idx.expand(n, t1 - r, c))
        src = src.gather(dim=-2, index=src_idx.expand(n, r, c))
        dst = dst.scatter_reduce(-2, dst_idx.expand(n, r, c), src, reduce=mode)

        if distill_token:
            return torch.cat([unm[:, :1], dst[:, :1], unm[:, 1:], dst[:, 1:]], dim=1)
        else:
            return torch.cat([unm, dst], dim=1)

    return merge, None


def merge_wavg(merge, x, size=None):
    if size is None:
        size = torch.ones_like(x[..., 0, None])

    x = merge(x * size, mode="sum")
    size = merge(size, mode="sum")

    x = x / size
    return x, size


def official_tome_block(x, metric, size, r):
    """tome/patch/timm.py, ToMeBlock.forward, the lines between the attention and the MLP (class token, no
    distillation token: ``_tome_info["class_token"] = model.cls_token is not None``)."""
    if r > 0:
        # Apply ToMe here
        merge, _ = bipartite_soft_matching(metric, r, True, False)
        x, size = merge_wavg(merge, x, size)
    return x, size


# ---------------------------------------------------------------------------------------------- oracle


def tome_oracle(x: np.ndarray, metric: np.ndarray, size: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """One image, plain Python in float64: x [T, C], metric [T, c], size [T, 1] -> (x', size').

    Even rows (CLS first) each pick their most similar odd row (cosine similarity, first on ties); the r even
    non-CLS rows with the highest similarity merge into their pick (stable: lower even index first on ties); the
    output is the unmerged even rows in index order, then every odd row as the size-weighted mean of its group.
    """
    t = x.shape[0]
    if r == 0:  # the official block skips merging
        return x.astype(np.float64), size.astype(np.float64)
    r = min(r, (t - 1) // 2)
    if r == 0:  # merge_wavg(do_nothing, ...): (x * size) / size, within rounding of x
        return x.astype(np.float64), size.astype(np.float64)
    rows = [[float(v) for v in row] for row in metric]
    unit = [[v / math.sqrt(sum(w * w for w in row)) for v in row] for row in rows]
    evens, odds = list(range(0, t, 2)), list(range(1, t, 2))
    weight, pick = [-math.inf], [0]  # the CLS token never merges
    for e in evens[1:]:
        sims = [sum(p * q for p, q in zip(unit[e], unit[o])) for o in odds]
        best = max(sims)
        weight.append(best)
        pick.append(sims.index(best))
    order = sorted(range(len(evens)), key=lambda i: -weight[i])
    merged, unmerged = order[:r], sorted(order[r:])
    xs = [[float(v) for v in row] for row in x]
    ss = [float(s[0]) for s in size]
    out_x, out_s = [], []
    for i in unmerged:
        out_x.append(xs[evens[i]])
        out_s.append(ss[evens[i]])
    for j, o in enumerate(odds):
        group = [o] + [evens[i] for i in merged if pick[i] == j]
        total = sum(ss[m] for m in group)
        out_x.append([sum(xs[m][col] * ss[m] for m in group) / total for col in range(x.shape[1])])
        out_s.append(total)
    return np.array(out_x).reshape(len(out_x), x.shape[1]), np.array(out_s).reshape(-1, 1)


def tome_oracle_batch(x: torch.Tensor, metric: torch.Tensor, size: torch.Tensor,
                      r: int) -> tuple[np.ndarray, np.ndarray]:
    outs = [tome_oracle(x[b].numpy(), metric[b].numpy(), size[b].numpy(), r) for b in range(x.shape[0])]
    return np.stack([o[0] for o in outs]), np.stack([o[1] for o in outs])


# ---------------------------------------------------------------------------------------------- inputs


def tome_inputs(b: int, t: int, c: int, cm: int, dtype: torch.dtype, seed: int,
                size_kind: str = "ones") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = gen(seed)
    x = torch.randn(b, t, c, generator=g, dtype=dtype)
    metric = torch.randn(b, t, cm, generator=g, dtype=dtype)  # cm >= 2: continuous cosine similarities
    if size_kind == "ones":
        size = torch.ones(b, t, 1, dtype=dtype)
    elif size_kind == "int":
        size = torch.randint(1, 5, (b, t, 1), generator=g).to(dtype)
    else:
        size = torch.rand(b, t, 1, generator=g, dtype=dtype) * 3 + 0.25
    return x, metric, size


# (B, T, C, c, r): T = 1, 2 (r clipped to 0), T = 3 (the smallest merge), T even and odd, r at and above the
# clip (T - 1) // 2, B > 1, and a ViT-B/16-sized T = 197 (r = 16, and r = 98 the most ToMe removes).
TOME_SIZES = [
    (1, 1, 2, 2, 1),
    (2, 2, 3, 2, 1),
    (1, 3, 1, 2, 1),
    (2, 3, 2, 3, 5),
    (2, 4, 3, 2, 1),
    (3, 4, 2, 4, 2),
    (2, 5, 3, 2, 2),
    (2, 6, 2, 3, 2),
    (2, 6, 2, 3, 1),
    (3, 9, 4, 5, 3),
    (2, 16, 4, 4, 7),
    (2, 17, 4, 4, 8),
    (4, 50, 8, 8, 12),
    (2, 197, 8, 16, 16),
    (1, 197, 8, 16, 98),
]
TOME_IDS = [f"B{b}T{t}C{c}c{cm}r{r}" for b, t, c, cm, r in TOME_SIZES]


# ---------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("size_kind", ["ones", "int", "float"])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("b", "t", "c", "cm", "r"), TOME_SIZES, ids=TOME_IDS)
def test_tome_matches_official_continuous(b, t, c, cm, r, seed, size_kind, dtype):
    x, metric, size = tome_inputs(b, t, c, cm, dtype, seed, size_kind)
    ex, esize = official_tome_block(x, metric, size, r)
    kept = t - tome_r(r, t)
    for fn in (tome, tome_stable):  # no ties on continuous inputs: the stable sort gives the same order
        gx, gsize = fn(x, metric, size, r)
        assert_same(gx, ex)
        assert_same(gsize, esize)
        assert gx.shape == (b, kept, c) and gsize.shape == (b, kept, 1)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("size_kind", ["ones", "float"])
@pytest.mark.parametrize(("b", "t", "c", "cm", "r"), TOME_SIZES[:-2], ids=TOME_IDS[:-2])
def test_tome_matches_oracle_continuous(b, t, c, cm, r, size_kind, dtype):
    x, metric, size = tome_inputs(b, t, c, cm, dtype, 3, size_kind)
    ex, esize = tome_oracle_batch(x, metric, size, r)
    for fn in (tome, tome_stable):
        gx, gsize = fn(x, metric, size, r)
        assert_near(gx, ex)
        assert_near(gsize, esize)


def test_tome_first_layer_size_none_is_ones():
    # At the first layer the official size is None and merge_wavg starts from ones_like(x[..., 0, None]).
    x, metric, _ = tome_inputs(2, 9, 3, 4, torch.float32, 5)
    ex, esize = official_tome_block(x, metric, None, 3)
    gx, gsize = tome(x, metric, torch.ones(2, 9, 1), 3)
    assert_same(gx, ex)
    assert_same(gsize, esize)
    assert gsize.sum().item() == 2 * 9  # every original token is counted once


def test_tome_hand_example():
    # T = 5: even rows 0 (CLS), 2, 4; odd rows 1, 3. Row 2 points like row 1 (similarity 1), row 4 is at 0.8 of
    # row 3. r = 1 merges 2 into 1. The output is not in token order: unmerged even rows, then the odd rows.
    metric = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [1.0, 0.0], [0.8, 0.6]]], dtype=torch.float64)
    x = torch.tensor([[[0.0], [10.0], [20.0], [30.0], [40.0]]], dtype=torch.float64)
    size = torch.tensor([[[1.0], [1.0], [3.0], [2.0], [1.0]]], dtype=torch.float64)
    gx, gsize = tome(x, metric, size, 1)
    torch.testing.assert_close(gx, torch.tensor([[[0.0], [40.0], [(10 + 60) / 4], [30.0]]], dtype=torch.float64))
    torch.testing.assert_close(gsize, torch.tensor([[[1.0], [1.0], [4.0], [2.0]]], dtype=torch.float64))
    # r = 2 (the clip for T = 5): 4 merges into 3 as well.
    gx, gsize = tome(x, metric, size, 2)
    torch.testing.assert_close(gx, torch.tensor([[[0.0], [70 / 4], [(60 + 40) / 3]]], dtype=torch.float64))
    torch.testing.assert_close(gsize, torch.tensor([[[1.0], [4.0], [3.0]]], dtype=torch.float64))
    assert tome(x, metric, size, 7)[0].shape == (1, 3, 1)


@pytest.mark.parametrize(("r", "t", "expected"), [(0, 1, 0), (5, 1, 0), (1, 2, 0), (1, 3, 1), (2, 3, 1), (2, 4, 1),
                                                  (2, 5, 2), (3, 6, 2), (16, 197, 16), (200, 197, 98)])
def test_tome_r_clip(r, t, expected):
    assert tome_r(r, t) == expected
    assert (bipartite_soft_matching(torch.ones(1, t, 1), r, True)[0] is do_nothing) == (expected == 0)


@pytest.mark.parametrize("fn", [tome, tome_stable], ids=lambda f: f.__name__)
def test_tome_r_zero_returns_inputs(fn):
    x, metric, size = tome_inputs(2, 7, 3, 2, torch.float32, 0, "float")
    gx, gsize = fn(x, metric, size, 0)
    assert gx is x and gsize is size


@pytest.mark.parametrize("fn", [tome, tome_stable], ids=lambda f: f.__name__)
@pytest.mark.parametrize("t", [1, 2])
def test_tome_r_clipped_to_zero_goes_through_merge_wavg(fn, t):
    # r > 0 but (T - 1) // 2 == 0: the official block still calls merge_wavg(do_nothing, x, size).
    x = torch.full((2, t, 3), 0.1, dtype=torch.float64)
    metric = torch.ones(2, t, 2, dtype=torch.float64)
    size = torch.full((2, t, 1), 3.0, dtype=torch.float64)
    ex, esize = official_tome_block(x, metric, size, 1)
    gx, gsize = fn(x, metric, size, 1)
    assert_same(gx, ex)
    assert_same(gsize, esize)
    assert not torch.equal(gx, x)  # 0.1 * 3 / 3 == 0.10000000000000002: the round trip is not exact


# ---------------------------------------------------------------------------------------------- ties


@st.composite
def exact_vector(draw: st.DrawFn, cm: int) -> list[float]:
    """A vector whose L2 norm is exact (1 or 2): one or four entries of +-1, so cosine similarities are exact."""
    nnz = draw(st.sampled_from([1, 4] if cm >= 4 else [1]))
    positions = draw(st.permutations(range(cm)))[:nnz]
    vec = [0.0] * cm
    for p in positions:
        vec[p] = draw(st.sampled_from([-1.0, 1.0]))
    return vec


@st.composite
def tome_tied_case(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    b = draw(st.integers(1, 3))
    t = draw(st.one_of(st.integers(1, 12), st.integers(33, 60)))  # T >= 33: more than 16 edge weights to sort
    c = draw(st.integers(1, 3))
    cm = draw(st.sampled_from([1, 2, 4, 5]))
    dtype = draw(st.sampled_from(DTYPES))
    pool = draw(st.lists(exact_vector(cm), min_size=1, max_size=4))
    picks = draw(st.lists(st.tuples(st.integers(0, len(pool) - 1), st.sampled_from([0.5, 1.0, 2.0])),
                          min_size=b * t, max_size=b * t))
    metric = torch.tensor([[s * v for v in pool[i]] for i, s in picks], dtype=dtype).reshape(b, t, cm)
    x = torch.tensor(draw(st.lists(st.floats(-4, 4, width=32), min_size=b * t * c, max_size=b * t * c)),
                     dtype=dtype).reshape(b, t, c)
    size = torch.tensor(draw(st.lists(st.sampled_from([1.0, 2.0, 3.0]), min_size=b * t, max_size=b * t)),
                        dtype=dtype).reshape(b, t, 1)
    r = draw(st.integers(0, t))
    return x, metric, size, r


@given(tome_tied_case())
def test_property_tome_stable_matches_oracle_tied(case):
    x, metric, size, r = case
    ex, esize = tome_oracle_batch(x, metric, size, r)
    gx, gsize = tome_stable(x, metric, size, r)
    assert_near(gx, ex)
    assert_near(gsize, esize)


@given(tome_tied_case())
def test_property_tome_official_on_ties(case):
    """The official argsort orders tied edges arbitrarily, but the reference makes the official calls: same output.

    Whatever the order, each merged even row has one of the r largest weights, and sizes are conserved.
    """
    x, metric, size, r = case
    gx, gsize = tome(x, metric, size, r)
    ex, esize = official_tome_block(x, metric, size, r)
    assert_same(gx, ex)
    assert_same(gsize, esize)
    torch.testing.assert_close(gsize.sum(dim=1), size.sum(dim=1))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("b", "t", "cm", "r"), [(2, 50, 4, 12), (2, 197, 4, 16), (1, 197, 1, 60), (2, 197, 8, 98)])
def test_tome_stable_matches_oracle_tied_large(b, t, cm, r, seed, dtype):
    # Metric rows drawn from three exact vectors at three scales: many tied edge weights among ~100 even rows.
    g = gen(seed)
    pool = torch.zeros(3, cm, dtype=dtype)
    pool[0, 0] = 1.0
    pool[1, cm - 1] = -1.0
    pool[2, : min(cm, 4)] = 1.0 if cm >= 4 else -1.0
    metric = pool[torch.randint(0, 3, (b, t), generator=g)] * 2.0 ** torch.randint(-1, 2, (b, t, 1), generator=g)
    x = torch.randn(b, t, 3, generator=g, dtype=dtype)
    size = torch.randint(1, 4, (b, t, 1), generator=g).to(dtype)
    ex, esize = tome_oracle_batch(x, metric, size, r)
    gx, gsize = tome_stable(x, metric, size, r)
    assert_near(gx, ex)
    assert_near(gsize, esize)
    assert_same(tome(x, metric, size, r)[0], official_tome_block(x, metric, size, r)[0])


def test_tome_all_equal_metric():
    # Every similarity is exactly 1: the weights tie, the stable order merges the first r even non-CLS rows, all
    # into odd row 1 (the first maximal similarity).
    x = torch.arange(9, dtype=torch.float64).reshape(1, 9, 1)
    metric = torch.ones(1, 9, 1, dtype=torch.float64)
    gx, gsize = tome_stable(x, metric, torch.ones(1, 9, 1, dtype=torch.float64), 2)
    torch.testing.assert_close(gx[0, :, 0], torch.tensor([0.0, 6.0, 8.0, (1 + 2 + 4) / 3, 3.0, 5.0, 7.0],
                                                         dtype=torch.float64))
    assert gsize[0, :, 0].tolist() == [1.0, 1.0, 1.0, 3.0, 1.0, 1.0, 1.0]


# ---------------------------------------------------------------------------------------------- API, validation


def test_tome_references_table():
    assert TOME_REFERENCES == {"tome": {"official": tome, "stable": tome_stable}}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_tome_dtype_and_autograd(dtype):
    x, metric, size = tome_inputs(2, 7, 3, 2, dtype, 1, "int")
    x.requires_grad_(True)
    gx, gsize = tome(x, metric, size, 3)
    assert gx.dtype == gsize.dtype == dtype
    gx.sum().backward()
    ex = x.detach().clone().requires_grad_(True)
    official_tome_block(ex, metric, size, 3)[0].sum().backward()
    assert_same(x.grad, ex.grad)


def _tome_bad_cases() -> list[tuple]:
    x, metric, size = tome_inputs(2, 5, 3, 2, torch.float32, 0)
    zero = metric.clone()
    zero[1, 3] = 0
    nan_x = x.clone()
    nan_x[0, 1, 2] = float("nan")
    inf_m = metric.clone()
    inf_m[0, 0, 0] = float("inf")
    huge = metric.clone()
    huge[1, 2] = 3e38  # finite, but the norm overflows
    return [
        ("x_rank", (x[0], metric, size, 1), r"x must be 3-D"),
        ("metric_rank", (x, metric[0], size, 1), r"metric must be 3-D"),
        ("size_rank", (x, metric, size[..., 0], 1), r"size must be 3-D"),
        ("size_width", (x, metric, size.expand(2, 5, 2), 1), r"size must be \[B, T, 1\]"),
        ("batch", (x, metric[:1], size, 1), r"batch mismatch: x has B=2, metric has B=1"),
        ("tokens", (x, metric, size[:, :4], 1), r"token mismatch: x has T=5, size has T=4"),
        ("empty", (x[:, :0], metric[:, :0], size[:, :0], 1), r"need at least the CLS token"),
        ("dtype", (x.double(), metric, size, 1), r"must share one floating dtype"),
        ("int", (x, metric, size.long(), 1), r"must share one floating dtype"),
        ("not_tensor", (x, metric.tolist(), size, 1), r"metric must be a torch.Tensor"),
        ("r_neg", (x, metric, size, -1), r"r must be >= 0"),
        ("r_float", (x, metric, size, 1.0), r"r must be an int"),
        ("r_bool", (x, metric, size, True), r"r must be an int"),
        ("nan", (nan_x, metric, size, 1), r"x must be finite"),
        ("inf", (x, inf_m, size, 1), r"metric must be finite"),
        ("size0", (x, metric, size * 0, 1), r"size must be > 0"),
        ("size_neg", (x, metric, -size, 1), r"size must be > 0"),
        ("zero_norm", (x, zero, size, 1), r"finite nonzero L2 norm"),
        ("norm_overflow", (x, huge, size, 1), r"finite nonzero L2 norm"),
    ]


@pytest.mark.parametrize("fn", [tome, tome_stable], ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", _tome_bad_cases(), ids=lambda case: case[0])
def test_tome_value_errors(fn, case):
    _, args, match = case
    one_line_value_error(fn, args, match)


def test_tome_r_rejects():
    one_line_value_error(tome_r, (-1, 5), r"r must be >= 0")
    one_line_value_error(tome_r, (1, 0), r"T >= 1")
    one_line_value_error(tome_r, (1.5, 5), r"r must be an int")


# ================================================================================================================
# POMT
# ================================================================================================================

# ---------------------------------------------------------------------------------------------- transcription
# nickjeliopoulos/PruneOneMoreToken, pomt/timm_patch.py: `POMTMetric` and `POMTForward`, verbatim but for the
# comments. `pomt_info` is the SimpleNamespace(r=[...], prefix_tokens=vit.num_prefix_tokens) of
# `timm_apply_pomt_patch`, with one prefix token (CLS).


def POMTMetric(softmax_attn, v, pomt_info):
    metric_attn = (
        torch.amax(softmax_attn[..., pomt_info.prefix_tokens :, pomt_info.prefix_tokens :], dim=1)
        .sum(dim=1, keepdim=True)
        .transpose(-2, -1)
    )
    metric_attn = metric_attn / torch.max(metric_attn)

    metric_v = torch.softmax(
        torch.amax(v, dim=1)
        .sum(dim=-1, keepdim=True),
        dim=1
    )[:, pomt_info.prefix_tokens :]

    metric = (metric_attn + metric_v)

    return metric


def POMTForward(x, metric, pomt_info):
    B, N, C = x.size()
    r = pomt_info.r.pop(0)
    T = N - r - 2

    if r == 0 or T <= pomt_info.prefix_tokens:
        return x, None

    offset = torch.tensor(
        data=[pomt_info.prefix_tokens], dtype=torch.long, device=x.device
    )
    similarity_indices = metric.argsort(dim=1, descending=True) + offset

    kept_indices = similarity_indices[:, :T]
    discard_indices = similarity_indices[:, T:]

    x_discarded = torch.gather(x, dim=1, index=discard_indices.expand(B, discard_indices.shape[1], C)).mean(
        dim=1, keepdim=True)

    x = torch.cat(
        (
            x[:, 0 : pomt_info.prefix_tokens, :],
            torch.gather(x, dim=1, index=kept_indices.expand(B, T, C)),
            x_discarded,
        ),
        dim=1,
    )

    return x, discard_indices


def official_pomt(x, attn, v, r):
    """POMTAttention.forward computes POMTMetric(attn, v, info); POMTAttentionBlock.forward then POMTForward."""
    info = SimpleNamespace(r=[r], prefix_tokens=1)
    return POMTForward(x, POMTMetric(attn, v, info), info)[0]


def official_pomt_each_image(x, attn, v, r):
    """The official code run on one image at a time (B = 1 batches), concatenated."""
    return torch.cat([official_pomt(x[b : b + 1], attn[b : b + 1], v[b : b + 1], r) for b in range(x.shape[0])])


# ---------------------------------------------------------------------------------------------- oracle


def pomt_scores_oracle(attn: np.ndarray, v: np.ndarray) -> list[float]:
    """One image, plain Python in float64: attn [H, N+1, N+1], v [H, N+1, D] -> the N patch-token scores."""
    heads, n1, _ = attn.shape
    n, d = n1 - 1, v.shape[-1]
    # how much patch token j is attended to by the patch queries (CLS query and CLS key left out), head max
    col = [sum(max(float(attn[h, 1 + i, 1 + j]) for h in range(heads)) for i in range(n)) for j in range(n)]
    top = max(col)
    sums = [sum(max(float(v[h, t, k]) for h in range(heads)) for k in range(d)) for t in range(n1)]
    peak = max(sums)
    exps = [math.exp(s - peak) for s in sums]
    total = sum(exps)
    return [col[j] / top + exps[1 + j] / total for j in range(n)]


def pomt_oracle(x: np.ndarray, attn: np.ndarray, v: np.ndarray, r: int) -> np.ndarray:
    """One image: CLS, the N - 1 - r best tokens (stable descending), then the mean of the r + 1 others."""
    n1 = x.shape[0]
    keep = n1 - r - 2
    if r == 0 or keep <= 1:
        return x.astype(np.float64)
    score = pomt_scores_oracle(attn, v)
    order = sorted(range(n1 - 1), key=lambda j: -score[j])
    rows = [[float(val) for val in row] for row in x]
    dropped = order[keep:]
    mean = [sum(rows[1 + j][col] for j in dropped) / len(dropped) for col in range(x.shape[1])]
    return np.array([rows[0]] + [rows[1 + j] for j in order[:keep]] + [mean])


def pomt_oracle_batch(x: torch.Tensor, attn: torch.Tensor, v: torch.Tensor, r: int) -> np.ndarray:
    return np.stack([pomt_oracle(x[b].numpy(), attn[b].numpy(), v[b].numpy(), r) for b in range(x.shape[0])])


def near_tie(score: list[float]) -> bool:
    """Two distinct scores closer than float32 can order reliably."""
    ordered = sorted(score)
    return any(0 < hi - lo <= 1e-5 * max(1.0, abs(hi)) for lo, hi in itertools.pairwise(ordered))


# ---------------------------------------------------------------------------------------------- inputs


def pomt_inputs(b: int, h: int, n: int, c: int, d: int, dtype: torch.dtype,
                seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = gen(seed)
    x = torch.randn(b, n + 1, c, generator=g, dtype=dtype)
    attn = torch.softmax(torch.randn(b, h, n + 1, n + 1, generator=g, dtype=dtype) * 2, dim=-1)
    v = torch.randn(b, h, n + 1, d, generator=g, dtype=dtype)
    return x, attn, v


# (B, H, N, C, D, r): N = 1, 2, 3 (nothing to prune for any r), N = 4 and r = 1 (the smallest pruning, T = 2),
# r = 0, r with T = 1 (early return), r > N, B > 1, and a ViT-B/16-sized N = 196.
POMT_SIZES = [
    (1, 1, 1, 1, 1, 1),
    (2, 2, 2, 2, 1, 1),
    (2, 1, 3, 2, 2, 1),
    (1, 1, 4, 1, 1, 1),
    (2, 3, 4, 2, 3, 1),
    (2, 3, 5, 2, 3, 0),
    (2, 3, 5, 2, 3, 2),
    (2, 3, 5, 2, 3, 3),
    (3, 2, 8, 3, 2, 5),
    (3, 2, 8, 3, 2, 6),
    (3, 2, 8, 3, 2, 12),
    (3, 4, 16, 4, 4, 6),
    (2, 12, 196, 8, 8, 30),
]
POMT_IDS = [f"B{b}H{h}N{n}C{c}D{d}r{r}" for b, h, n, c, d, r in POMT_SIZES]


# ---------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("b", "h", "n", "c", "d", "r"), POMT_SIZES, ids=POMT_IDS)
def test_pomt_matches_official_continuous(b, h, n, c, d, r, seed, dtype):
    x, attn, v = pomt_inputs(b, h, n, c, d, dtype, seed)
    out = pomt(x, attn, v, r)
    assert_same(out, official_pomt(x, attn, v, r))
    assert out.shape == ((b, n + 1, c) if r == 0 or n - 1 - r <= 1 else (b, n + 1 - r, c))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("b", "h", "n", "c", "d", "r"), POMT_SIZES, ids=POMT_IDS)
def test_pomt_per_image_matches_official_one_image_at_a_time(b, h, n, c, d, r, seed, dtype):
    x, attn, v = pomt_inputs(b, h, n, c, d, dtype, seed)
    expected = official_pomt_each_image(x, attn, v, r)
    assert_same(pomt_per_image(x, attn, v, r), expected)
    assert_same(pomt_stable(x, attn, v, r), expected)  # no ties on continuous inputs


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("b", "h", "n", "c", "d", "r"), POMT_SIZES[:-1], ids=POMT_IDS[:-1])
def test_pomt_per_image_matches_oracle_continuous(b, h, n, c, d, r, dtype):
    x, attn, v = pomt_inputs(b, h, n, c, d, dtype, 4)
    expected = pomt_oracle_batch(x, attn, v, r)
    assert_near(pomt_per_image(x, attn, v, r), expected)
    assert_near(pomt_stable(x, attn, v, r), expected)


@pytest.mark.parametrize("seed", range(5))
def test_pomt_official_equals_per_image_at_batch_one(seed):
    x, attn, v = pomt_inputs(1, 3, 12, 4, 4, torch.float32, seed)
    assert_same(pomt(x, attn, v, 4), pomt_per_image(x, attn, v, 4))


def test_pomt_official_depends_on_the_batch():
    """The official torch.max(metric_attn) is over the whole batch: at B = 2 an image's selection can change with
    the other image; the per-image variant is the official code run on one image at a time."""
    differ = alone_differ = 0
    for seed in range(20):
        x, attn, v = pomt_inputs(2, 3, 12, 4, 4, torch.float64, seed)
        official, per_image = pomt(x, attn, v, 4), pomt_per_image(x, attn, v, 4)
        assert_same(official, official_pomt(x, attn, v, 4))
        assert_same(per_image, official_pomt_each_image(x, attn, v, 4))
        differ += not torch.equal(official, per_image)
        alone_differ += not torch.equal(official[:1], official_pomt(x[:1], attn[:1], v[:1], 4))
    assert differ > 0
    assert alone_differ > 0


def test_pomt_batch_dependence_hand_example():
    # Image 0: metric_attn = (0.5, 1.0) * s over patch tokens 1, 2 before the division (the rest 0), metric_v favours
    # token 3. Alone (s / max = 1 for token 2) token 2 wins; next to image 1, whose column sums are 8x larger,
    # image 0's metric_attn shrinks to (1/16, 1/8) and metric_v decides.
    n, r = 6, 1  # keep T = 4 of 6; the order of the first pick is what we look at
    attn = torch.zeros(2, 1, n + 1, n + 1, dtype=torch.float64)
    attn[0, 0, 1, 1], attn[0, 0, 1, 2] = 0.5, 1.0
    attn[1, 0, 1:, 1] = 8.0 / n
    v = (torch.arange(n + 1, dtype=torch.float64) / 10).expand(2, 1, n + 1).reshape(2, 1, n + 1, 1).clone()
    v[0, 0, 3, 0] = 3.0  # distinct scores everywhere: no tie for the argsort to order
    x = torch.arange(2 * (n + 1), dtype=torch.float64).reshape(2, n + 1, 1)
    alone = pomt(x[:1], attn[:1], v[:1], r)
    batched = pomt(x, attn, v, r)
    assert alone[0, 1, 0].item() == 2.0  # token 2 ranks first
    assert batched[0, 1, 0].item() == 3.0  # token 3 ranks first
    assert_same(batched, official_pomt(x, attn, v, r))
    assert_same(pomt_per_image(x, attn, v, r)[:1], alone)


def test_pomt_metric_layout():
    _, attn, v = pomt_inputs(3, 2, 7, 2, 3, torch.float64, 0)
    info = SimpleNamespace(r=[], prefix_tokens=1)
    assert_same(pomt_metric(attn, v), POMTMetric(attn, v, info))
    per_image = pomt_metric(attn, v, per_image=True)
    expected = torch.cat([POMTMetric(attn[b : b + 1], v[b : b + 1], info) for b in range(3)])
    assert_same(per_image, expected)
    np.testing.assert_allclose(per_image[..., 0].numpy(),
                               np.array([pomt_scores_oracle(attn[b].numpy(), v[b].numpy()) for b in range(3)]),
                               rtol=1e-12, atol=1e-12)


def test_pomt_discards_r_plus_one_tokens_into_their_mean():
    # N = 6, r = 2: T = 3 kept, 3 discarded (one more than r), mean appended: 1 + 3 + 1 = 5 = N + 1 - r rows.
    n = 6
    attn = torch.zeros(1, 1, n + 1, n + 1, dtype=torch.float64)
    attn[0, 0, 1, 1:] = torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    v = torch.zeros(1, 1, n + 1, 1, dtype=torch.float64)
    x = torch.tensor([[[100.0], [1.0], [2.0], [3.0], [4.0], [5.0], [6.0]]], dtype=torch.float64)
    out = pomt_stable(x, attn, v, 2)
    torch.testing.assert_close(out, torch.tensor([[[100.0], [1.0], [2.0], [3.0], [5.0]]], dtype=torch.float64))


@pytest.mark.parametrize("fn", [pomt, pomt_per_image, pomt_stable], ids=lambda f: f.__name__)
@pytest.mark.parametrize(("n", "r"), [(1, 0), (1, 1), (2, 1), (3, 1), (4, 0), (4, 2), (6, 4), (6, 50)])
def test_pomt_early_return_is_x(fn, n, r):
    x, attn, v = pomt_inputs(2, 2, n, 3, 2, torch.float32, 0)
    assert fn(x, attn, v, r) is x
    assert official_pomt(x, attn, v, r) is x


# ---------------------------------------------------------------------------------------------- ties


@st.composite
def pomt_tied_case(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    b = draw(st.integers(1, 3))
    n = draw(st.one_of(st.integers(1, 9), st.integers(17, 30)))  # N >= 17: more than 16 scores to sort
    h = draw(st.integers(1, 3))
    c = draw(st.integers(1, 3))
    d = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(DTYPES))
    attn_levels = draw(st.sampled_from([(0.0, 0.5, 1.0), (0.25,), (0.0, 1.0), (0.0, 0.25)]))
    v_levels = draw(st.sampled_from([(0.0, 1.0), (1.0,), (-1.0, 0.0, 2.0)]))
    na, nv, nx = b * h * (n + 1) ** 2, b * h * (n + 1) * d, b * (n + 1) * c
    attn = torch.tensor(draw(st.lists(st.sampled_from(attn_levels), min_size=na, max_size=na)),
                        dtype=dtype).reshape(b, h, n + 1, n + 1)
    v = torch.tensor(draw(st.lists(st.sampled_from(v_levels), min_size=nv, max_size=nv)),
                     dtype=dtype).reshape(b, h, n + 1, d)
    x = torch.tensor(draw(st.lists(st.floats(-4, 4, width=32), min_size=nx, max_size=nx)),
                     dtype=dtype).reshape(b, n + 1, c)
    r = draw(st.integers(0, n + 1))
    return x, attn, v, r


@given(pomt_tied_case())
def test_property_pomt_stable_matches_oracle_tied(case):
    x, attn, v, r = case
    assume(bool((attn[:, :, 1:, 1:].amax(dim=(1, 2, 3)) > 0).all()))
    assume(not any(near_tie(pomt_scores_oracle(attn[b].numpy(), v[b].numpy())) for b in range(x.shape[0])))
    assert_near(pomt_stable(x, attn, v, r), pomt_oracle_batch(x, attn, v, r))


@given(pomt_tied_case())
def test_property_pomt_official_on_ties(case):
    """On ties the official argsort is arbitrary; the reference makes the same calls and gets the same output."""
    x, attn, v, r = case
    assume(bool((attn[:, :, 1:, 1:] > 0).any()))
    assert_same(pomt(x, attn, v, r), official_pomt(x, attn, v, r))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("b", "h", "n", "d", "r"), [(2, 3, 24, 1, 5), (2, 2, 49, 2, 20), (1, 3, 196, 1, 60)])
def test_pomt_stable_matches_oracle_tied_large(b, h, n, d, r, seed, dtype):
    # Sparse dyadic attention and 0/1 values: many tokens share a column sum and a value sum.
    g = gen(seed)
    attn = (torch.rand(b, h, n + 1, n + 1, generator=g) < 2 / n).to(dtype) * 0.25
    attn[:, 0, 1, 1] = 0.25  # every image has some patch attention
    v = torch.randint(0, 2, (b, h, n + 1, d), generator=g).to(dtype)
    x = torch.randn(b, n + 1, 3, generator=g, dtype=dtype)
    for bi in range(b):
        score = pomt_scores_oracle(attn[bi].numpy(), v[bi].numpy())
        assert not near_tie(score)
        assert len(set(score)) < n // 2  # ties, and many of them
    assert_near(pomt_stable(x, attn, v, r), pomt_oracle_batch(x, attn, v, r))
    assert_same(pomt(x, attn, v, r), official_pomt(x, attn, v, r))


def test_pomt_all_tied():
    # Uniform attention and values: every score ties, the stable order keeps tokens 1..T, the rest averaged.
    n, r = 8, 2
    attn = torch.full((2, 3, n + 1, n + 1), 1 / 8, dtype=torch.float64)  # dyadic: column sums are exact
    v = torch.ones(2, 3, n + 1, 2, dtype=torch.float64)
    x = torch.arange(2 * (n + 1), dtype=torch.float64).reshape(2, n + 1, 1)
    out = pomt_stable(x, attn, v, r)
    torch.testing.assert_close(out[:, :, 0], torch.tensor([[0, 1, 2, 3, 4, 5, 7.0], [9, 10, 11, 12, 13, 14, 16.0]],
                                                          dtype=torch.float64))


# ---------------------------------------------------------------------------------------------- API, validation


def test_pomt_references_table():
    assert POMT_REFERENCES == {"pomt": {"official": pomt, "per_image": pomt_per_image, "stable": pomt_stable}}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("fn", [pomt, pomt_per_image, pomt_stable], ids=lambda f: f.__name__)
def test_pomt_dtype(fn, dtype):
    x, attn, v = pomt_inputs(2, 2, 6, 3, 2, dtype, 0)
    assert fn(x, attn, v, 2).dtype == dtype


def _pomt_bad_cases() -> list[tuple]:
    x, attn, v = pomt_inputs(2, 3, 5, 4, 2, torch.float32, 0)
    nan_v = v.clone()
    nan_v[1, 0, 2, 1] = float("nan")
    inf_attn = attn.clone()
    inf_attn[0, 1, 1, 1] = float("inf")
    neg = attn.clone()
    neg[0, 0, 2, 3] = -0.1
    return [
        ("x_rank", (x[0], attn, v, 1), r"x must be 3-D"),
        ("attn_rank", (x, attn[:, 0], v, 1), r"attn must be 4-D"),
        ("v_rank", (x, attn, v[:, 0], 1), r"v must be 4-D"),
        ("square", (x, attn[..., :5], v, 1), r"attn must be square"),
        ("batch", (x[:1], attn, v, 1), r"batch mismatch: x has B=1, attn has B=2"),
        ("tokens", (x[:, :5], attn, v, 1), r"token mismatch: x has N\+1=5, attn has N\+1=6"),
        ("v_tokens", (x, attn, v[:, :, :5], 1), r"token mismatch: x has N\+1=6, v has N\+1=5"),
        ("heads", (x, attn, v[:, :2], 1), r"head mismatch: attn has H=3, v has H=2"),
        ("no_patch", (x[:, :1], attn[:, :, :1, :1], v[:, :, :1], 1), r"N >= 1"),
        ("dtype", (x, attn.double(), v, 1), r"must share one floating dtype"),
        ("r_neg", (x, attn, v, -1), r"r must be >= 0"),
        ("r_float", (x, attn, v, 1.0), r"r must be an int"),
        ("nan", (x, attn, nan_v, 1), r"v must be finite"),
        ("inf", (x, inf_attn, v, 1), r"attn must be finite"),
        ("negative", (x, neg, v, 1), r"attn must be non-negative"),
        ("all_zero", (x, attn * 0, v, 1), r"all zero"),
    ]


@pytest.mark.parametrize("fn", [pomt, pomt_per_image, pomt_stable], ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", _pomt_bad_cases(), ids=lambda case: case[0])
def test_pomt_value_errors(fn, case):
    _, args, match = case
    one_line_value_error(fn, args, match)


def test_pomt_one_image_all_zero():
    # The batch maximum is positive, so the official code divides fine; image 1's own maximum is 0 (0 / 0).
    x, attn, v = pomt_inputs(2, 2, 5, 2, 2, torch.float32, 0)
    attn[1, :, 1:, 1:] = 0
    assert_same(pomt(x, attn, v, 1), official_pomt(x, attn, v, 1))
    for fn in (pomt_per_image, pomt_stable):
        one_line_value_error(fn, (x, attn, v, 1), r"attn\[1, :, 1:, 1:\] is all zero")


# ================================================================================================================
# DynamicViT
# ================================================================================================================

# ---------------------------------------------------------------------------------------------- transcription
# raoyongming/DynamicViT: utils.py `batch_index_select` (the 3-D branch) verbatim, and vit.py
# VisionTransformerDiffPruning.forward, the inference branch (`else:` of `if self.training:` at a pruning location),
# from `score = pred_score[:,:,0]` to `x = batch_index_select(x, now_policy)`, with `init_n * token_ratio` passed in
# as num_keep_node.


def batch_index_select(x, idx):
    if len(x.size()) == 3:
        B, N, C = x.size()
        N_new = idx.size(1)
        offset = torch.arange(B, dtype=torch.long, device=x.device).view(B, 1) * N
        idx = idx + offset
        out = x.reshape(B*N, C)[idx.reshape(-1)].reshape(B, N_new, C)
        return out
    raise NotImplementedError


def official_dynamicvit(x, score, num_keep_node, ordered=False):
    """``ordered=True`` adds the line DynamicViT-derived codes put after the argsort:
    ``keep_policy, _ = torch.sort(keep_policy)``."""
    B = x.shape[0]
    keep_policy = torch.argsort(score, dim=1, descending=True)[:, :num_keep_node]
    if ordered:
        keep_policy, _ = torch.sort(keep_policy)
    cls_policy = torch.zeros(B, 1, dtype=keep_policy.dtype, device=keep_policy.device)
    now_policy = torch.cat([cls_policy, keep_policy + 1], dim=1)
    x = batch_index_select(x, now_policy)
    return x


# ---------------------------------------------------------------------------------------------- oracle


def dynamicvit_oracle(x: torch.Tensor, score: torch.Tensor, k: int, ordered: bool) -> np.ndarray:
    """Per image: CLS, then the k best-scored tokens (stable: lower index first), descending or in index order."""
    outs = []
    for b in range(x.shape[0]):
        s = score[b].tolist()
        chosen = sorted(range(len(s)), key=lambda i: -s[i])[:k]
        if ordered:
            chosen = sorted(chosen)
        outs.append(np.stack([x[b, 0].numpy()] + [x[b, 1 + i].numpy() for i in chosen]))
    return np.stack(outs)


# ---------------------------------------------------------------------------------------------- tests

DVIT_FNS = [dynamicvit, dynamicvit_stable, dynamicvit_ordered, dynamicvit_ordered_stable]
# (B, N, C, k): N = 1, k = 1, k = N (no early return), B > 1, a DeiT-S-sized N = 196 with int(196 * 0.7) = 137.
DVIT_SIZES = [(1, 1, 1, 1), (2, 1, 3, 1), (1, 2, 2, 1), (1, 2, 2, 2), (2, 5, 3, 1), (3, 5, 3, 4), (3, 5, 3, 5),
              (2, 16, 4, 9), (4, 196, 8, 137), (2, 196, 8, 196)]
DVIT_IDS = [f"B{b}N{n}C{c}k{k}" for b, n, c, k in DVIT_SIZES]


def dvit_inputs(b: int, n: int, c: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    return torch.randn(b, n + 1, c, generator=g, dtype=dtype), torch.randn(b, n, generator=g, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("b", "n", "c", "k"), DVIT_SIZES, ids=DVIT_IDS)
def test_dynamicvit_matches_official_continuous(b, n, c, k, seed, dtype):
    x, score = dvit_inputs(b, n, c, dtype, seed)
    for ordered, fns in ((False, (dynamicvit, dynamicvit_stable)), (True, (dynamicvit_ordered,
                                                                           dynamicvit_ordered_stable))):
        expected = official_dynamicvit(x, score, k, ordered)
        assert expected.shape == (b, k + 1, c)
        for fn in fns:
            assert_same(fn(x, score, k), expected)
            assert_same(fn(x, score, k), torch.from_numpy(dynamicvit_oracle(x, score, k, ordered)))


@pytest.mark.parametrize("fn", [dynamicvit, dynamicvit_stable], ids=lambda f: f.__name__)
def test_dynamicvit_k_equals_n_reorders(fn):
    # No early return: all tokens come back, in descending score order.
    x = torch.arange(5, dtype=torch.float32).reshape(1, 5, 1)
    score = torch.tensor([[0.1, 0.4, 0.3, 0.2]])
    assert fn(x, score, 4)[0, :, 0].tolist() == [0.0, 2.0, 3.0, 4.0, 1.0]
    assert_same(dynamicvit_ordered(x, score, 4), x)


@st.composite
def dvit_tied_case(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int]:
    b = draw(st.integers(1, 3))
    n = draw(st.one_of(st.integers(1, 10), st.integers(17, 60)))  # N >= 17: more than 16 scores to sort
    c = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(DTYPES))
    levels = draw(st.sampled_from([(0.0, 0.5, 1.0), (0.5,), (-1.0, 1.0)]))
    score = torch.tensor(draw(st.lists(st.sampled_from(levels), min_size=b * n, max_size=b * n)),
                         dtype=dtype).reshape(b, n)
    x = torch.tensor(draw(st.lists(st.floats(-4, 4, width=32), min_size=b * (n + 1) * c,
                                   max_size=b * (n + 1) * c)), dtype=dtype).reshape(b, n + 1, c)
    return x, score, draw(st.integers(1, n))


@given(dvit_tied_case())
def test_property_dynamicvit_stable_matches_oracle_tied(case):
    x, score, k = case
    assert_same(dynamicvit_stable(x, score, k), torch.from_numpy(dynamicvit_oracle(x, score, k, False)))
    assert_same(dynamicvit_ordered_stable(x, score, k), torch.from_numpy(dynamicvit_oracle(x, score, k, True)))


@given(dvit_tied_case())
def test_property_dynamicvit_official_on_ties(case):
    """Same calls as the official code, same output; whatever the tie order, the kept scores are the k largest."""
    x, score, k = case
    out = dynamicvit(x, score, k)
    assert_same(out, official_dynamicvit(x, score, k))
    assert_same(dynamicvit_ordered(x, score, k), official_dynamicvit(x, score, k, ordered=True))
    x_id = torch.arange(x.shape[1], dtype=x.dtype).expand(x.shape[0], -1)[..., None]  # each row: its own index
    rows = dynamicvit(x_id, score, k)[:, 1:, 0].long() - 1
    for b in range(x.shape[0]):
        assert sorted(score[b, rows[b]].tolist(), reverse=True) == sorted(score[b].tolist(), reverse=True)[:k]
        assert score[b, rows[b]].tolist() == sorted(score[b, rows[b]].tolist(), reverse=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("b", "n", "k"), [(2, 17, 5), (3, 196, 137), (2, 196, 67), (2, 196, 196)])
def test_dynamicvit_stable_matches_oracle_tied_large(b, n, k, seed, dtype):
    g = gen(seed)
    score = torch.randint(0, 4, (b, n), generator=g).to(dtype) / 4
    x = torch.randn(b, n + 1, 3, generator=g, dtype=dtype)
    assert_same(dynamicvit_stable(x, score, k), torch.from_numpy(dynamicvit_oracle(x, score, k, False)))
    assert_same(dynamicvit_ordered_stable(x, score, k), torch.from_numpy(dynamicvit_oracle(x, score, k, True)))
    assert_same(dynamicvit(x, score, k), official_dynamicvit(x, score, k))


def test_dynamicvit_references_table():
    assert DYNAMICVIT_REFERENCES == {
        "dynamicvit": {"official": dynamicvit, "stable": dynamicvit_stable},
        "dynamicvit_ordered": {"official": dynamicvit_ordered, "stable": dynamicvit_ordered_stable},
    }


@pytest.mark.parametrize(("keep_rate", "n", "k"), [
    (0.7, 196, 137),  # EViT's ceil gives 138
    (0.7 ** 2, 196, 96),  # the official second stage: token_ratio = [rho, rho ** 2, rho ** 3] of init_n = 196
    (0.7 ** 3, 196, 67),
    (0.5, 196, 98),
    (1.0, 196, 196),
    (0.29, 100, 28),  # 100 * 0.29 == 28.999999999999996 in floating point
    (0.07, 100, 7),  # 100 * 0.07 == 7.000000000000001: EViT's ceil gives 8
    (1.0, 1, 1),
    (0.5, 3, 1),
    (1, 5, 5),
])
def test_dynamicvit_keep(keep_rate, n, k):
    out = dynamicvit_keep(keep_rate, n)
    assert out == k == int(n * keep_rate)  # the official `int(init_n * self.token_ratio[p_count])`
    assert type(out) is int


@pytest.mark.parametrize(("args", "match"), [
    ((0.0, 10), r"keep rate must be in \(0, 1\]"),
    ((-0.5, 10), r"keep rate must be in \(0, 1\]"),
    ((1.5, 10), r"keep rate must be in \(0, 1\]"),
    ((float("nan"), 10), r"keep rate must be in \(0, 1\]"),
    ((True, 10), r"keep rate must be a number"),
    (("0.5", 10), r"keep rate must be a number"),
    ((0.5, 0), r"n must be >= 1"),
    ((0.5, 2.0), r"n must be an int"),
    ((0.4, 2), r"keeps no token of 2: int\(2 \* 0.4\) = 0"),
])
def test_dynamicvit_keep_rejects(args, match):
    one_line_value_error(dynamicvit_keep, args, match)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("fn", DVIT_FNS, ids=lambda f: f.__name__)
def test_dynamicvit_dtype(fn, dtype):
    x, score = dvit_inputs(2, 6, 3, dtype, 0)
    assert fn(x, score, 3).dtype == dtype


def _dvit_bad_cases() -> list[tuple]:
    x, score = dvit_inputs(2, 5, 3, torch.float32, 0)
    nan = score.clone()
    nan[1, 2] = float("nan")
    inf = score.clone()
    inf[0, 0] = -float("inf")
    return [
        ("x_rank", (x[0], score, 2), r"x must be 3-D"),
        ("score_rank", (x, score[..., None], 2), r"score must be 2-D"),
        ("batch", (x[:1], score, 2), r"batch mismatch: x has B=1, score has B=2"),
        ("tokens", (x, score[:, :4], 2), r"token mismatch: x has N\+1=6, score has N=4"),
        ("no_patch", (x[:, :1], score[:, :0], 1), r"N >= 1"),
        ("dtype", (x.double(), score, 2), r"must share one floating dtype"),
        ("k0", (x, score, 0), r"k must satisfy 1 <= k <= N \(N=5, got k=0\)"),
        ("k_big", (x, score, 6), r"k must satisfy 1 <= k <= N \(N=5, got k=6\)"),
        ("k_float", (x, score, 2.0), r"k must be an int"),
        ("nan", (x, nan, 2), r"score must be finite"),
        ("inf", (x, inf, 2), r"score must be finite"),
    ]


@pytest.mark.parametrize("fn", DVIT_FNS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", _dvit_bad_cases(), ids=lambda case: case[0])
def test_dynamicvit_value_errors(fn, case):
    _, args, match = case
    one_line_value_error(fn, args, match)
