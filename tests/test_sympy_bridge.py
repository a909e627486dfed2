"""The SymPy bridge gives the evaluator's values (ties included), and the LaTeX is well formed and readable."""

import re
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import linearize as L
from linearize.cli import main
from linearize.show.latex import derivation_latex, program_latex
from linearize.show.sympy_bridge import sympy_latex, to_sympy

LINEARIZED = {name: L.linearize(L.programs.get(name)) for name in ("evit", "topk")}


def instance(seed: int, N: int, C: int, H: int, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Dyadic values, so that float64 and SymPy's exact arithmetic agree; few distinct values, so ties are common."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-8, 9, (N + 1, C)) / 8
    attn = rng.integers(0, 3, (H, N + 1, N + 1)) / 4
    if ties:
        attn[:] = attn[:, :, :1]  # every token gets the same CLS attention
    return x, attn


def check(name: str, seed: int, N: int, C: int, H: int, k: int, ties: bool = False) -> None:
    p = LINEARIZED[name].result
    x, attn = instance(seed, N, C, H, ties)
    want = L.compile(p)(x=x[None], attn=attn[None], k=k)[0]
    got = to_sympy(p).evaluate({"x": x, "attn": attn, "k": k})
    np.testing.assert_array_equal(got, want)
    # and the original program agrees, so the comparison is against the right thing
    np.testing.assert_array_equal(L.compile(L.programs.get(name))(x=x[None], attn=attn[None], k=k)[0], want)


@settings(max_examples=25)
@given(st.sampled_from(["evit", "topk"]), st.integers(0, 2**16), st.integers(2, 5), st.integers(1, 2),
       st.sampled_from([1, 2, 4]), st.data())
def test_linearized_programs_match_the_evaluator(name: str, seed: int, N: int, C: int, H: int, data) -> None:
    check(name, seed, N, C, H, data.draw(st.integers(1, N - 1)))


@pytest.mark.parametrize("name", ["evit", "topk"])
def test_all_keys_tied(name: str) -> None:
    check(name, 3, 4, 2, 2, 2, ties=True)


@pytest.mark.parametrize("name", ["evit", "topk"])
def test_early_return(name: str) -> None:
    check(name, 5, 3, 2, 1, 3)


def test_the_form_of_evit() -> None:
    form = to_sympy(LINEARIZED["evit"].result)
    assert [s.name for s in form.indices] == ["t", "c"]
    assert list(form.definitions) == ["cls_attn", "num_greater", "rank"]
    N = form.sizes["N"]
    i, j = sp.Symbol("i", integer=True), sp.Symbol("j", integer=True)
    cls_attn, rank, num_greater = (sp.IndexedBase(n) for n in ("cls_attn", "rank", "num_greater"))
    eq = form.definitions["rank"]
    assert eq.lhs == rank[i]
    assert eq.rhs == num_greater[i] + sp.Sum(sp.KroneckerDelta(cls_attn[j], cls_attn[i]), (j, 0, i - 1))
    assert form.definitions["num_greater"].rhs == sp.Sum(sp.Heaviside(cls_attn[j] - cls_attn[i], 0), (j, 0, N - 1))
    assert form.expr.has(sp.IndexedBase("x")[i + 1, sp.Symbol("c", integer=True)])
    assert form.early_returns[0][0] == sp.Eq(form.sizes["k"], N)


def test_the_original_program_prints() -> None:
    form = to_sympy(L.programs.get("evit"))
    text = str(form.expr)
    assert "topk(cls_attn, k)" in text and "gather(" in text and "complement(" in text
    assert r"\operatorname{topk}" in sympy_latex(form.expr)
    assert list(form.definitions) == ["cls_attn"]


def test_heaviside_and_delta_at_zero() -> None:
    (N,) = L.sizes("N")
    key = L.tensor("key", N)
    i, j = L.index("i", N), L.index("j", N)
    h = to_sympy(L.heaviside(key[i] - key[j]))
    base = h.inputs["key"]
    si, sj = sp.Symbol("i", integer=True), sp.Symbol("j", integer=True)
    assert h.expr == sp.Heaviside(base[si] - base[sj], 0)
    y = sp.Rational(3, 8)
    assert h.expr.subs({base[si]: y, base[sj]: y}) == 0
    assert h.expr.subs({base[si]: y + 1, base[sj]: y}) == 1
    assert h.evaluate({"key": np.array([0.5, 0.5]), "i": 0, "j": 1}) == 0
    d = to_sympy(L.delta(key[i] - key[j]))
    assert d.expr == sp.KroneckerDelta(base[si], base[sj])
    assert d.evaluate({"key": np.array([0.5, 0.5]), "i": 0, "j": 1}) == 1
    assert to_sympy(L.delta(key[i])).expr == sp.KroneckerDelta(base[si], 0)
    # the whole comparison matrix, ties included, against the evaluator
    p = L.program("cmp", [key], L.stack_over(i, L.stack_over(j, L.heaviside(key[i] - key[j])
                                                               + 2.0 * L.delta(key[i] - key[j]))))
    k = np.array([0.25, 0.5, 0.25, 0.0])
    np.testing.assert_array_equal(to_sympy(p).evaluate({"key": k}), L.compile(p)(key=k[None])[0])


def test_sum_limits_are_inclusive_and_ragged_sums_match() -> None:
    N, C = L.sizes("N C")
    key, X = L.tensor("key", N), L.tensor("X", N, C)
    i = L.index("i", N)
    j, j2 = L.index("j", i), L.index("j", i + 1, N)
    form = to_sympy(L.sum_over(i, key[i]))
    si = sp.Symbol("i", integer=True)
    assert form.expr == sp.Sum(form.inputs["key"][si], (si, 0, form.sizes["N"] - 1))
    body = L.sum_over(j, key[j] * X[j]) - L.sum_over(j2, L.heaviside(key[j2] - key[i]) * X[j2])
    p = L.program("ragged", [key, X], L.stack_over(i, body))
    f = to_sympy(p, indices=("i", "c"))  # the rows' index named after the stacked variable
    sj = sp.Symbol("j", integer=True)
    assert {s.limits[0] for s in f.expr.atoms(sp.Sum)} == {(sj, 0, si - 1), (sj, si + 1, form.sizes["N"] - 1)}
    rng = np.random.default_rng(1)
    k, x = rng.integers(0, 3, 5) / 4, rng.integers(-4, 5, (5, 2)) / 8
    np.testing.assert_array_equal(f.evaluate({"key": k, "X": x}), L.compile(p)(key=k[None], X=x[None])[0])


def test_import_linearize_does_not_import_sympy() -> None:
    code = ("import sys, linearize; assert 'sympy' not in sys.modules; "
            "linearize.to_sympy; assert 'sympy' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- LaTeX -------------------------------------------------------------------------------------
def well_formed(tex: str) -> None:
    assert tex.startswith("$$\\begin{aligned}") and tex.endswith("\\end{aligned}$$")
    depth = 0
    for ch in re.sub(r"\\[{}]", "", tex):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, "a } closes nothing"
    assert depth == 0, "unbalanced braces"
    assert len(re.findall(r"\\left\W", tex)) == len(re.findall(r"\\right\W", tex))
    envs: list[str] = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+)\}", tex):
        if kind == "begin":
            envs.append(env)
        else:
            assert envs and envs.pop() == env, f"\\end{{{env}}} does not match"
    assert not envs


def parses_with_mathtext(tex: str) -> None:
    """Every cell of every line (and every row of a bmatrix) parses with matplotlib's mathtext."""
    from matplotlib import mathtext
    parser = mathtext.MathTextParser("agg")
    body = tex.removeprefix("$$\\begin{aligned}\n").removesuffix("\n\\end{aligned}$$")
    for line in body.split(" \\\\\n"):
        rows = re.findall(r"\\begin\{bmatrix\} (.*?) \\end\{bmatrix\}", line)
        line = re.sub(r"\\begin\{bmatrix\}.*?\\end\{bmatrix\}", "B", line)
        for cell in [c for c in line.split("&") if c.strip()] + [r for b in rows for r in b.split(" \\\\ ")]:
            parser.parse(f"${cell}$")


@pytest.mark.parametrize("name", ["evit", "topk"])
def test_derive_latex(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["derive", name, "--format", "latex"]) == 0
    tex = capsys.readouterr().out.strip()
    d = LINEARIZED[name]
    assert tex == d._repr_latex_() == derivation_latex(d)
    well_formed(tex)
    parses_with_mathtext(tex)
    for s in d.steps:
        assert f"[{s.pass_name} / {s.rule}]" in tex
    for needle in (r"\sum_{i=0}^{N - 1}", r"\theta\left(", r"\delta\left(", r"\mathrm{rank}_{i}", r"\mathrm{cls\_attn}",
                   r"\operatorname{topk}", r"x_{i + 1}"):
        assert needle in tex, needle
    assert r"H\left(" not in tex and "KroneckerDelta" not in tex  # H is the head count


@pytest.mark.parametrize("name", ["evit", "topk"])
def test_each_step_renders_as_its_line_of_the_derivation(name: str) -> None:
    d = LINEARIZED[name]
    body = derivation_latex(d)
    for s in d.steps:
        tex = s._repr_latex_()
        well_formed(tex)
        lines = tex.removeprefix("$$\\begin{aligned}\n").removesuffix("\n\\end{aligned}$$").split(" \\\\\n")
        assert f"[{s.pass_name} / {s.rule}]" in lines[0]
        # the same equation as in the whole derivation, there numbered
        label = f"[{s.pass_name} / {s.rule}]"
        assert lines[0].replace(label, f"({d.steps.index(s) + 1}) {label}") in body.split(" \\\\\n")


@pytest.mark.parametrize("name", ["evit", "topk"])
def test_program_latex(name: str) -> None:
    for p in (L.programs.get(name), LINEARIZED[name].result):
        tex = program_latex(p)
        assert tex == p._repr_latex_()
        well_formed(tex)
        parses_with_mathtext(tex)
        assert r"\text{if } k = N" in tex


def test_sympy_form_latex() -> None:
    tex = to_sympy(LINEARIZED["evit"].result)._repr_latex_()
    well_formed(tex)
    assert r"\theta\left(" in tex and r"\delta\left(" in tex and r"\mathrm{rank}_{i}" in tex and r"H\left(" not in tex
