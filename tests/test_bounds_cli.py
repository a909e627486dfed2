"""`linearize bounds`: the summary and the file agree with linearize.bounds on the same box; bad input is one line
on stderr and exit 2 with no file written; `linearize.bounds` is loaded lazily and, on numpy, without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import linearize as L
from linearize.cli import main


@pytest.fixture()
def centre(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x, attn = rng.random((2, 9, 4), dtype=np.float32), rng.random((2, 3, 9, 9), dtype=np.float32)
    np.savez("c.npz", x=x, attn=attn)
    return x, attn


def test_the_summary_and_the_file_are_the_bounds_of_the_box(centre, capsys):
    x, attn = centre
    eps = np.float32(0.02)
    assert main(["bounds", "evit", "--inputs", "c.npz", "--eps", "0.02", "--keep-rate", "0.7", "--out", "b.npz"]) == 0
    text = capsys.readouterr().out
    want = L.bounds(L.programs.get("evit"), {"x": x - eps, "attn": attn - eps}, {"x": x + eps, "attn": attn + eps},
                    k=6)
    with np.load("b.npz") as saved:
        np.testing.assert_array_equal(saved["lower"], want.lower)
        np.testing.assert_array_equal(saved["upper"], want.upper)
        np.testing.assert_array_equal(saved["rank_lower"], want.rank_lower)
        np.testing.assert_array_equal(saved["status"], want.status)
    s = want.summary()
    assert f"{s['kept']} certainly kept, {s['dropped']} certainly dropped, {s['undecided']} undecided" in text
    assert f"mean {s['mean_width']:.4g}, max {s['max_width']:.4g}" in text
    assert "k = 6" in text and "wrote b.npz" in text


def test_json_and_per_input_widths(centre, capsys):
    x, attn = centre
    assert main(["bounds", "topk", "--inputs", "c.npz", "--eps-x", "0", "--eps-attn", "0.05", "--k", "3",
                 "--json", "--ties", "stable", "--backend", "torch"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = L.bounds(L.programs.get("topk"), {"attn": attn - np.float32(0.05)}, {"attn": attn + np.float32(0.05)}, x=x,
                    k=3, ties="stable")
    s = want.summary()
    assert got["eps"] == {"x": 0.0, "attn": 0.05} and got["k"] == 3 and got["shape"] == [2, 4, 4]
    assert (got["kept"], got["dropped"], got["undecided"]) == (s["kept"], s["dropped"], s["undecided"])
    assert got["mean_width"] == pytest.approx(s["mean_width"], rel=1e-6)


def test_naive_is_wider(centre, capsys):
    assert main(["bounds", "evit", "--inputs", "c.npz", "--eps", "0.05", "--k", "4", "--json"]) == 0
    tight = json.loads(capsys.readouterr().out)
    assert main(["bounds", "evit", "--inputs", "c.npz", "--eps", "0.05", "--k", "4", "--json", "--naive"]) == 0
    naive = json.loads(capsys.readouterr().out)
    assert tight["undecided"] > 0 and naive["mean_width"] > 2 * tight["mean_width"]


BAD = {
    "no eps": (["--k", "3"], "no half-width for input x"),
    "negative eps": (["--eps", "-1", "--k", "3"], "finite number >= 0"),
    "nan eps": (["--eps", "nan", "--k", "3"], "finite number >= 0"),
    "k above N": (["--eps", "0.1", "--k", "9"], "k out of range"),
    "keep rate": (["--eps", "0.1", "--keep-rate", "2"], "keep rate"),
    "no k": (["--eps", "0.1"], "--k"),
    "missing array": (["--eps", "0.1", "--k", "3", "--inputs", "x_only.npz"], "no array 'attn'"),
    "NaN centre": (["--eps", "0.1", "--k", "3", "--inputs", "nan.npz"], "attn contains NaN"),
    "unwritable": (["--eps", "0.1", "--k", "3", "--out", "no/such/dir/b.npz"], "cannot write"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_exit_2(centre, capsys, case):
    x, attn = centre
    np.savez("x_only.npz", x=x)
    np.savez("nan.npz", x=x, attn=np.where(attn > 0.5, np.nan, attn))
    argv, fragment = BAD[case]
    if "--inputs" not in argv:
        argv = [*argv, "--inputs", "c.npz"]
    assert main(["bounds", "evit", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("linearize: error: ") and err.count("\n") == 1 and fragment in err, err


def test_bounds_is_lazy_and_needs_no_torch_on_numpy():
    code = ("import sys, numpy as np, linearize as L; assert 'torch' not in sys.modules; "
            "x = np.zeros((1, 5, 2)); a = np.zeros((1, 1, 5, 5)); "
            "b = L.bounds(L.programs.get('evit'), {'x': x}, {'x': x + 1}, attn=a, k=2); "
            "assert b.upper.shape == (1, 4, 2); "
            "assert not {'torch', 'sympy', 'hypothesis'} & set(sys.modules), sorted(sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


def test_other_programs_and_sizes(tmp_path, monkeypatch, capsys):
    """POMT takes --size r=...; DynamicViT's keep rate is floored, as its official code does."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    x, attn, v = rng.random((2, 9, 4)), rng.random((2, 3, 9, 9)) + 0.5, rng.random((2, 3, 9, 2))
    np.savez("p.npz", x=x, attn=attn, v=v)
    np.savez("d.npz", x=x, score=rng.random((2, 8)))
    assert main(["bounds", "pomt", "--inputs", "p.npz", "--eps", "0.01", "--size", "r=3", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = L.bounds(L.programs.get("pomt"), {"x": x - 0.01, "attn": attn - 0.01, "v": v - 0.01},
                    {"x": x + 0.01, "attn": attn + 0.01, "v": v + 0.01}, r=3)
    assert got["sizes"] == {"r": 3} and got["shape"] == list(want.lower.shape)
    assert got["mean_width"] == pytest.approx(want.summary()["mean_width"])
    assert main(["bounds", "dynamicvit", "--inputs", "d.npz", "--eps", "0.01", "--keep-rate", "0.7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sizes"] == {"k": 5}  # int(0.7 * 8)
    assert main(["bounds", "pomt", "--inputs", "p.npz", "--eps", "0.01", "--k", "3"]) == 2
    assert "takes no k" in capsys.readouterr().err
