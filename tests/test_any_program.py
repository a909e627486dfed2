"""check and prove for any program: inputs, roles and sizes from the signature (a score vector, a value tensor, a
size called `keep`), references by module:function from the command line, the user's own arrays, exact division,
negated keys; and the exit codes: 2 with one line for what cannot be done, never 3 (a bug) on these inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from handwritten import dyn, dyn_bottom, dyn_reference, dyn_reference_bottom, dyn_wrong_reference, evit_mean

import linearize as L
from linearize.cli import main
from linearize.programs import get
from linearize.verify.prove import ProveError, prove
from linearize.verify.regions import analyze

# --- roles ------------------------------------------------------------------------------------------------------


def test_roles_default_and_declared():
    p = get("evit")
    assert p.role("x") == "feature" and p.role("attn") == "score" and p.roles == {}
    d = dyn()
    assert [d.role(n) for n in ("x", "score", "v")] == ["feature", "score", "value"] and d.features == ("x",)
    with pytest.raises(L.IRError, match="role"):
        L.program("bad", list(d.inputs), d.output, sizes={L.size("keep"): (1, 2)}, roles={"v": "weight"})


def test_the_compared_entries_are_found_through_views_signs_and_constant_indices():
    a = analyze(L.linearize(get("evit")).result)
    assert a.scores == ("attn",) and a.linear == ("x",) and {s.name for s in a.averaged} == {"H"}
    bottom = analyze(L.linearize(dyn_bottom()).result)
    assert {bottom.sign(r) for r in bottom.compared} == {-1}  # the keys are -score: a negated read
    assert not bottom.problems


# --- a DynamicViT-like program: a score vector, a value tensor, the size `keep` --------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_check_draws_the_programs_own_inputs(backend):
    lin = L.linearize(dyn()).result
    result = L.check(lin, dyn_reference, examples=150, backend=backend)
    assert result.ok and result.examples == 150
    bad = L.check(lin, dyn_wrong_reference, examples=150, backend=backend)
    assert not bad.ok and set(bad.counterexample.inputs) == {"x", "score", "v"}
    assert set(bad.counterexample.sizes) == {"B", "N", "C", "keep"}


def test_prove_against_its_original_and_against_a_torch_function():
    result = prove(dyn(), max_n=5)
    assert result.ok and result.reference == {"name": "dyn", "form": "original form"}
    assert result.sizes == {"N": "1..5", "keep": "every value, 1 <= keep <= N - 1",
                            "C": "every value (channel-generic)"}
    assert result.regions == sum(L.verify.prove.fubini(n) * (n - 1) for n in range(2, 6))
    against_fn = prove(dyn(), dyn_reference, max_n=5, reference_name="handwritten:dyn_reference")
    assert against_fn.ok and against_fn.reference == {"name": "handwritten:dyn_reference", "form": "torch function"}
    assert "polynomial" in against_fn.assumption and against_fn.regions == result.regions
    wrong = prove(dyn(), dyn_wrong_reference, max_n=4)
    assert not wrong.ok and wrong.counterexample.rows


def test_bottom_k_is_a_negated_key():
    assert prove(dyn_bottom(), max_n=5).ok
    assert prove(dyn_bottom(), dyn_reference_bottom, max_n=5).ok
    assert not prove(dyn_bottom(), dyn_reference, max_n=4).ok  # bottom-k is not top-k
    assert L.check(L.linearize(dyn_bottom()).result, dyn_reference_bottom, examples=100).ok


def test_cli_check_and_prove_a_program_with_other_inputs_against_a_module_function(capsys):
    argv = ["handwritten:dyn", "--reference", "handwritten:dyn_reference"]
    assert main(["check", *argv, "--examples", "100"]) == 0
    out = capsys.readouterr().out
    assert "dyn (linearized form) equals handwritten:dyn_reference (torch function)" in out
    assert main(["prove", *argv, "--max-n", "4"]) == 0
    out = capsys.readouterr().out
    assert "dyn (linearized form) equals handwritten:dyn_reference (torch function)" in out
    assert "assuming the torch function" in out and "keep: every value" in out
    assert main(["prove", "handwritten:dyn", "--max-n", "4", "--json"]) == 0  # against its own original form
    data = json.loads(capsys.readouterr().out)
    assert data["reference"] == {"name": "dyn", "form": "original form"} and data["ok"]
    assert main(["check", "handwritten:dyn", "--reference", "handwritten:dyn_wrong_reference", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["reference"] == {"name": "handwritten:dyn_wrong_reference", "form": "torch function"}
    assert main(["prove", "handwritten:dyn", "--reference", "handwritten:dyn_wrong_reference", "--max-n", "3"]) == 1
    assert "differs from handwritten:dyn_wrong_reference" in capsys.readouterr().out


def test_check_on_the_users_own_arrays(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x, score, v = rng.random((2, 6, 3)), rng.random((2, 5)), rng.random((2, 6, 3))
    np.savez(tmp_path / "data.npz", x=x, score=score, v=v)
    argv = ["check", "handwritten:dyn", "--reference", "handwritten:dyn_reference", "--examples", "20"]
    assert main([*argv, "--inputs", str(tmp_path / "data.npz")]) == 0
    assert "your inputs (4 sets) and 20 examples" in capsys.readouterr().out  # keep = 1..4 on N = 5
    np.savez(tmp_path / "k2.npz", x=x, score=score, v=v, keep=2)
    assert main([*argv, "--inputs", str(tmp_path / "k2.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["inputs"] == 1
    np.savez(tmp_path / "bad.npz", x=x, score=score, v=v, keep=7)
    assert main([*argv, "--inputs", str(tmp_path / "bad.npz")]) == 2  # keep out of range: a usage error
    assert "keep out of range" in capsys.readouterr().err
    wrong = ["check", "handwritten:dyn", "--reference", "handwritten:dyn_wrong_reference"]
    assert main([*wrong, "--inputs", str(tmp_path / "data.npz")]) == 1
    assert "counterexample on your inputs" in capsys.readouterr().out
    np.savez(tmp_path / "missing.npz", x=x, score=score)
    assert main([*argv, "--inputs", str(tmp_path / "missing.npz")]) == 2
    assert "no array 'v'" in capsys.readouterr().err


def test_check_finds_a_difference_on_the_users_arrays_and_names_them():
    rng = np.random.default_rng(1)
    arrays = {"x": rng.random((1, 5, 2)).astype(np.float32), "attn": rng.random((1, 3, 5, 5)).astype(np.float32)}
    lin = L.linearize(get("evit")).result
    assert L.check(lin, "evit", inputs=[arrays], examples=10).inputs == 4
    result = L.check(lin, "topk", inputs=[{**arrays, "k": 2}], examples=10)
    assert not result.ok and result.counterexample.draw == "inputs" and "output shape" in result.counterexample.problem


# --- exact arithmetic ---------------------------------------------------------------------------------------------
def test_a_division_by_a_size_is_proved_exactly():
    from handwritten import evit_mean_reference
    result = prove(evit_mean(), max_n=4)
    assert result.ok and result.exact == "rational"
    assert prove(evit_mean(), evit_mean_reference, max_n=4).ok
    # a mean of the dropped tokens is not their sum: refuted, exactly
    assert not prove(evit_mean(), get("evit"), max_n=3).ok
    assert L.check(L.linearize(evit_mean()).result, evit_mean_reference, examples=100).ok


def test_the_exact_evaluator_agrees_with_float64_and_divides_exactly():
    from fractions import Fraction

    from linearize.verify.exact import evaluate
    lin = L.linearize(evit_mean()).result
    rng = np.random.default_rng(2)
    x, attn = rng.integers(0, 5, (3, 6, 2)).astype(float), rng.integers(0, 4, (3, 1, 6, 6)).astype(float)
    exact = evaluate(lin, {"x": x, "attn": attn}, {"k": 2})
    np.testing.assert_allclose(exact.astype(float), L.compile(lin)(x=x, attn=attn, k=2), rtol=1e-12)
    fused = exact[:, -1]
    assert all(isinstance(v, int | Fraction) for v in fused.ravel()) and any(
        isinstance(v, Fraction) and v.denominator == 3 for v in fused.ravel())  # sums divided by N - k = 3


# --- exit codes ----------------------------------------------------------------------------------------------------
def _unlowerable() -> L.Program:
    """Rows of x (N + 1 of them, CLS included) picked by an argsort of N scores: no rule lowers a gather whose rows
    and keys differ in length (argsort-gather needs them to agree)."""
    N, C, k = L.sizes("N C k")
    x, s = L.tensor("x", N + 1, C), L.tensor("s", N)
    return L.program("unlowerable", [x, s], L.gather(x, L.argsort(s, descending=True)), sizes={k: (1, N)})


def test_a_program_the_passes_cannot_lower_is_exit_2_and_derive_prints_what_applied(capsys, monkeypatch):
    import handwritten
    monkeypatch.setattr(handwritten, "unlowerable", _unlowerable, raising=False)
    for cmd in ("derive", "show", "check", "prove", "cost"):
        argv = [cmd, "handwritten:unlowerable"] + {"show": ["--form", "linearized"],
                                                   "check": ["--against", "original"]}.get(cmd, [])
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and "cannot be lowered" in err and len(err.strip().splitlines()) == 1, (cmd, err)
    assert main(["derive", "handwritten:unlowerable"]) == 2
    captured = capsys.readouterr()
    assert "def unlowerable" in captured.out and "cannot be lowered" in captured.err  # the steps, then the reason


def test_prove_says_why_it_cannot_settle_and_exits_2(capsys):
    for argv, why in ((["prove", "evit-seed", "--against", "original", "--reference", "evit"], "drop --reference"),
                      (["prove", "evit", "--size", "H"], "NAME=VALUE"),
                      (["prove", "evit", "--size", "M=2"], "no size M"),
                      (["prove", "handwritten:dyn", "--reference", "nope"], "no reference named")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert why in err and "Traceback" not in err


def test_empty_batches_and_channels_give_the_empty_result_and_no_heads_is_an_input_error(capsys, tmp_path):
    from linearize.reference import evit
    for backend in ("numpy", "torch"):
        for program in (get("evit"), L.linearize(get("evit")).result):
            f = L.compile(program, backend)
            for b, c in ((0, 3), (2, 0)):
                x, attn = np.ones((b, 5, c), np.float32), np.ones((b, 2, 5, 5), np.float32)
                want = evit(torch.from_numpy(x), torch.from_numpy(attn), 2)
                assert tuple(np.asarray(f(x=x, attn=attn, k=2)).shape) == tuple(want.shape)
            with pytest.raises(L.InputError, match="mean over an empty axis"):
                f(x=np.ones((1, 5, 3), np.float32), attn=np.ones((1, 0, 5, 5), np.float32), k=2)
    np.savez(tmp_path / "h0.npz", x=np.ones((1, 5, 3)), attn=np.ones((1, 0, 5, 5)))
    assert main(["eval", "evit", "--inputs", str(tmp_path / "h0.npz"), "--out", str(tmp_path / "o.npz"),
                 "--k", "2", "--form", "linearized"]) == 2
    assert "empty axis" in capsys.readouterr().err


def test_prove_refuses_a_comparison_it_cannot_settle():
    N, C, k = L.sizes("N C k")
    x, s = L.tensor("x", N + 1, C), L.tensor("s", N)
    i = L.index("i", N)
    thresholded = L.program("thresholded", [x, s], L.sum_over(i, L.heaviside(s[i] - 0.5) * x[i + 1])[None],
                            sizes={k: (1, N)})
    first = L.program("first", [x, s], x[1:2], sizes={k: (1, N)})
    with pytest.raises(ProveError, match="not a comparison of two scores"):
        prove(thresholded, first, max_n=2)
