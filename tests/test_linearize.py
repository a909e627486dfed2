"""The pipeline: linearize(evit) and linearize(topk) are in linearized form, share one num_greater, and evaluate
like the torch references (the official code on continuous scores, the stable variants on ties)."""

from __future__ import annotations

import functools
import json
import time

import numpy as np
import pytest
import torch
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from linearize import LinearizeError, compile, linearize
from linearize.cli import main
from linearize.ir import Node, Op
from linearize.ir.form import is_linearized, ops_present
from linearize.programs import get
from linearize.reference import evit, evit_stable, topk, topk_stable
from linearize.rewrite import ALL_PASSES, MASKED_SUMS, SEED_PIPELINE, SELECT, SIMPLIFY, SORT

NAMES = ["evit", "topk"]
REFERENCE = {"evit": {"official": evit, "stable": evit_stable}, "topk": {"official": topk, "stable": topk_stable}}
GONE = {"sort_by_key", "topk", "argsort", "gather", "complement", "kth", "rank_of"}
TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-5}, np.float64: {"rtol": 1e-12, "atol": 1e-12}}
TIES = [0.0, 0.25, 0.5, 1.0]  # dyadic: head means of tied rows are tied in every implementation


def uniform(n: int) -> float:
    """About 1 / (n + 1), but dyadic: torch.mean of 12 copies of 1/50 differs by an ulp between columns
    (vectorized lanes and the tail round differently), which would break the ties in the reference only."""
    return 2.0 ** -int(np.ceil(np.log2(n + 1)))


@functools.cache
def derived(name: str, seed: bool = False):
    return linearize(get(name), SEED_PIPELINE if seed else None)


@st.composite
def inputs(draw, kind: str, dtype=np.float64, max_n: int = 8):
    """(x [B, N+1, C], attn [B, H, N+1, N+1], k); kind: continuous, few (CLS row from a few values), uniform."""
    b, h, n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, max_n)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(size=(b, n + 1, c))
    if kind == "uniform":
        attn = np.full((b, h, n + 1, n + 1), uniform(n))
    else:
        attn = rng.random((b, h, n + 1, n + 1))
        if kind == "few":
            attn[:, :, 0, :] = draw(hnp.arrays(np.float64, (b, h, n + 1), elements=st.sampled_from(TIES)))
    return x.astype(dtype), attn.astype(dtype), draw(st.integers(1, n))


def run(program, backend: str, x, attn, k) -> np.ndarray:
    if backend == "torch":
        return compile(program, "torch")(x=torch.from_numpy(x), attn=torch.from_numpy(attn), k=k).numpy()
    return compile(program, "numpy")(x=x, attn=attn, k=k)


def reference(name: str, variant: str, x, attn, k) -> np.ndarray:
    return REFERENCE[name][variant](torch.from_numpy(x), torch.from_numpy(attn), k).numpy()


def cls_scores(attn: np.ndarray) -> np.ndarray:
    return attn[:, :, 0, 1:].mean(axis=1)


def has_ties(attn: np.ndarray) -> bool:
    return any(len(set(row)) < len(row) for row in cls_scores(attn))


# --- the form of the result ---------------------------------------------------------------------------------
def all_nodes(program) -> set[Node]:
    return {n for root in program.roots() for n in root.toposort()}


@pytest.mark.parametrize("name", NAMES)
def test_result_is_linearized_without_data_dependent_ops(name):
    result = derived(name).result
    assert is_linearized(result)
    ops = set(ops_present(result))
    assert not ops & GONE, ops & GONE
    assert {"heaviside", "delta", "sum"} <= ops
    assert GONE & set(ops_present(get(name)))  # there was something to remove


@pytest.mark.parametrize("name", NAMES)
def test_num_greater_is_defined_once_and_shared(name):
    defs = [n for n in all_nodes(derived(name).result) if n.op is Op.DEF]
    num_greater = [d for d in defs if d.arg == "num_greater"]
    rank = [d for d in defs if d.arg == "rank"]
    assert len(num_greater) == 1 and len(rank) == 1
    assert num_greater[0] in rank[0].src[0].toposort()


# --- the result evaluates like the references ---------------------------------------------------------------
@pytest.mark.parametrize("kind", ["continuous", "few", "uniform"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
@settings(deadline=None)
@given(data=st.data())
def test_linearized_equals_reference(name, dtype, kind, data):
    x, attn, k = data.draw(inputs(kind, dtype))
    want = reference(name, "official" if kind == "continuous" else "stable", x, attn, k)
    for backend in ("numpy", "torch"):
        got = run(derived(name).result, backend, x, attn, k)
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("b,h,n,c,k", [(1, 1, 1, 1, 1), (2, 3, 1, 2, 1), (3, 2, 4, 3, 4), (2, 2, 6, 2, 1),
                                       (2, 4, 6, 3, 5), (1, 12, 49, 8, 35)])
def test_edge_sizes(name, b, h, n, c, k):
    rng = np.random.default_rng(n * 100 + k)
    x, attn = rng.normal(size=(b, n + 1, c)), rng.random((b, h, n + 1, n + 1))
    for scores in (attn, np.full_like(attn, uniform(n))):  # continuous, then all tied
        variant = "official" if scores is attn else "stable"
        want = reference(name, variant, x, scores, k)
        for backend in ("numpy", "torch"):
            got = run(derived(name).result, backend, x, scores, k)
            np.testing.assert_allclose(got, want, **TOL[np.float64])
            if k == n:  # nothing pruned: x itself
                assert np.array_equal(got, x)
            else:
                assert got.shape == (b, k + (2 if name == "evit" else 1), c)


# --- refusal, the recorded derivation, the CLI, speed --------------------------------------------------------
def test_linearize_refuses_a_result_that_is_not_linearized():
    without_ranks = (SELECT, MASKED_SUMS, SORT, SIMPLIFY)
    with pytest.raises(LinearizeError, match="rank_of"):
        linearize(get("evit"), without_ranks)
    partial = linearize(get("evit"), without_ranks, require=False).result
    assert not is_linearized(partial) and "rank_of" in ops_present(partial)


@pytest.mark.parametrize("name", NAMES)
def test_derivation_records_every_step(name):
    d = derived(name)
    rules_of = {p.name: {r.name for r in p.rules} for p in ALL_PASSES}
    assert d.steps
    previous = d.source
    for s in d.steps:
        assert s.rule in rules_of[s.pass_name]
        assert s.before in all_nodes(previous) and s.after in all_nodes(s.program)
        assert s.before not in all_nodes(s.program)  # every use of the rewritten node was replaced
        assert {"pass", "rule", "before", "after"} == set(s.to_dict()) and all(s.to_dict().values())
        previous = s.program
    assert previous == d.result
    text = str(d)
    assert text.count("=> ") == len(d.steps)
    for s in d.steps:
        shown = s.to_dict()
        assert f"[{s.pass_name} / {s.rule}]" in text and shown["before"] in text and shown["after"] in text
    assert text.endswith(str(d.result))


def test_derive_json(capsys):
    assert main(["derive", "evit", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["steps"] and len(data["steps"]) == len(derived("evit").steps)
    for step in data["steps"]:
        assert set(step) == {"pass", "rule", "before", "after", "text"}
        assert all(isinstance(v, str) and v for v in step["text"].values())
    assert {"topk-gather", "complement-sum", "stable-rank"} <= {s["rule"] for s in data["steps"]}
    assert "num_greater" in data["result"]["text"]
    assert {"heaviside", "delta", "sum"} <= set(data["ops"]) and not GONE & set(data["ops"])


def test_pipeline_is_fast_on_evit():
    t0 = time.perf_counter()
    linearize(get("evit"))
    assert time.perf_counter() - t0 < 1.0


# --- the seed's pipeline: ranks without a tie-break ----------------------------------------------------------
@settings(deadline=None)
@given(inst=inputs("continuous"))
def test_seed_pipeline_is_right_on_distinct_scores(inst):
    assert not has_ties(inst[1])
    np.testing.assert_allclose(run(derived("evit", seed=True).result, "numpy", *inst),
                               reference("evit", "official", *inst), **TOL[np.float64])


def test_seed_pipeline_is_wrong_on_ties():
    seed = derived("evit", seed=True).result
    assert is_linearized(seed)  # the form alone does not catch it

    def wrong(inst):
        got, want = run(seed, "numpy", *inst), reference("evit", "stable", *inst)
        return got.shape != want.shape or not np.allclose(got, want)

    x, attn, k = find(inputs("few", max_n=4), wrong, settings=settings(database=None, derandomize=True, deadline=None))
    assert has_ties(attn) and k < x.shape[1] - 1
    right = run(derived("evit").result, "numpy", x, attn, k)
    np.testing.assert_allclose(right, reference("evit", "stable", x, attn, k))
