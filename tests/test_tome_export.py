"""ToMe exported: to_module's generated module and its ONNX file (onnxruntime) equal the official code, return
both outputs, check the program's conditions on values, and use no data-dependent operation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import linearize as L
from linearize.reference import tome

pytest.importorskip("onnxruntime")


def inputs(b: int, t: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, t, 8, generator=g), torch.randn(b, t, 4, generator=g),
            torch.randint(1, 4, (b, t, 1), generator=g).float())


@pytest.mark.parametrize(("t", "r"), [(2, 1), (3, 1), (9, 0), (9, 3), (10, 4), (17, 100), (197, 16)])
def test_to_module_equals_the_official_code(t, r):
    module = L.to_module(L.programs.get("tome"), T=t, C=8, c=4, r=r)
    assert module.outputs == 2 and module.sizes == {"C": 8, "T": t, "c": 4, "r": min(r, (t - 1) // 2)}
    for b in (1, 3):
        x, metric, size = inputs(b, t, seed=t + b)
        got, want = module(x, metric, size), tome(x, metric, size, r)
        assert isinstance(got, tuple) and len(got) == 2
        for g, w in zip(got, want):
            assert g.shape == w.shape
            torch.testing.assert_close(g, w, rtol=2e-6, atol=2e-6)
    if r == 0:
        assert all(g is a for g, a in zip(module(x, metric, size), (x, size)))
    assert "argsort" not in module.source and "gather" not in module.source and "scatter" not in module.source


def test_the_module_checks_the_programs_conditions():
    module = L.to_module(L.programs.get("tome"), T=7, C=8, c=4, r=2)
    x, metric, size = inputs(2, 7)
    zero = metric.clone()
    zero[1, 3] = 0
    with pytest.raises(ValueError, match="metric must have a finite nonzero L2 norm"):
        module(x, zero, size)
    with pytest.raises(ValueError, match="size must be > 0"):
        module(x, metric, -size)


def test_onnx_equals_the_official_code_with_no_data_dependent_op(tmp_path):
    import onnxruntime as ort

    from linearize.export.onnx import ALLOWED, export_onnx, forbidden_ops
    module = L.to_module(L.programs.get("tome"), T=33, C=8, c=4, r=9)
    model = export_onnx(module, str(tmp_path / "tome.onnx"))
    assert forbidden_ops(model, ALLOWED) == []
    session = ort.InferenceSession(str(tmp_path / "tome.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["out_0", "out_1"]
    for b in (1, 4):
        x, metric, size = inputs(b, 33, seed=b)
        got = session.run(None, {"x": x.numpy(), "metric": metric.numpy(), "size": size.numpy()})
        for g, w in zip(got, tome(x, metric, size, 9)):
            np.testing.assert_allclose(g, w.numpy(), rtol=2e-6, atol=2e-6)


def test_cli_export(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "linearize", "export", "tome", *args], capture_output=True,
                              text=True, cwd=tmp_path, timeout=600)
    res = cli("--onnx", "t.onnx", "--size", "T=33", "--size", "c=4", "--size", "r=9", "--c", "8")
    assert res.returncode == 0 and "tome at C = 8, T = 33, c = 4, r = 9" in res.stdout, res.stderr
    assert "onnxruntime at B = 1 and 3 matches" in res.stdout
    res = cli("--onnx", "u.onnx", "--size", "T=33", "--c", "8")
    assert res.returncode == 2 and "needs static sizes c, r" in res.stderr and not (tmp_path / "u.onnx").exists()


def test_the_default_plan_is_data_oblivious():
    """Every aten op of a call of the default plan is elementwise, a reduction (sum, amax: a maximum as a value), a
    matrix product or a static view (test_oblivious's allow-list, plus amax, and pow for the norms' square roots),
    none is data-dependent, and the trace (ops, shapes, strides, arguments) is the same for continuous and tied
    metrics: the same work whatever the values."""
    from test_oblivious import ALLOWED, DATA_DEPENDENT, Recorder

    f = L.compile(L.linearize(L.programs.get("tome")).result, "torch")
    traces = []
    for tied in (False, True):
        x, metric, size = inputs(3, 17, seed=int(tied))
        if tied:  # duplicated rows of exact norm: equal similarities in rows and among edge weights
            metric = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])[torch.randint(0, 2, (3, 17))]
        f(x=x, metric=metric, size=size, r=5)  # plans
        with Recorder() as rec:
            f(x=x, metric=metric, size=size, r=5)
        traces.append(rec)
    ops = set(traces[0].ops)
    assert not ops & DATA_DEPENDENT, ops & DATA_DEPENDENT
    assert ops <= ALLOWED | {"amax", "pow", "lift_fresh"}, ops - ALLOWED
    assert traces[0].trace == traces[1].trace
