"""The checker: planted bugs are found with small counterexamples whose rows really differ; evit and topk pass;
Programs, callables and reference names work on either side; the CLI's exit codes and JSON."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys

import numpy as np
import pytest
import torch
from hypothesis import given

import linearize as L
from linearize import cat, define, delta, heaviside, index, mean, program, sizes, stack_over, sum_over, tensor
from linearize.cli import main
from linearize.programs import get
from linearize.reference import REFERENCES, evit, evit_stable, topk_stable
from linearize.verify.check import GRID, MAX_SIZES, TIE_UNITS, CheckResult, instances

check = L.check  # the lazy export


@functools.cache
def linearized(name: str) -> L.Program:
    return L.linearize(get(name)).result


def evit_variant(name: str = "evit_variant", *, rank_offset: int = 0, weighted: bool = True, strict: bool = True,
                 tie_break: bool = True, descending: bool = True, reversed_order: bool = False,
                 fused_shift: int = 0) -> L.Program:
    """linearize(evit).result written out with the builder, with one planted bug per keyword."""
    N, C, H, k = sizes("N C H k")
    x, attn = tensor("x", N + 1, C), tensor("attn", H, N + 1, N + 1)
    s = define("cls_attn", mean(attn[:, 0, 1:], axis=0))
    i, j, r = index("i", N), index("j", N), index("r", k)
    before = index("j", i)
    step = heaviside if strict else (lambda v: 1.0 - heaviside(-v))  # the planted one is x >= 0
    gap = (lambda a, b: a - b) if descending else (lambda a, b: b - a)
    num_greater = define("num_greater", i, sum_over(j, step(gap(s[j], s[i]))))
    body = num_greater[i] + sum_over(before, delta(s[before] - s[i])) if tie_break else num_greater[i]
    rank = define("rank", i, body)
    target = (k - 1 - r) if reversed_order else (r + rank_offset)
    kept = stack_over(r, sum_over(i, delta(rank[i] - target) * x[i + 1]))
    weight = s[i] * x[i + 1] if weighted else x[i + 1]
    fused = sum_over(i, heaviside(rank[i] - k + 1 - fused_shift) * weight)
    return program(name, [x, attn], cat(x[0:1], kept, fused[None]), sizes={k: (1, N)},
                   early_returns=[(k, N, x)])


BUGS = {
    "rank off by one": dict(rank_offset=1),
    "fused range off by one": dict(fused_shift=1),
    "fused token without its weights": dict(weighted=False),
    "non-strict heaviside (>=)": dict(strict=False),
    "no tie-break": dict(tie_break=False),
    "ascending instead of descending": dict(descending=False),
    "kept rows in reverse order": dict(reversed_order=True),
}


def recompute(candidate: L.Program, ce) -> tuple[np.ndarray, np.ndarray]:
    """Rerun a counterexample: the torch reference it names, and the candidate."""
    x, attn, k = np.asarray(ce.x, np.float32), np.asarray(ce.attn, np.float32), ce.sizes["k"]
    want = REFERENCES["evit"][ce.reference](torch.from_numpy(x), torch.from_numpy(attn), k).numpy()
    return want, L.compile(candidate)(x=x, attn=attn, k=k)


# --- the correct forms pass --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["evit", "topk"])
def test_linearized_forms_pass_300_examples(name):
    result = check(linearized(name), name)
    assert isinstance(result, CheckResult) and result.ok and result
    assert result.examples == 300 and result.counterexample is None and result.seconds > 0


def test_the_builder_variant_without_bugs_passes():
    assert check(evit_variant(), "evit", examples=100).ok


def test_float64_and_the_torch_backend():
    assert check(linearized("evit"), "evit", examples=60, dtype=np.float64).ok
    assert check(linearized("evit"), "evit", examples=60, backend="torch", dtype=torch.float32).ok


# --- planted bugs are found, minimal-ish, and really differ ----------------------------------------------
@pytest.mark.parametrize("bug", BUGS, ids=list(BUGS))
def test_planted_bug_is_found(bug):
    candidate = evit_variant(**BUGS[bug])
    result = check(candidate, "evit")
    assert not result.ok, bug
    ce = result.counterexample
    assert 1 <= result.examples <= 300 and ce.rows and not ce.problem
    assert ce.sizes["B"] == 1 and ce.sizes["N"] <= 4, ce  # shrunk
    want, got = recompute(candidate, ce)
    assert want.shape == got.shape
    for d in ce.rows:
        assert not np.allclose(want[d.batch, d.row], got[d.batch, d.row], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(d.expected, want[d.batch, d.row], rtol=1e-6)
        np.testing.assert_allclose(d.got, got[d.batch, d.row], rtol=1e-6)


def test_a_tie_bug_needs_tie_draws():
    no_tie_break = evit_variant(tie_break=False)
    ce = check(no_tie_break, "evit").counterexample
    assert ce.draw in ("ties", "equal") and ce.reference == "stable"
    assert any(len(set(row)) < len(row) for row in ce.scores)
    assert check(no_tie_break, "evit", ties=False, examples=100).ok  # right on distinct scores


def test_missing_early_return_is_a_shape_mismatch():
    edited = dataclasses.replace(linearized("evit"), early_returns=())  # an edit of the linearized result
    ce = check(edited, "evit").counterexample
    assert ce.sizes["k"] == ce.sizes["N"] == 1 and not ce.rows  # [N + 2, C] where x [N + 1, C] is expected
    assert "output shape [1, 3, 1], expected [1, 2, 1]" in ce.problem


def test_the_counterexample_prints_readably_and_a_seed_reproduces_it():
    bug = evit_variant(weighted=False)
    one, two = check(bug, "evit", seed=7), check(bug, "evit", seed=7)
    assert one.counterexample == two.counterexample
    text = str(one.counterexample)
    assert "sizes: B = 1" in text and "expected" in text and "got" in text and "fused token" in text
    assert json.loads(json.dumps(one.to_dict()))["ok"] is False


# --- either side may be a Program, a callable, a reference name or mapping ----------------------------------
def test_callables_on_either_side():
    f = L.compile(linearized("evit"), "numpy")
    as_callable = lambda x, attn, k: f(x=x.numpy(), attn=attn.numpy(), k=k)  # callables get torch tensors
    assert check(as_callable, "evit", examples=30).ok
    assert check(linearized("evit"), evit_stable, examples=30).ok
    assert check(evit_stable, REFERENCES["evit"], examples=30).ok
    assert check(linearized("topk"), get("topk"), examples=30).ok  # a Program as the reference
    assert not check(evit_stable, topk_stable, examples=30).ok
    assert not check(evit, lambda x, attn, k: x[:, : k + 1] * 2, examples=20).ok


def test_bad_arguments():
    with pytest.raises(TypeError):
        check(linearized("evit"), 42)
    with pytest.raises(ValueError, match="no torch reference"):
        check(linearized("evit"), "nope")
    with pytest.raises(ValueError):
        check(linearized("evit"), "evit", dtype=np.float16)
    with pytest.raises(ValueError):
        check(linearized("evit"), "evit", examples=0)
    with pytest.raises(ValueError):
        check(linearized("evit"), "evit", backend="jax")


@given(instances())
def test_draws_are_in_range_and_ties_stay_ties(inst):
    x, attn, k = inst["inputs"]["x"], inst["inputs"]["attn"], inst["given"]["k"]
    b, n1, c = x.shape
    assert b <= MAX_SIZES["B"] and n1 - 1 <= MAX_SIZES["N"] and c <= MAX_SIZES["C"]
    assert attn.shape[1] <= MAX_SIZES["H"] and 1 <= k <= n1 - 1
    ours = attn[:, :, 0, 1:].mean(axis=1)
    theirs = torch.from_numpy(attn)[:, :, 0, 1:].mean(dim=1).numpy()
    assert np.array_equal(ours, theirs)  # dyadic draws: numpy and torch compute the same scores
    assert np.array_equal(ours, inst["scores"])  # the compared entries are the head means of the CLS row
    if inst["kind"] == "continuous":
        assert all(len(set(row)) == len(row) for row in ours.tolist())
    else:
        assert set(ours.ravel().tolist()) <= {u / GRID for u in TIE_UNITS}


# --- the seed's own linearization ------------------------------------------------------------------------
def test_the_seed_is_refuted():
    ce = check(get("evit-seed"), "evit").counterexample
    assert ce.sizes["N"] == ce.sizes["k"] == 1 and "scores[k]" in ce.problem  # k == N indexes past the end
    seed = L.compile(get("evit-seed"), "torch")
    patched = lambda x, attn, k: x if k == x.shape[1] - 1 else seed(x=x, attn=attn, k=k)
    fused = check(patched, "evit", ties=False).counterexample  # the fused token: wrong on distinct scores
    assert [d.row for d in fused.rows] == [fused.sizes["k"] + 1]

    def kept_rows_only(x, attn, k):  # the seed's kept rows, EViT's fused token
        out = evit_stable(x, attn, k).clone()
        out[:, : k + 1] = patched(x, attn, k)[:, : k + 1]
        return out
    ranks = check(kept_rows_only, "evit").counterexample  # no tie-break: wrong on ties only
    assert ranks.draw != "continuous" and ranks.reference == "stable"


# --- the command ---------------------------------------------------------------------------------------------
def test_cli_exit_codes(capsys, tmp_path, monkeypatch):
    assert main(["check", "topk", "--examples", "30"]) == 0
    assert "ok, 30 examples" in capsys.readouterr().out
    assert main(["check", "evit-seed"]) == 1
    out = capsys.readouterr().out
    assert "counterexample" in out and "reproduce: linearize check evit-seed" in out
    for argv in (["check", "nope"], ["check", "evit", "--examples", "0"], ["check", "evit", "--backend", "jax"],
                 ["check", "evit", "--reference", "nope"], ["check", "evit", "--reference", "no_module:f"],
                 ["check", "evit", "--against", "original", "--reference", "topk"]):
        assert main(argv) == 2, argv
        assert "Traceback" not in capsys.readouterr().err
    # a linearized program's original is its declared reference: evit-seed against evit's original form
    assert main(["check", "evit-seed", "--against", "original"]) == 1
    assert "evit-seed (as written) differs from evit (original form)" in capsys.readouterr().out
    (tmp_path / "mine.py").write_text("from dataclasses import replace\nfrom linearize.programs import get\n"
                                      "P = replace(get('evit'), name='mine')  # no torch reference by that name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", "mine:P"]) == 2
    assert "--against original" in capsys.readouterr().err
    assert main(["check", "mine:P", "--against", "original", "--examples", "30"]) == 0
    sys.modules.pop("mine", None)


def test_cli_json(capsys):
    assert main(["check", "evit", "--examples", "20", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"program", "against", "candidate", "reference", "examples", "inputs", "ok",
                         "counterexample", "seconds"}
    assert data["ok"] and data["examples"] == 20 and data["counterexample"] is None
    assert data["candidate"] == {"name": "evit", "form": "linearized form"}
    assert data["reference"] == {"name": "evit", "form": "torch reference, linearize.reference.evit"}
    assert main(["check", "evit-seed", "--json", "--seed", "1"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and {"sizes", "scores", "rows", "problem"} <= set(data["counterexample"])
