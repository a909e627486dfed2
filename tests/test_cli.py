"""The `linearize` command: list, show, eval (every form against the torch reference, --k and --keep-rate), and
bad input: exit status 2, exactly one line on stderr starting `linearize: error:`, no traceback, no output file."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from linearize.cli import main
from linearize.reference import REFERENCES


def cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linearize", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_list_names_the_programs():
    res = cli("list")
    assert res.returncode == 0 and res.stderr == ""
    names = [line.split()[0] for line in res.stdout.splitlines() if line.strip()]
    assert {"evit", "topk"} <= set(names)


@pytest.mark.parametrize("argv", [["list"], ["show", "evit"]])
def test_list_and_show_import_neither_torch_nor_sympy(argv):
    code = (f"import sys; from linearize.cli import main; assert main({argv!r}) == 0; "
            "assert 'torch' not in sys.modules and 'sympy' not in sys.modules, "
            "[m for m in ('torch', 'sympy') if m in sys.modules]")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


USER_PROGRAM = """
from linearize import cat, gather, mean, program, sizes, tensor, topk


def my_topk():
    N, C, H, k = sizes("N C H k")
    x, attn = tensor("x", N + 1, C), tensor("attn", H, N + 1, N + 1)
    score = mean(attn[:, 0, 1:], axis=0)
    return program("my_topk", [x, attn], cat(x[0:1], gather(x[1:], topk(score, k))),
                   sizes={k: (1, N)}, early_returns=[(k, N, x)], meta={"reference": "topk"})
"""


def test_a_users_program_in_the_current_directory(tmp_path):
    # the installed console script, whose sys.path does not hold the current directory by itself
    (tmp_path / "mytopk.py").write_text(USER_PROGRAM)
    script = shutil.which("linearize")
    assert script, "the linearize console script is not installed"
    res = subprocess.run([script, "check", "mytopk:my_topk", "--examples", "20"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert res.returncode == 0 and "my_topk: ok" in res.stdout, res.stderr
    assert "equals topk (torch reference" in res.stdout


def test_a_closed_pipe_is_not_an_error():
    res = subprocess.run(f"{sys.executable} -m linearize derive evit | head -c 1", shell=True, capture_output=True,
                         text=True, timeout=300)
    assert res.stderr == "", res.stderr


def test_show(capsys):
    assert main(["show", "evit"]) == 0
    first, *body = capsys.readouterr().out.splitlines()
    text = "\n".join(body)
    assert first.startswith("def evit(") and "k: 1 <= k <= N" in first
    assert "if k == N: return x" in text and "topk(" in text and "gather(" in text and "complement(" in text
    assert main(["show", "evit", "--form", "linearized"]) == 0
    first, *body = capsys.readouterr().out.splitlines()
    text = "\n".join(body)
    assert first.startswith("def evit(") and "heaviside(" in text and "delta(" in text and "sum<" in text
    assert not any(op in text for op in ("topk(", "gather(", "complement("))


# ----------------------------------------------------------------------------------------------- eval
def make_inputs(b=2, h=3, n=6, c=4, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(b, n + 1, c)).astype(dtype), rng.random((b, h, n + 1, n + 1)).astype(dtype)


def eval_cli(capsys, tmp_path, name, x, attn, *size_args, form="original", backend="numpy"):
    np.savez(tmp_path / "in.npz", x=x, attn=attn)
    out_path = tmp_path / f"out-{form}.npz"
    status = main(["eval", name, "--inputs", str(tmp_path / "in.npz"), "--out", str(out_path), *size_args,
                   "--form", form, "--backend", backend])
    captured = capsys.readouterr()
    assert status == 0 and captured.err == "", captured.err
    with np.load(out_path) as data:
        return data["out"], captured.out


def assert_matches(name, out, x, attn, k):
    ref = REFERENCES[name]["official"](torch.from_numpy(x), torch.from_numpy(attn), k).numpy()
    assert out.shape == ref.shape and out.dtype == x.dtype
    kept = k + 1 if k < x.shape[1] - 1 else k + 2
    assert np.array_equal(out[:, :kept], ref[:, :kept])  # selected rows are copied exactly, in every form
    tol = {np.float32: 1e-5, np.float64: 1e-12}[x.dtype.type]
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("form", ["original", "linearized", "reference"])
@pytest.mark.parametrize("name", ["evit", "topk"])
def test_eval_forms_match_the_reference(capsys, tmp_path, name, form):
    x, attn = make_inputs()
    for k in (1, 3, 5, 6):
        out, said = eval_cli(capsys, tmp_path, name, x, attn, "--k", str(k), form=form)
        assert_matches(name, out, x, attn, k)
        assert f"(k = {k})" in said
        if k == 6:  # k == N returns x unchanged
            assert np.array_equal(out, x)


def test_eval_reference_of_a_hand_linearization_is_the_program_it_claims_to_be(capsys, tmp_path):
    # evit-seed is the seed's hand derivation of EViT: its reference form is EViT's official code
    x, attn = make_inputs()
    out, _ = eval_cli(capsys, tmp_path, "evit-seed", x, attn, "--k", "3", form="reference")
    assert_matches("evit", out, x, attn, 3)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_eval_float32_on_both_backends(capsys, tmp_path, backend):
    x, attn = make_inputs(b=3, h=2, n=9, c=5, dtype=np.float32, seed=1)
    out, _ = eval_cli(capsys, tmp_path, "evit", x, attn, "--k", "4", form="linearized", backend=backend)
    assert out.dtype == np.float32
    assert_matches("evit", out, x, attn, 4)


@pytest.mark.parametrize("rate, n, k", [(0.5, 6, 3), (0.34, 6, 3), (0.1, 6, 1), (1.0, 6, 6), (0.07, 100, 8),
                                        (0.7, 196, 138)])  # k = ceil(R * N) in floating point: 0.07 * 100 > 7
def test_keep_rate(capsys, tmp_path, rate, n, k):
    x, attn = make_inputs(b=1, h=2, n=n, c=2)
    out, said = eval_cli(capsys, tmp_path, "evit", x, attn, "--keep-rate", str(rate))
    assert f"(k = {k})" in said
    assert_matches("evit", out, x, attn, k)


# ------------------------------------------------------------------------------------------ bad input
def _arrays():
    x, attn = make_inputs(b=2, h=2, n=4, c=3)
    nan, inf = attn.copy(), x.copy()
    nan[1, 0, 0, 3], inf[0, 2, 1] = np.nan, np.inf
    return {"good": {"x": x, "attn": attn}, "shapes": {"x": x, "attn": attn[:, :, :4, :4]},
            "rank": {"x": x[0], "attn": attn}, "missing": {"x": x}, "nan": {"x": x, "attn": nan},
            "inf": {"x": inf, "attn": attn}, "batch": {"x": x[:1], "attn": attn},
            "ints": {"x": np.ones((2, 5, 3), np.int64), "attn": np.ones((2, 2, 5, 5), np.int64)}}


def _eval(npz: str, *rest: str) -> list[str]:
    return ["eval", "evit", "--inputs", npz, "--out", "out.npz", *rest]


BAD = {  # name: (argv, a fragment the one line must contain)
    "k-zero": (_eval("good.npz", "--k", "0"), "k out of range"),
    "k-above-N": (_eval("good.npz", "--k", "5"), "k out of range"),
    "k-not-int": (_eval("good.npz", "--k", "2.5"), "--k"),
    "no-k": (_eval("good.npz"), "--k"),
    "keep-rate-above-1": (_eval("good.npz", "--keep-rate", "1.5"), "keep rate"),
    "keep-rate-zero": (_eval("good.npz", "--keep-rate", "0"), "keep rate"),
    "shapes-disagree": (_eval("shapes.npz", "--k", "2"), "shapes disagree"),
    "shapes-disagree-keep-rate": (_eval("shapes.npz", "--keep-rate", "0.5"), "shapes disagree"),
    "wrong-rank": (_eval("rank.npz", "--k", "2"), "rank"),
    "wrong-rank-keep-rate": (_eval("rank.npz", "--keep-rate", "0.5"), "rank"),
    "missing-array": (_eval("missing.npz", "--k", "2"), "attn"),
    "nan-attention": (_eval("nan.npz", "--k", "2"), "attn contains NaN"),
    "inf-features": (_eval("inf.npz", "--k", "2", "--form", "reference"), "x contains"),
    "batch-disagree": (_eval("batch.npz", "--k", "2"), "batch"),
    "integer-arrays": (_eval("ints.npz", "--k", "2"), "floating-point"),
    "unknown-program": (["eval", "nope", "--inputs", "good.npz", "--out", "out.npz", "--k", "2"], "nope"),
    "show-unknown-program": (["show", "nope"], "nope"),
    "unknown-form": (_eval("good.npz", "--k", "2", "--form", "bogus"), "bogus"),
    "unknown-command": (["bogus"], "bogus"),
    "missing-file": (_eval("absent.npz", "--k", "2"), "absent.npz"),
    "not-an-npz": (_eval("text.npz", "--k", "2"), "text.npz"),
    "an-npy": (_eval("array.npy", "--k", "2"), "array.npy"),
    "a-directory": (_eval("folder", "--k", "2"), "folder"),
    "unwritable-out": (["eval", "evit", "--inputs", "good.npz", "--out", "folder/none/out.npz", "--k", "2"],
                       "folder/none/out.npz"),
}


SUBPROCESS = ["k-above-N", "no-k", "missing-array", "unknown-program", "not-an-npz", "unwritable-out"]  # a mix of
# every way an error is raised (InputError, argparse, reading, the registry, writing); main() runs all of them


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder holding the bad command lines' inputs."""
    where = tmp_path_factory.mktemp("bad")
    for name, arrays in _arrays().items():
        np.savez(where / f"{name}.npz", **arrays)
    (where / "text.npz").write_text("not an archive\n")
    np.save(where / "array.npy", np.ones(3))
    (where / "folder").mkdir()
    return where


def check_one_line(case, out, err, status, where):
    assert status == 2, (status, err)
    assert err.startswith("linearize: error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err and out == ""
    assert BAD[case][1] in err, err
    assert not (where / "out.npz").exists()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_in_process(folder, monkeypatch, capsys, case):
    monkeypatch.chdir(folder)
    status = main(BAD[case][0])  # main() returns the status; it does not exit
    captured = capsys.readouterr()
    check_one_line(case, captured.out, captured.err, status, folder)


def test_bad_input_in_a_process(folder):
    procs = {case: subprocess.Popen([sys.executable, "-m", "linearize", *BAD[case][0]], cwd=folder, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for case in SUBPROCESS}
    for case, p in procs.items():
        out, err = p.communicate(timeout=300)
        check_one_line(case, out, err, p.returncode, folder)
