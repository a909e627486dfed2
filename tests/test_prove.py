"""The prover: it settles evit and topk (default and shared pipelines), refutes the seed and planted bugs with
counterexamples the torch reference confirms, counts its regions right, refuses what it cannot settle, and always
names what it compared with what."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import linearize as L
from linearize.cli import main
from linearize.ir.build import cat, define, delta, heaviside, index, mean, sizes, stack_over, sum_over, tensor
from linearize.ir.program import InputError, Program, program
from linearize.programs import get
from linearize.reference import REFERENCES
from linearize.rewrite import SEED_PIPELINE, SHARED_PIPELINE
from linearize.verify.prove import ProveError, channel_generic, fubini, prove, sides, weak_orderings
from linearize.verify.regions import analyze, degree


def brute_weak_orderings(n: int) -> set[tuple[int, ...]]:
    """Every map of n tokens to values 0..n-1, reduced to dense levels: the distinct patterns of ties and order."""
    return {tuple(sorted(set(f)).index(v) for v in f) for f in itertools.product(range(n), repeat=n)}


@pytest.mark.parametrize("n", range(1, 6))
def test_weak_orderings_are_all_orderings_once(n):
    w = weak_orderings(n)
    assert {tuple(r) for r in w.tolist()} == brute_weak_orderings(n) and len(w) == fubini(n)


def test_fubini_numbers():
    assert [fubini(n) for n in range(1, 8)] == [1, 3, 13, 75, 541, 4683, 47293]


def regions(max_n: int) -> int:  # sum over n of (orderings of n scores) * (values of k), counted independently
    return sum(len(brute_weak_orderings(n)) * n for n in range(1, max_n + 1))


@pytest.mark.parametrize("pipeline", [None, SHARED_PIPELINE], ids=["default", "shared"])
@pytest.mark.parametrize("name", ["evit", "topk"])
def test_linearized_forms_are_proved(name, pipeline):
    result = prove(get(name), max_n=5, pipeline=pipeline)
    assert result.ok and result.counterexample is None and result.channel_generic
    assert result.regions == regions(5) == 1 + 6 + 39 + 300 + 2705
    assert result.candidate == {"name": name, "form": "linearized form"}
    assert result.reference == {"name": name, "form": "original form"}
    assert result.sizes == {"N": "1..5", "k": "every value, 1 <= k <= N", "H": "every value (only averaged over)",
                            "C": "every value (channel-generic)"} and result.exact == "float64"


def test_jobs_settle_the_same_regions():
    assert prove(get("evit"), max_n=4, jobs=2).regions == prove(get("evit"), max_n=4).regions == regions(4)


# --- planted bugs: hand-written linearizations of EViT, compared with evit's original --------------------------
def planted(bug: str) -> Program:
    N, C, H, k = sizes("N C H k")
    x, attn = tensor("x", N + 1, C), tensor("attn", H, N + 1, N + 1)
    s = define("cls_attn", mean(attn[:, 0, 1:], axis=0))
    i, j, r = index("i", N), index("j", N), index("r", k)
    tie = index("j", i + 1, N) if bug == "ties-reversed" else index("j", 0, i)
    num_greater = define("num_greater", i, sum_over(j, heaviside(s[j] - s[i])))
    rank = define("rank", i, num_greater[i] + sum_over(tie, delta(s[tie] - s[i])))
    kept = stack_over(r, sum_over(i, delta(rank[i] - r) * x[i + 1]))
    mask = {"off-by-one": heaviside(rank[i] - k), "threshold": heaviside(s[i] - 0.5)}.get(bug,
                                                                                      heaviside(rank[i] - k + 1))
    weight = {"squared": s[i] * s[i], "equivalent": (s[i] + s[i]) * 0.5, "attn": attn[0, 0, i + 1]}.get(bug, s[i])
    fused = sum_over(i, mask * weight * x[i + 1])
    cls = {"channel-zero": x[0:1] + x[0:1, 0:1] * 0.0, "channel-bug": x[0:1] + x[0:1, 0:1]}.get(bug, x[0:1])
    p = program(f"evit-{bug}", [x, attn], cat(cls, kept, fused[None]), sizes={k: (1, N)}, early_returns=[(k, N, x)])
    return replace(p, meta={"reference": "evit"})


def prove_planted(bug: str, **kw):
    return prove(planted(bug), get("evit"), **kw)


def confirmed(lin: Program, cex, reference: str = "evit") -> bool:
    """The counterexample is real: the torch reference (stable ties) and the linearized form disagree on it."""
    x = np.array(cex.x, np.float64)[None]
    attn = np.zeros((1, 1, cex.n + 1, cex.n + 1))
    attn[0, 0, 0, 1:] = cex.scores
    assert [sorted(set(cex.scores)).index(v) for v in cex.scores] == cex.ordering  # the scores realize the ordering
    want = REFERENCES[reference]["stable"](torch.tensor(x), torch.tensor(attn), cex.k).numpy()[0]
    try:
        got = L.compile(lin)(x=x, attn=attn, k=cex.k)[0]
    except InputError:
        return "evaluation failed" in cex.problem
    for row in cex.rows:
        if row["expected"] is not None and row["got"] is not None:
            assert np.array_equal(want[row["row"]], row["expected"]) and np.array_equal(got[row["row"]], row["got"])
            assert not np.array_equal(want[row["row"]], got[row["row"]])
    return got.shape != want.shape or not np.array_equal(got, want)


@pytest.mark.parametrize("bug", ["ties-reversed", "off-by-one", "squared", "channel-bug"])
def test_planted_bugs_are_refuted_with_real_counterexamples(bug):
    result = prove_planted(bug, max_n=4, channels=2)
    cex = result.counterexample
    assert not result.ok and cex.n == 2 and cex.rows and confirmed(planted(bug), cex)
    assert len(cex.x[0]) == (2 if bug == "channel-bug" else 1)  # not channel-generic: settled for C = 2
    n = cex.n
    assert result.regions == regions(n - 1) + fubini(n) * (cex.k - 1) + weak_orderings(n).tolist().index(cex.ordering)


def test_a_bug_on_ties_only_is_found_on_ties():
    cex = prove_planted("ties-reversed", max_n=4).counterexample
    assert len(set(cex.scores)) < cex.n
    assert prove_planted("ties-reversed", max_n=1).ok  # one token cannot tie


def test_squared_weights_are_caught_only_because_scores_stay_symbolic():
    p = planted("squared")
    assert degree(p.output, ["attn"], analyze(p).chain) == 2  # so the values run over a lattice of degree 2


@pytest.mark.parametrize("bug", ["equivalent", "channel-zero", "none"])
def test_planted_equivalent_forms_are_proved(bug):
    result = prove_planted(bug, max_n=4)
    assert result.ok and result.regions == regions(4)
    assert result.channel_generic == (bug != "channel-zero")  # x[0:1, 0:1] touches the channel axis


def test_what_cannot_be_settled_is_refused():
    with pytest.raises(ProveError, match="not a comparison of two scores"):
        prove_planted("threshold", max_n=2)


def test_a_weight_read_from_one_head_is_settled_for_one_head_only_and_says_so():
    # attn[0, 0, i + 1] indexes the heads, so H is not only averaged: the proof fixes H = 1 (where the head is
    # the mean), and the result says so; the checker, which draws several heads, refutes it
    result = prove_planted("attn", max_n=3)
    assert result.ok and result.sizes["H"] == "1"
    lin = planted("attn")
    assert not L.check(lin, "evit", examples=100).ok


def test_the_seed_pipeline_is_refuted_on_ties():
    lin = L.linearize(get("evit"), SEED_PIPELINE).result
    result = prove(lin, get("evit"), max_n=4)
    cex = result.counterexample
    assert not result.ok and cex.n == 2 and cex.scores[0] == cex.scores[1] and confirmed(lin, cex)


def test_evit_seed_is_refuted():
    seed = get("evit-seed")
    candidate, reference = sides(seed, get("evit"))
    assert candidate.program is seed and candidate.form == "as written"
    assert reference.program is get("evit") and reference.form == "original form"
    result = prove(seed, get("evit"), max_n=4)
    assert not result.ok and confirmed(seed, result.counterexample)
    assert result.candidate["name"] == "evit-seed" and result.reference["name"] == "evit"


def test_a_declared_reference_is_never_skipped_and_nothing_is_compared_with_itself():
    with pytest.raises(ProveError, match="declares the reference 'evit'"):
        prove(get("evit-seed"))  # the Python API does not look names up: it is told the reference
    with pytest.raises(ProveError, match="already linearized and names no reference"):
        prove(replace(get("evit-seed"), meta={}))
    lin = L.linearize(get("evit")).result
    with pytest.raises(ProveError, match="the same program"):
        prove(lin, lin)
    with pytest.raises(ProveError, match="different inputs"):
        prove(get("evit"), _renamed_inputs())


def _renamed_inputs() -> Program:
    N, C, H, k = sizes("N C H k")
    feats, attn = tensor("feats", N + 1, C), tensor("attn", H, N + 1, N + 1)
    return program("renamed", [feats, attn], feats[0:1], sizes={k: (1, N)}, roles={"feats": "feature"})


def test_channel_generic():
    assert channel_generic(get("evit")) and channel_generic(L.linearize(get("evit")).result)
    assert not channel_generic(planted("channel-zero"))


# --- the command ------------------------------------------------------------------------------------------------
def test_cli_exit_statuses_and_json(capsys):
    assert main(["prove", "evit", "--max-n", "4"]) == 0
    captured = capsys.readouterr()
    assert "31" not in captured.err  # no progress bar when stderr is not a terminal
    assert "evit (linearized form) equals evit (original form)" in captured.out
    assert main(["prove", "topk", "--max-n", "3", "--json", "--pipeline", "shared"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"program", "candidate", "reference", "max_n", "regions", "ok", "counterexample", "seconds",
            "sizes"} <= set(data)
    assert data["ok"] and data["regions"] == regions(3) and data["counterexample"] is None
    assert data["candidate"] == {"name": "topk", "form": "linearized form"}
    assert data["reference"] == {"name": "topk", "form": "original form"}
    assert main(["prove", "evit-seed", "--max-n", "3", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert not data["ok"] and {"n", "sizes", "scores", "inputs", "rows", "problem"} <= set(data["counterexample"])
    assert data["candidate"] == {"name": "evit-seed", "form": "as written"}
    assert data["reference"] == {"name": "evit", "form": "original form"}
    assert main(["prove", "evit", "--pipeline", "seed", "--max-n", "3"]) == 1
    assert "row 1" in capsys.readouterr().out
    for bad in (["--max-n", "0"], ["--jobs", "0"], ["--max-n", "x"]):
        assert main(["prove", "evit", *bad]) == 2
    assert main(["prove", "no-such-program"]) == 2
