"""The `linearize` command: list, show, eval (every form against the torch reference, --k and --keep-rate), and
bad input: exit status 2, exactly one line on stderr starting `linearize: error:`, no traceback, no output file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

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


@pytest.mark.parametrize("argv", [["derive", "evit", "--format", "json"], ["cost", "evit", "--model", "mpc"],
                                  ["eval", "evit", "--inputs", "in.npz", "--out", "out", "--k", "2", "--form",
                                   "linearized"], ["--version"]])
def test_commands_that_need_no_torch_do_not_import_it(argv, tmp_path):
    x, attn = make_inputs()
    np.savez(tmp_path / "in.npz", x=x, attn=attn)
    code = (f"import sys; from linearize.cli import main\ntry: status = main({argv!r})\nexcept SystemExit as e: "
            "status = e.code\nassert status in (0, None), status\n"
            "assert 'torch' not in sys.modules and 'tqdm' not in sys.modules, 'torch or tqdm imported'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
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
    form = [] if "--form" in rest else ["--form", "original"]
    return ["eval", "evit", "--inputs", npz, "--out", "out.npz", *rest, *form]


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
    "unknown-program": (["eval", "nope", "--inputs", "good.npz", "--out", "out.npz", "--k", "2", "--form", "original"],
                        "nope"),
    "no-form": (["eval", "evit", "--inputs", "good.npz", "--out", "out.npz", "--k", "2"], "--form"),
    "show-unknown-program": (["show", "nope"], "nope"),
    "unknown-form": (_eval("good.npz", "--k", "2", "--form", "bogus"), "bogus"),
    "unknown-command": (["bogus"], "bogus"),
    "missing-file": (_eval("absent.npz", "--k", "2"), "absent.npz"),
    "not-an-npz": (_eval("text.npz", "--k", "2"), "text.npz"),
    "an-npy": (_eval("array.npy", "--k", "2"), "array.npy"),
    "a-directory": (_eval("folder", "--k", "2"), "folder"),
    "unwritable-out": (["eval", "evit", "--inputs", "good.npz", "--out", "folder/none/out.npz", "--k", "2", "--form",
                        "linearized"], "folder/none/out.npz"),
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


# ------------------------------------------------------------------------------------- help and messages
def test_top_level_help_says_what_linearize_does_and_lists_every_command():
    res = cli("--help")
    assert res.returncode == 0 and res.stderr == ""
    text = " ".join(res.stdout.split())
    assert "rewrites the token selection" in text and "heaviside/delta" in text and "Each subcommand" not in text
    from linearize.cli import COMMANDS
    lines = res.stdout.splitlines()
    for name in COMMANDS:  # one line each: the name, then its summary on the same line
        assert any(line.split()[:1] == [name] and len(line.split()) > 1 for line in lines), name


def test_version():
    from importlib.metadata import version

    import linearize
    res = cli("--version")
    assert res.returncode == 0 and res.stdout == f"linearize {version('linearize')}\n"
    assert version("linearize") == linearize.__version__


def _option_actions():
    import argparse

    from linearize.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in [("linearize", parser), *sub.choices.items()]:
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                yield name, p, action


def test_every_option_has_help_and_states_its_default():
    import argparse
    for name, parser, action in _option_actions():
        assert action.help and len(action.help) > 10, (name, action.option_strings)
        if action.required or action.default in (None, False, argparse.SUPPRESS):
            continue  # nothing to state: a required option, an off flag, or one that says what unset means
        shown = parser.formatter_class("x")._get_help_string(action) % {"default": action.default}
        assert f"default: {action.default}" in shown or "(default" in action.help, (name, action.option_strings)
    helps = {n: p.format_help() for n, p, _ in _option_actions()}
    assert "(default: numpy)" in " ".join(helps["eval"].split()) and "(default: 300)" in helps["check"]


def test_eval_without_a_form_says_so(tmp_path):
    x, attn = make_inputs()
    np.savez(tmp_path / "in.npz", x=x, attn=attn)
    res = cli("eval", "evit", "--inputs", "in.npz", "--out", "out.npz", "--k", "2", cwd=tmp_path)
    assert res.returncode == 2 and "--form" in res.stderr and not (tmp_path / "out.npz").exists()


def test_out_is_named_as_written(capsys, tmp_path):
    x, attn = make_inputs()
    np.savez(tmp_path / "in.npz", x=x, attn=attn)
    assert main(["eval", "evit", "--inputs", str(tmp_path / "in.npz"), "--out", str(tmp_path / "o_noext"),
                 "--k", "2", "--form", "linearized"]) == 0
    said = capsys.readouterr().out
    written = [p.name for p in tmp_path.iterdir() if p.name != "in.npz"]
    assert written == ["o_noext.npz"] and f"wrote {tmp_path / 'o_noext.npz'}:" in said


def tied_inputs(b=3, h=2, n=7, c=3):
    """Scores of batch item 1 tie among the kept tokens, of item 2 only among dropped ones (k = 3)."""
    x, attn = make_inputs(b=b, h=h, n=n, c=c)
    attn[:, :, 0, 1:] = np.linspace(0.9, 0.1, n)  # distinct, descending: token t scores above token t + 1
    attn[1, :, 0, 3] = attn[1, :, 0, 1]  # token 3 ties with token 1, both kept
    attn[2, :, 0, 7] = attn[2, :, 0, 6]  # tokens 6 and 7 tie, both dropped
    return x, attn


def test_stable_reference_is_the_stable_code_and_agrees_with_the_linearized_form(capsys, tmp_path):
    x, attn = tied_inputs()
    stable, said = eval_cli(capsys, tmp_path, "evit", x, attn, "--k", "3", form="stable-reference")
    expected = REFERENCES["evit"]["stable"](torch.from_numpy(x), torch.from_numpy(attn), 3).numpy()
    assert np.array_equal(stable, expected) and "evit_stable" in said
    linearized, _ = eval_cli(capsys, tmp_path, "evit", x, attn, "--k", "3", form="linearized")
    np.testing.assert_allclose(linearized, stable, rtol=1e-12, atol=1e-12)


def test_reference_warns_when_ties_decide_the_selection(capsys, tmp_path):
    x, attn = tied_inputs()
    np.savez(tmp_path / "in.npz", x=x, attn=attn)
    argv = ["eval", "evit", "--inputs", str(tmp_path / "in.npz"), "--out", str(tmp_path / "o.npz"), "--form"]
    assert main([*argv, "reference", "--k", "3"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("linearize: warning: tied scores")
    assert "(batch item 1)" in err and "stable-reference" in err and "torch.topk" in err
    for quiet in (["stable-reference", "--k", "3"], ["reference", "--k", "7"], ["linearized", "--k", "3"]):
        assert main([*argv, *quiet]) == 0 and capsys.readouterr().err == "", quiet
    x, attn = make_inputs()  # distinct scores: no warning
    np.savez(tmp_path / "in.npz", x=x, attn=attn)
    assert main([*argv, "reference", "--k", "3"]) == 0 and capsys.readouterr().err == ""


@given(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=7), min_size=1, max_size=4), st.data())
def test_ties_at_selection_are_those_whose_order_changes_the_kept_tokens(rows, data):
    from linearize.commands.eval import ties_at_selection
    n = min(len(r) for r in rows)
    scores = np.array([r[:n] for r in rows], dtype=np.float64)
    k = data.draw(st.integers(1, n))

    def kept(row, lower_first: bool):  # the k best tokens, ties broken one way or the other
        return [t for _, t in sorted((-s, t if lower_first else -t) for t, s in enumerate(row))][:k]

    changes = [b for b, row in enumerate(scores) if kept(row, True) != [-t for t in kept(row, False)]]
    assert ties_at_selection(scores, k) == changes


def test_messages_count_the_axes_of_the_users_array(capsys, tmp_path):
    x, attn = make_inputs(b=2, h=3, n=6, c=4)
    for arrays, axis, size in (({"x": x, "attn": attn[:, :, :6]}, 2, 6), ({"x": x, "attn": attn[..., :6]}, 3, 6),
                               ({"x": x[:, :5], "attn": attn}, 2, 7)):
        np.savez(tmp_path / "in.npz", **arrays)
        assert main(["eval", "evit", "--inputs", str(tmp_path / "in.npz"), "--out", str(tmp_path / "o.npz"),
                     "--k", "2", "--form", "original"]) == 2
        err = capsys.readouterr().err  # axes counted as numpy counts them: attn.shape[axis] == size
        assert arrays["attn"].shape[axis] == size
        assert f"attn axis {axis} " in err and f"has size {size}" in err and "[B, H, N + 1, N + 1]" in err, err


def test_out_of_range_k_names_the_sizes(capsys, tmp_path):
    x, attn = make_inputs(b=1, n=6)
    np.savez(tmp_path / "in.npz", x=x, attn=attn)
    assert main(["eval", "evit", "--inputs", str(tmp_path / "in.npz"), "--out", "o.npz", "--k", "0", "--form",
                 "original"]) == 2
    assert capsys.readouterr().err == "linearize: error: k out of range: need 1 <= k <= N, got k = 0, N = 6\n"


# ----------------------------------------------------------------------------------------------- progress
def on_a_terminal(*args: str) -> tuple[int, str]:
    """Run the command with stdout and stderr on a pseudo-terminal, as a user at a shell would."""
    import fcntl
    import os
    import pty
    import struct
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 24 rows, 120 columns
    proc = subprocess.Popen([sys.executable, "-m", "linearize", *args], stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(timeout=300), b"".join(chunks).decode(errors="replace")


def test_check_shows_progress_on_a_terminal_only():
    status, seen = on_a_terminal("check", "topk", "--examples", "30")
    assert status == 0 and re.search(r"topk: +\d+%.*\d+/30 \[.*example", seen), seen
    assert "topk: ok, 30 examples" in seen
    status, seen = on_a_terminal("check", "topk", "--examples", "30", "--json")
    assert status == 0 and json.loads(seen)["examples"] == 30  # nothing but the JSON object
    res = cli("check", "topk", "--examples", "30")  # piped: no bar
    assert res.returncode == 0 and res.stderr == "" and res.stdout.startswith("topk: ok, 30 examples")


def test_check_progress_says_when_it_shrinks():
    status, seen = on_a_terminal("check", "evit-seed", "--examples", "30")
    assert status == 1 and "evit-seed: shrinking a counterexample" in seen and "reproduce:" in seen


def test_prove_shows_progress_on_a_terminal_only():
    status, seen = on_a_terminal("prove", "topk", "--max-n", "6")  # about a second: the bar refreshes
    total = 1 * 1 + 3 * 2 + 13 * 3 + 75 * 4 + 541 * 5 + 4683 * 6  # weak orderings of n scores, times n values of k
    assert status == 0 and re.search(rf"n = \d: .*/{total} \[.*region", seen), seen
    res = cli("prove", "topk", "--max-n", "4")
    assert res.returncode == 0 and res.stderr == ""
