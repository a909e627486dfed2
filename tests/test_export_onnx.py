"""ONNX: one exported file per size runs in onnxruntime at B = 1 and B > 1 (dynamic batch) and equals the
official torch code (ties: the stable reference); its node types are all in the documented allow-list; and
`linearize export` writes such a file or exits 2 on bad input."""

from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest
import torch

import linearize as L
from linearize import reference as R
from linearize.cli import main
from linearize.export.onnx import ALLOWED, DATA_DEPENDENT, export_onnx, forbidden_ops, op_types


def _inputs(b, n, c, h, seed, ties=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n + 1, c, generator=g)
    attn = (torch.randint(0, 3, (b, h, n + 1, n + 1), generator=g).float() / 4 if ties
            else torch.rand(b, h, n + 1, n + 1, generator=g))
    return x, attn


def _run(session, x, attn):
    return torch.from_numpy(session.run(None, {"x": x.numpy(), "attn": attn.numpy()})[0])


CASES = [("evit", 16, 11, None), ("topk", 16, 11, None), ("evit", 196, 138, None), ("evit", 7, 7, None),
         ("evit", 30, 12, 13), ("topk", 1, 1, None)]


@pytest.fixture(scope="module", params=CASES, ids=[f"{c[0]}-n{c[1]}-k{c[2]}-opset{c[3]}" for c in CASES])
def exported(request, tmp_path_factory):
    name, n, k, opset = request.param
    path = tmp_path_factory.mktemp("onnx") / f"{name}.onnx"
    module = L.to_module(L.programs.get(name), N=n, k=k, C=8, H=3)
    model = export_onnx(module, str(path), opset=opset)
    return name, n, k, opset, model, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnxruntime_equals_the_official_code_at_two_batch_sizes(exported):
    name, n, k, _, _, session = exported
    for b in (1, 4):
        x, attn = _inputs(b, n, 8, 3, b)
        want = R.REFERENCES[name]["official"](x, attn, k)
        got = _run(session, x, attn)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert torch.equal(got[:, : k + 1], want[:, : k + 1])  # the kept rows are exact


def test_onnxruntime_on_ties_equals_the_stable_reference(exported):
    name, n, k, _, _, session = exported
    for b in (1, 3):
        x, attn = _inputs(b, n, 8, 3, 10 + b, ties=True)
        torch.testing.assert_close(_run(session, x, attn), R.REFERENCES[name]["stable"](x, attn, k),
                                   rtol=1e-5, atol=1e-5)


def test_only_allowed_node_types(exported):
    _, _, _, opset, model, _ = exported
    types = op_types(model)
    assert not forbidden_ops(model, ALLOWED), types
    assert not set(types) & DATA_DEPENDENT
    assert not set(types) & {"TopK", "Sort", "Gather", "GatherElements", "GatherND", "ScatterElements", "NonZero"}
    if opset is not None:
        assert any(o.version == opset for o in model.opset_import if o.domain in ("", "ai.onnx"))


def test_the_batch_axis_is_dynamic_and_the_rest_static(exported):
    _, n, _, _, model, _ = exported
    x = next(i for i in model.graph.input if i.name == "x")
    dims = x.type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value
    assert [d.dim_value for d in dims[1:]] == [n + 1, 8]


# --- the command ---------------------------------------------------------------------------------------------
def test_cli_writes_a_checked_model(tmp_path, capsys):
    out = tmp_path / "evit.onnx"
    assert main(["export", "evit", "--onnx", str(out), "--n", "20", "--k", "14", "--c", "6", "--h", "2"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "batch axis dynamic" in text and "onnxruntime" in text
    model = onnx.load(str(out))
    assert not forbidden_ops(model)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x, attn = _inputs(3, 20, 6, 2, 0)
    torch.testing.assert_close(_run(session, x, attn), R.evit(x, attn, 14), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("argv,message", [
    (["--n", "20", "--k", "21"], "k out of range"),
    (["--n", "20", "--k", "0"], "size k must be a positive integer"),
    (["--n", "0", "--k", "1"], "positive integer"),
    (["--n", "20", "--k", "5", "--opset", "9"], "--opset"),
    (["--n", "20"], "--k"),
    (["--k", "5"], "--n"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main(["export", "evit", "--onnx", str(tmp_path / "m.onnx"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("linearize: error:") and message in err and "\n" not in err
    assert not (tmp_path / "m.onnx").exists()


def test_cli_unknown_program_and_missing_folder(tmp_path, capsys):
    assert main(["export", "nope", "--onnx", str(tmp_path / "m.onnx"), "--n", "4", "--k", "2"]) == 2
    assert main(["export", "evit", "--onnx", str(tmp_path / "no" / "m.onnx"), "--n", "4", "--k", "2"]) == 2
    err = capsys.readouterr().err
    assert "unknown program" in err and "no such directory" in err


def test_a_reduction_from_the_op_table_exports(tmp_path):
    """amax (POMT combines heads with it) is generated from its op-table entry and written as ReduceMax."""
    from test_export import max_heads
    module = L.to_module(max_heads(), N=6, C=4, H=3)
    model = export_onnx(module, str(tmp_path / "m.onnx"))
    assert "ReduceMax" in op_types(model) and not forbidden_ops(model)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for b in (1, 3):
        x, attn = _inputs(b, 6, 4, 3, b)
        torch.testing.assert_close(_run(session, x, attn), module(x, attn))
