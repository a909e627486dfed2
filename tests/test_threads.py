"""torch thread counts: compile(threads="auto") runs calls under SMALL_CALL input elements on one thread and
larger ones on torch's setting, sets the count only around the call and restores it, and never changes a result;
`linearize eval --threads` passes the choice on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import linearize as L
from linearize.cli import main
from linearize.eval import compiled
from linearize.eval.compiled import SMALL_CALL, on_threads
from linearize.reference import evit_stable

LINEARIZED = L.linearize(L.programs.get("evit")).result


def _inputs(b=2, n=8, c=3, h=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n + 1, c, generator=g, dtype=torch.float64), torch.rand(b, h, n + 1, n + 1, generator=g,
                                                                                  dtype=torch.float64)


@pytest.fixture
def settings(monkeypatch):
    """Every torch.set_num_threads call, in order (the real one still runs)."""
    calls: list[int] = []
    real, initial = torch.set_num_threads, torch.get_num_threads()

    def spy(n: int) -> None:
        calls.append(n)
        real(n)
    monkeypatch.setattr(torch, "set_num_threads", spy)
    yield calls
    real(initial)


def test_on_threads_sets_the_count_for_the_call_and_restores_it(settings):
    before = torch.get_num_threads()
    other = 1 if before > 1 else 2
    assert on_threads(other, torch.get_num_threads) == other and torch.get_num_threads() == before
    with pytest.raises(ZeroDivisionError):
        on_threads(other, lambda: 1 / 0)
    assert torch.get_num_threads() == before and settings == [other, before, other, before]


@pytest.mark.parametrize("planned", [True, False])
def test_auto_uses_one_thread_below_the_threshold_only(settings, monkeypatch, planned):
    torch.set_num_threads(2)
    settings.clear()
    x, attn = _inputs()
    f = L.compile(LINEARIZED, "torch", planned=planned)
    small = f(x=x, attn=attn, k=3)
    assert settings == [1, 2] and torch.get_num_threads() == 2  # one thread for the call, then torch's two
    settings.clear()
    elements = x.numel() + attn.numel()
    monkeypatch.setattr(compiled, "SMALL_CALL", elements)  # the same inputs are now a large call
    large = L.compile(LINEARIZED, "torch", planned=planned)(x=x, attn=attn, k=3)
    assert settings == [] and torch.equal(small, large)
    np.testing.assert_allclose(small.numpy(), evit_stable(x, attn, 3).numpy(), rtol=1e-12, atol=1e-12)


def test_the_threshold_counts_the_input_elements():
    f = L.compile(LINEARIZED, "torch")
    below, at = SMALL_CALL - 1, SMALL_CALL
    assert f.thread_count((((below,),), (3,), None)) == 1 and f.thread_count((((at,),), (3,), None)) is None
    assert f.thread_count((((7, 100), (7, 3, 100, 100)), (3,), None)) == 1  # 700 + 210,000 elements


@pytest.mark.parametrize("threads, expected", [(None, []), (1, [1, 2]), (3, [3, 2])])
def test_an_explicit_count_is_used_for_every_call(settings, threads, expected):
    torch.set_num_threads(2)
    settings.clear()
    x, attn = _inputs()
    L.compile(LINEARIZED, "torch", threads=threads)(x=x, attn=attn, k=3)
    assert settings == expected


def test_numpy_ignores_threads_and_bad_counts_are_refused(settings):
    x, attn = _inputs()
    L.compile(LINEARIZED, "numpy", threads=1)(x=x.numpy(), attn=attn.numpy(), k=3)
    assert settings == []
    for bad in (0, -1, "many", 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            L.compile(LINEARIZED, "torch", threads=bad)


def test_eval_threads(capsys, tmp_path):
    x, attn = _inputs()
    np.savez(tmp_path / "in.npz", x=x.numpy(), attn=attn.numpy())
    argv = ["eval", "evit", "--inputs", str(tmp_path / "in.npz"), "--k", "3", "--form", "linearized",
            "--backend", "torch"]
    outs = []
    for threads in ("auto", "1", "2"):
        assert main([*argv, "--out", str(tmp_path / f"{threads}.npz"), "--threads", threads]) == 0
        outs.append(np.load(tmp_path / f"{threads}.npz")["out"])
    assert all(np.array_equal(outs[0], o) for o in outs)
    assert main([*argv, "--out", str(tmp_path / "o.npz"), "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err
