"""Plain-Python display: programs, derivations and steps print as the notation, SymPy-style, cut for a REPL but
never for print(); heaviside is \\theta in LaTeX (H is the head count) and heaviside(...) in text."""

from __future__ import annotations

import pytest

import linearize as L
from linearize.show.latex import derivation_latex, program_latex

PROGRAMS = ["evit", "topk", "evit-seed"]


def _cut_from(shown: str, full: str, width: int) -> None:
    """Each line of `shown` is the same line of `full`, or its first width - 3 characters and '...'."""
    for line, whole in zip(shown.splitlines(), full.splitlines()):
        assert line == whole or (len(whole) > width and line == whole[:width - 3] + "..."), (line, whole)


@pytest.mark.parametrize("name", PROGRAMS)
def test_a_program_reprs_as_its_notation(name):
    for p in (L.programs.get(name), L.linearize(L.programs.get(name)).result):
        full, shown = str(p), repr(p)
        assert shown.splitlines()[0] == full.splitlines()[0] == p.signature()
        assert all(len(line) <= 120 for line in shown.splitlines()) and len(shown.splitlines()) <= 17
        _cut_from(shown, full, 120)
        assert "Program(" not in shown and "Node" not in shown and "Affine" not in shown
        assert f"return {L.ir.printing.show(p.output)}" in full  # print() is never cut


def test_a_short_program_reprs_whole():
    N, C, H, k = L.sizes("N C H k")
    x, attn = L.tensor("x", N + 1, C), L.tensor("attn", H, N + 1, N + 1)
    p = L.program("firsts", [x, attn], x[0:1] * L.mean(attn[:, 0, 0:1], axis=0), sizes={k: (1, N)})
    assert repr(p) == str(p) == ("def firsts(x: [N + 1, C], attn: [H, N + 1, N + 1], k: 1 <= k <= N) -> [1, C]:\n"
                                 "    return x[:1] * mean(attn[:, 0, :1], axis=0)")


def test_a_long_program_says_how_many_lines_were_cut():
    N, k = L.sizes("N k")
    v = L.tensor("v", N)
    out = v
    for i in range(30):
        out = L.define(f"d{i}", out * 2)
    p = L.program("long", [v], out, sizes={k: (1, N)})
    lines = repr(p).splitlines()
    assert len(lines) == 17 and lines[-1] == f"... ({len(str(p).splitlines()) - 16} more lines)"


@pytest.mark.parametrize("name", PROGRAMS[:2])
def test_a_derivation_reprs_as_its_steps_and_result(name):
    d = L.linearize(L.programs.get(name))
    lines = repr(d).splitlines()
    assert lines[0] == f"Derivation of {name}: {len(d.steps)} steps ({', '.join(d.passes)})"
    for i, s in enumerate(d.steps[:12], 1):
        line = lines[i]
        assert line.startswith(f"{i:>3}. [{s.pass_name} / {s.rule}] ") and " => " in line and len(line) <= 140
    result = lines.index("result:")
    assert "\n".join(lines[result + 1:]) == repr(d.result)
    assert "Step(" not in repr(d) and "Program(" not in repr(d)
    assert str(d).startswith(str(d.source)) and str(d).endswith(str(d.result))  # print() shows all of it


def test_a_step_reprs_as_one_line():
    d = L.linearize(L.programs.get("evit"))
    for s in d.steps:
        text = s.to_dict()
        assert str(s) == f"[{s.pass_name} / {s.rule}] {text['before']} => {text['after']}"
        shown = repr(s)
        assert "\n" not in shown and shown.startswith(f"[{s.pass_name} / {s.rule}] ") and len(shown) < 200
    short = next(s for s in d.steps if s.rule == "index-slice")
    assert repr(short) == str(short) == "[simplify / index-slice] x[1:][i] => x[i + 1]"


def test_heaviside_is_theta_in_latex_and_heaviside_in_text():
    d = L.linearize(L.programs.get("evit"))
    for tex in (derivation_latex(d), program_latex(d.result), d.steps[-1]._repr_latex_(),
                L.to_sympy(d.result)._repr_latex_()):
        assert r"\theta\left(" in tex and r"H\left(" not in tex
    assert r"\frac{1}{H}" in program_latex(d.result)  # H stays the head count
    assert "heaviside(" in str(d.result) and "theta" not in str(d.result)
