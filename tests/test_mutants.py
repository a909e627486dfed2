"""The mutant suite: hand-written EViT and Top-K linearizations (tests/handwritten.py), each with one planted bug,
are refuted by check (numpy and torch) and by prove, with counterexamples the torch reference confirms; the correct
variants (ranks written pairwise, from an ascending rank, the complement as 1 - kept, reversed indices, constant
indices) are accepted by both."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from handwritten import CORRECT, MUTANTS, fused_without_weight_over_topk

import linearize as L
from linearize.cli import main
from linearize.ir.form import is_linearized
from linearize.programs import get
from linearize.reference import REFERENCES
from linearize.verify.prove import prove

BACKENDS = ["numpy", "torch"]


def candidate(p: L.Program) -> L.Program:
    return p if is_linearized(p) else L.linearize(p).result


def rerun_check(p: L.Program, ce, backend: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The torch reference the counterexample names, and the candidate, on its inputs (None: the candidate raised)."""
    x, attn, k = np.asarray(ce.x, np.float32), np.asarray(ce.attn, np.float32), ce.sizes["k"]
    want = REFERENCES[p.meta["reference"]][ce.reference](torch.from_numpy(x), torch.from_numpy(attn), k).numpy()
    try:
        got = np.asarray(L.compile(candidate(p), backend)(x=x, attn=attn, k=k))
    except L.InputError:
        return want, None
    return want, got


def rerun_prove(p: L.Program, cex) -> tuple[np.ndarray, np.ndarray | None]:
    """The stable torch reference and the candidate on a prove counterexample's concrete inputs (float64)."""
    x, attn, k = np.asarray(cex.inputs["x"])[None], np.asarray(cex.inputs["attn"])[None], cex.sizes["k"]
    assert [sorted(set(cex.scores)).index(v) for v in cex.scores] == cex.ordering  # the scores realize the ordering
    assert set(cex.scores) <= set(attn[0, 0, 0].tolist())  # the compared entries: the CLS row (one head)
    want = REFERENCES[p.meta["reference"]]["stable"](torch.tensor(x), torch.tensor(attn), k).numpy()[0]
    try:
        got = np.asarray(L.compile(candidate(p))(x=x, attn=attn, k=k))[0]
    except L.InputError:
        return want, None
    return want, got


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bug", MUTANTS, ids=list(MUTANTS))
def test_check_refutes_every_planted_bug(bug, backend):
    p = MUTANTS[bug]()
    result = L.check(candidate(p), p.meta["reference"], backend=backend)
    assert not result.ok, bug
    ce = result.counterexample
    want, got = rerun_check(p, ce, backend)
    if got is None:
        assert "raised" in ce.problem
    elif got.shape != want.shape:
        assert "output shape" in ce.problem
    else:
        assert ce.rows and not np.allclose(got, want, rtol=1e-5, atol=1e-5)
        for d in ce.rows:
            np.testing.assert_allclose(d.expected, want[d.batch, d.row], rtol=1e-6)


@pytest.mark.parametrize("bug", MUTANTS, ids=list(MUTANTS))
def test_prove_refutes_every_planted_bug(bug):
    p = MUTANTS[bug]()
    result = prove(p, get(p.meta["reference"]), max_n=4)
    assert not result.ok, bug
    assert result.reference == {"name": p.meta["reference"], "form": "original form"}
    assert result.candidate["name"] == p.name
    cex = result.counterexample
    want, got = rerun_prove(p, cex)
    if got is None:
        assert "evaluation failed" in cex.problem
    elif got.shape != want.shape:
        assert "shapes differ" in cex.problem
    else:
        assert cex.rows and not np.array_equal(got, want)
        for row in cex.rows:
            assert np.array_equal(row["expected"], want[row["row"]]) and np.array_equal(row["got"], got[row["row"]])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", CORRECT, ids=list(CORRECT))
def test_check_accepts_every_correct_variant(variant, backend):
    p = CORRECT[variant]()
    result = L.check(candidate(p), p.meta["reference"], backend=backend, examples=150)
    assert result.ok, result.counterexample


@pytest.mark.parametrize("variant", CORRECT, ids=list(CORRECT))
def test_prove_accepts_every_correct_variant(variant):
    p = CORRECT[variant]()
    result = prove(p, get(p.meta["reference"]), max_n=4)
    assert result.ok, result.counterexample
    assert result.regions == 1 + 3 * 2 + 13 * 3 + 75 * 4  # every weak ordering of n <= 4 scores, every k


def test_the_program_prove_used_to_accept_is_refuted_from_the_cli(capsys, monkeypatch):
    """Kept rows still gather(topk), an unweighted fused token, declared as evit: prove used to linearize it and
    compare it with its own original form (exit 0); it is now compared with evit, and says so."""
    import handwritten
    monkeypatch.setattr(handwritten, "wrong", fused_without_weight_over_topk, raising=False)
    assert main(["prove", "handwritten:wrong", "--max-n", "3"]) == 1
    out = capsys.readouterr().out
    assert "gather-topk-unweighted (linearized form) differs from evit (original form)" in out
    assert main(["prove", "handwritten:wrong", "--max-n", "3", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["candidate"] == {"name": "gather-topk-unweighted", "form": "linearized form"}
    assert data["reference"] == {"name": "evit", "form": "original form"} and not data["ok"]
    assert main(["check", "handwritten:wrong", "--examples", "50"]) == 1
    assert "differs from evit (torch reference" in capsys.readouterr().out
