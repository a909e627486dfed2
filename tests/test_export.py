"""to_module(): the generated module against the official torch code, the aten ops it runs, its input checks,
and torch.export / torch.compile / torch.jit.trace with a dynamic batch size.

ONNX (export file, onnxruntime, allow-list) is in test_export_onnx.py.
"""

from __future__ import annotations

import ast

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import linearize as L
from linearize import reference as R
from linearize.eval.compiled import compile as compile_program
from linearize.export import module_source, to_module
from linearize.rewrite.pipelines import PIPELINES

# the aten ops an oblivious forward may run (einsum lowers to permute/view/bmm; `.to(dt)` is _to_copy)
ALLOWED_ATEN = {"aten._to_copy", "aten.add", "aten.sub", "aten.mul", "aten.div", "aten.neg", "aten.gt", "aten.eq",
                "aten.sum", "aten.mean", "aten.bmm", "aten.mm", "aten.permute", "aten.view", "aten.reshape",
                "aten.unsqueeze", "aten.squeeze", "aten.slice", "aten.cat", "aten.expand", "aten.clone",
                "aten._unsafe_view", "aten.alias", "aten.detach", "aten.movedim", "aten.amax"}


class RecordOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def linearized(name: str, pipeline: str = "default") -> L.Program:
    return L.linearize(L.programs.get(name), PIPELINES[pipeline]).result


def inputs(b: int, n: int, c: int, h: int, seed: int, ties: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n + 1, c, generator=g)
    if ties:  # dyadic scores from a few levels: many exact ties, and exact head means
        attn = torch.randint(0, 3, (b, h, n + 1, n + 1), generator=g).float() / 4
    else:
        attn = torch.rand(b, h, n + 1, n + 1, generator=g)
    return x, attn


SIZES = [(1, 1), (2, 1), (5, 1), (5, 4), (9, 5), (16, 11), (16, 16), (50, 35), (196, 138)]


@pytest.mark.parametrize("name", ["evit", "topk"])
@pytest.mark.parametrize("pipeline", ["default", "shared"])
@pytest.mark.parametrize("n,k", SIZES)
def test_equals_official_code(name, pipeline, n, k):
    m = to_module(linearized(name, pipeline), N=n, k=k, C=6, H=3)
    for b, seed in ((1, n), (4, n + 1)):
        x, attn = inputs(b, n, 6, 3, seed)
        want = R.REFERENCES[name]["official"](x, attn, k)
        got = m(x, attn)
        assert got.shape == want.shape and got.dtype == x.dtype
        # the kept rows are one-hot products (exact); the fused token sums in another order
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert torch.equal(got[:, : k + 1], want[:, : k + 1])


@pytest.mark.parametrize("name", ["evit", "topk"])
@pytest.mark.parametrize("n,k", [(5, 2), (9, 5), (16, 11), (30, 29)])
def test_ties_equal_the_stable_reference(name, n, k):
    m = to_module(linearized(name), N=n, k=k, C=4, H=2)
    for b, seed in ((1, 7), (5, 8)):
        x, attn = inputs(b, n, 4, 2, seed, ties=True)
        torch.testing.assert_close(m(x, attn), R.REFERENCES[name]["stable"](x, attn, k), rtol=1e-6, atol=1e-6)


def test_float64_inputs_run_in_float64():
    m = to_module(linearized("evit"), N=9, k=4, C=3, H=2)
    x, attn = inputs(3, 9, 3, 2, 0)
    x, attn = x.double(), attn.double()
    out = m(x, attn)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, R.evit(x, attn, 4))


def test_the_original_program_is_linearized_by_the_top_level_function():
    m = L.to_module(L.programs.get("evit"), n=12, k=7, c=5, h=2)  # names match case-insensitively
    x, attn = inputs(2, 12, 5, 2, 3)
    torch.testing.assert_close(m(x, attn), R.evit(x, attn, 7))
    with pytest.raises(L.IRError, match="data-dependent"):
        to_module(L.programs.get("evit"), N=12, k=7, C=5, H=2)


# --- programs beyond EViT and Top-K: the generated code against the generic evaluator ---------------------
def _custom_programs() -> list[tuple[L.Program, dict[str, int]]]:
    N, C, k = L.sizes("N C k")
    x = L.tensor("x", N + 1, C)
    s = L.tensor("s", N)
    i, r = L.index("i", N), L.index("r", k)
    jr = L.index("j", i, N)  # ragged from below: i <= j < N
    rev = L.define("rev", i, s[N - 1 - i])  # a reversal: the one-hot fallback of an index
    ahead = L.define("ahead", i, L.sum_over(jr, L.heaviside(s[jr] - s[i]) * 2.0 - s[jr] / 4.0))
    firsts = L.stack_over(r, x[0])  # a stack whose body does not use r: a repeated row
    diag = L.sum_over(i, L.delta(s[i] - rev[i]) * x[i + 1])
    out = L.cat(firsts, L.stack_over(i, -(ahead[i] * x[i + 1]) + rev[i] * x[N - i]), diag[None])
    prog = L.program("custom", [x, s], out, sizes={k: (1, N)})
    j2 = L.index("j", N)
    pair = L.program("pair", [s], L.stack_over(i, L.sum_over(j2, L.heaviside(s[i] - s[j2]) * s[j2])) / 3.0)
    return [(prog, {"N": 7, "C": 3, "k": 2}), (prog, {"N": 1, "C": 2, "k": 1}), (pair, {"N": 6}),
            (max_heads(), {"N": 5, "C": 2, "H": 3})]


def max_heads() -> L.Program:
    """POMT-like: heads combined by their maximum (amax, a reduction from the op table), then a weighted sum."""
    N, C, H = L.sizes("N C H")
    x, attn = L.tensor("x", N + 1, C), L.tensor("attn", H, N + 1, N + 1)
    score = L.define("score", L.amax(attn[:, 0, 1:], axis=0))
    i, j = L.index("i", N), L.index("j", N)
    above = L.define("above", i, L.sum_over(j, L.heaviside(score[j] - score[i])))
    return L.program("max_heads", [x, attn], L.sum_over(i, L.delta(above[i]) * x[i + 1])[None])


@pytest.mark.parametrize("case", range(4))
def test_custom_programs_equal_the_generic_evaluator(case):
    prog, sizes = _custom_programs()[case]
    m = to_module(prog, **sizes, dtype=torch.float64)
    g = torch.Generator().manual_seed(case)
    arrays = {n: torch.randint(-2, 3, (3, *shape), generator=g).double() / 2
              for n, shape in m.input_shapes.items()}
    given = {name: v for name, v in sizes.items() if name in prog.given_sizes}
    want = compile_program(prog, "numpy", planned=False)(**{n: a.numpy() for n, a in arrays.items()}, **given)
    np.testing.assert_allclose(m(**arrays).numpy(), want, rtol=1e-12, atol=1e-12)


# --- what the module runs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["evit", "topk", "max_heads"])
@pytest.mark.parametrize("n,k,b", [(16, 11, 1), (16, 11, 4), (49, 20, 2), (16, 16, 3)])
def test_forward_runs_only_oblivious_aten_ops(name, n, k, b):
    prog, sizes = (max_heads(), {}) if name == "max_heads" else (linearized(name), {"k": k})
    m = to_module(prog, N=n, C=4, H=2, validate=False, **sizes)
    x, attn = inputs(b, n, 4, 2, 0)
    with RecordOps() as rec:
        m(x, attn)
    assert rec.ops <= ALLOWED_ATEN, sorted(rec.ops - ALLOWED_ATEN)


def test_nothing_of_size_b_k_n_c_is_built():
    b, n, k, c = 2, 64, 45, 96
    m = to_module(linearized("evit"), N=n, k=k, C=c, H=2, validate=False)
    x, attn = inputs(b, n, c, 2, 0)
    largest = 0

    class Sizes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            nonlocal largest
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, tuple | list) else (out,):
                if isinstance(t, torch.Tensor):
                    largest = max(largest, t.numel())
            return out

    with Sizes():
        m(x, attn)
    assert largest <= max(b * n * n, b * (n + 1) * c, b * 2 * (n + 1) * (n + 1)) < b * k * n * c


def test_the_source_needs_only_torch():
    source, _ = module_source(linearized("evit"), N=16, k=9, C=4, H=2)
    imports = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [alias.name for n in imports for alias in n.names] == ["torch"]
    namespace: dict = {}
    exec(compile(source, "generated.py", "exec"), namespace)  # a fresh namespace, no linearize in it
    m = namespace["EvitOblivious"]()
    x, attn = inputs(2, 16, 4, 2, 1)
    torch.testing.assert_close(m(x, attn), R.evit(x, attn, 9))
    assert "linearize" not in {type(v).__module__.split(".")[0] for v in vars(m).values()}


def test_k_equal_to_n_returns_x_statically():
    m = to_module(linearized("evit"), N=6, k=6, C=3, H=2)
    assert "return x" in m.source and "einsum" not in m.source.split("def forward")[1].split("def check")[0]
    x, attn = inputs(2, 6, 3, 2, 0)
    assert torch.equal(m(x, attn), x)


# --- input checks: at the Python boundary, not inside forward -----------------------------------------------
@pytest.fixture(scope="module")
def evit_module():
    return to_module(linearized("evit"), N=8, k=5, C=3, H=2)


@pytest.mark.parametrize("change,message", [
    (lambda x, a: (x[:, :-1], a), r"x must have shape \[B, 9, 3\]"),
    (lambda x, a: (x, a[:, :1]), r"attn must have shape \[B, 2, 9, 9\]"),
    (lambda x, a: (x[0], a), "x must have shape"),
    (lambda x, a: (x, a[:1]), "disagree"),
    (lambda x, a: (x, a.double()), "disagree"),
    (lambda x, a: (x.long(), a), "floating-point"),
    (lambda x, a: (x, a.clone().fill_(float("nan"))), "attn contains NaN"),
    (lambda x, a: (x.clone().fill_(float("inf")), a), "x contains NaN"),
    (lambda x, a: (x.numpy(), a), "torch.Tensor"),
])
def test_bad_inputs_raise_one_clear_error(evit_module, change, message):
    x, attn = inputs(2, 8, 3, 2, 0)
    with pytest.raises(ValueError, match=message):
        evit_module(*change(x, attn))


def test_missing_and_unexpected_inputs(evit_module):
    x, attn = inputs(2, 8, 3, 2, 0)
    with pytest.raises(ValueError, match="missing input attn"):
        evit_module.check_inputs(x)
    with pytest.raises(ValueError, match="unexpected"):
        evit_module.check_inputs(x, attn, y=x)
    torch.testing.assert_close(evit_module(x=x, attn=attn), R.evit(x, attn, 5))


@pytest.mark.parametrize("sizes,message", [
    ({"N": 8, "k": 5, "C": 3}, "needs static sizes H"),
    ({"N": 8, "k": 9, "C": 3, "H": 2}, "k out of range"),
    ({"N": 8, "k": 0, "C": 3, "H": 2}, "positive integer"),
    ({"N": 8, "k": 2.5, "C": 3, "H": 2}, "positive integer"),
    ({"N": 8, "k": 5, "C": 3, "H": 2, "Q": 1}, "unknown size 'Q'"),
    ({"N": 8, "n": 8, "k": 5, "C": 3, "H": 2}, "given twice"),
])
def test_bad_sizes_fail_at_construction(sizes, message):
    with pytest.raises(L.InputError, match=message):
        to_module(linearized("evit"), **sizes)


# --- tracing, compiling and exporting with a dynamic batch --------------------------------------------------
@pytest.mark.parametrize("k", [5, 8])
def test_torch_export_with_a_dynamic_batch(k):
    m = to_module(linearized("evit"), N=8, k=k, C=3, H=2)
    batch = torch.export.Dim("batch")
    exported = torch.export.export(m, inputs(2, 8, 3, 2, 0), dynamic_shapes={"x": {0: batch}, "attn": {0: batch}})
    for b in (1, 2, 7):
        x, attn = inputs(b, 8, 3, 2, b)
        torch.testing.assert_close(exported.module()(x, attn), R.evit(x, attn, k))


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")  # deprecated in torch 2.9, still in use
def test_jit_trace_at_one_batch_size_runs_at_another():
    m = to_module(linearized("evit"), N=10, k=6, C=3, H=2)
    traced = torch.jit.trace(m, inputs(2, 10, 3, 2, 0))
    for b in (1, 5):
        x, attn = inputs(b, 10, 3, 2, b)
        torch.testing.assert_close(traced(x, attn), R.evit(x, attn, 6))


def test_torch_compile_fullgraph():
    m = to_module(linearized("topk"), N=10, k=6, C=3, H=2)
    compiled = torch.compile(m, fullgraph=True, dynamic=True, backend="eager")
    for b in (2, 5):
        x, attn = inputs(b, 10, 3, 2, b)
        torch.testing.assert_close(compiled(x, attn), R.topk(x, attn, 6))
