"""SymPy expressions as LaTeX in this package's notation: \\theta(.) for Heaviside (H is the head count),
delta(.) for KroneckerDelta, upright multi-letter names, data-dependent functions as \\operatorname{topk}(...)
with a down arrow for descending order. latex.py prints programs and derivations with these pieces;
sympy_bridge.py prints forms.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter

from ..ir import Affine


def name_latex(name: str) -> str:
    """x stays x; a multi-letter name is upright, \\mathrm{cls\\_attn}; primes are kept."""
    base = name.rstrip("'")
    if len(base) <= 1:
        return name
    return r"\mathrm{" + base.replace("_", r"\_") + "}" + name[len(base):]


def _power(tex: str, exp: str | None) -> str:
    return f"{tex}^{{{exp}}}" if exp else tex


class _Latex(LatexPrinter):
    def _print_Heaviside(self, expr: sp.Heaviside, exp: str | None = None) -> str:
        return _power(rf"\theta\left({self._print(expr.args[0])}\right)", exp)

    def _print_KroneckerDelta(self, expr: sp.KroneckerDelta, exp: str | None = None) -> str:
        a, b = expr.args
        inner = self._print(a) if b == 0 else f"{self._print(a)} - {self.parenthesize(b, 40, strict=False)}"
        return _power(rf"\delta\left({inner}\right)", exp)

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:
        return name_latex(expr.name)

    def _print_IndexedBase(self, expr: sp.IndexedBase) -> str:
        return name_latex(str(expr.label))

    def _print_Indexed(self, expr: sp.Indexed) -> str:
        return f"{self._print(expr.base)}_{{{', '.join(self._print(i) for i in expr.indices)}}}"

    def _print_AppliedUndef(self, expr: sp.Function, exp: str | None = None) -> str:
        name = type(expr).__name__
        arrow = r"^{\downarrow}" if name.endswith("_desc") else ""
        name, args = name.removesuffix("_desc").replace("_", r"\_"), ", ".join(self._print(a) for a in expr.args)
        return _power(rf"\operatorname{{{name}}}{arrow}\left({args}\right)", exp)


def sympy_latex(expr: sp.Basic) -> str:
    """LaTeX for a SymPy expression in this package's notation: \\theta(.), \\delta(.), upright names."""
    return _Latex({"mul_symbol": None}).doprint(expr)


def affine_latex(a: Affine) -> str:
    """An index expression through SymPy, its terms in the IR's order (sizes, variables, constant): N - k + 1."""
    sizes = {s.name for s, _ in a.terms if s.kind == "size"}  # the assumptions sympy_bridge gives them
    terms = [c * sp.Symbol(s.name, integer=True, **({"nonnegative": True} if s.name in sizes else {}))
             for s, c in a.terms]
    expr = sp.Add(*terms, *([sp.Integer(a.const)] if a.const or not terms else []), evaluate=False)
    return _Latex({"mul_symbol": None, "order": "none"}).doprint(expr)
