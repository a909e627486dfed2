"""LaTeX for programs and derivations: readable math that keeps the structure each rewrite step changes.

The printer mirrors printing.py op for op, so a step such as `x[1:][i] => x[i + 1]` still shows what changed
(SymPy would print both sides as x_{i+1,c}, and would reorder terms); index arithmetic goes through SymPy's
latex(). Notation: \\sum_{i=0}^{N-1}, \\theta(.) for heaviside (not H: that is the head count), \\delta(.) for
delta, upright named definitions (\\mathrm{rank}_{i}), slices as x_{1{:}}, [f(r) for r in range(k)] as
[f]_{r=0}^{k-1}, a cat along rows as a bmatrix of its blocks, data-dependent ops as \\operatorname{topk}(...), a
down arrow marking descending order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..ir import OPS, Affine, Node, Op, Sym, affine, node
from ..ir.printing import Printer, definitions
from ..ir.program import Program
from .sympy_latex import affine_latex, name_latex


class Step(Protocol):  # a rewrite step (rewrite/engine.py), read as data: show/ does not import rewrite/
    pass_name: str
    rule: str
    before: Node
    after: Node


class Derivation(Protocol):
    source: Program
    steps: Sequence[Step]

    @property
    def result(self) -> Program: ...

_OPEN, _ADD, _MUL, _NEG, _ATOM = 0, 1, 2, 3, 4
Shown = tuple[str, int, bool]  # text, precedence, open: ends in a big operator (a sum) that extends right


def _text(s: str) -> str:
    for ch in "\\{}_&%#$^~":
        s = s.replace(ch, "\\" + ch)
    return r"\text{" + s + "}"


def _affine_prec(a: Affine) -> int:
    if len(a.terms) + (1 if a.const and a.terms else 0) > 1:
        return _ADD
    return _NEG if (a.terms and a.terms[0][1] < 0) or a.const < 0 else _ATOM


def _is_row(n: Node) -> bool:
    """[f]: a stack of one row that does not use its variable."""
    return n.op is Op.STACK and n.arg not in n.src[0].free and n.arg.hi - n.arg.lo == Affine((), 1)


def _range(v: Sym) -> tuple[str, str]:
    return affine_latex(v.lo), affine_latex(v.hi - 1)


class LatexPrinter:
    """Renders nodes as LaTeX; definitions print by their (unique) names, as printing.Printer names them."""

    def __init__(self) -> None:
        self.names = Printer()

    def show(self, n: Node, prec: int = 0, tail: bool = True) -> str:
        return self._show(n, prec, tail)[0]

    def _show(self, n: Node, prec: int = 0, tail: bool = True) -> Shown:
        text, p, is_open = OPS[n.op].latex(self, n)
        if p < prec or (is_open and not tail):
            return rf"\left({text}\right)", _ATOM, False
        return text, p, is_open

    def name(self, d: Node) -> str:
        return name_latex(self.names.name_of(d) if d.op is Op.DEF else d.arg[0])

    def binary(self, n: Node) -> Shown:
        if n.op is Op.DIV:
            return rf"\frac{{{self.show(n.src[0])}}}{{{self.show(n.src[1])}}}", _ATOM, False
        prec = {Op.ADD: _ADD, Op.SUB: _ADD, Op.MUL: _MUL}[n.op]
        left = self.show(n.src[0], prec, tail=False)
        # as printing.py: a - (b + c), and a * (b * c), whose grouping matters to floating point
        nested = n.op is Op.SUB or (n.op is Op.MUL and n.src[1].op is Op.MUL)
        right, _, is_open = self._show(n.src[1], prec + nested, tail=True)
        if n.op is Op.MUL:
            sep = r" \cdot " if right[:1].isdigit() or right.startswith("-") else r" \, "
            return left + sep + right, _MUL, is_open
        if n.src[1].op is Op.AFFINE:  # a - (k - 1) reads better as a - k + 1
            e = affine_latex(n.src[1].arg if n.op is Op.ADD else -n.src[1].arg)
            return left + (f" - {e[1:].lstrip()}" if e.startswith("-") else f" + {e}"), _ADD, False
        return f"{left} {'+' if n.op is Op.ADD else '-'} {right}", _ADD, is_open

    def items(self, n: Node) -> Shown:
        """x_{a, b{:}c} for a chain of indexing and slicing on one tensor."""
        chain: list[Node] = []
        base = n
        while base.op in (Op.INDEX, Op.SLICE):
            chain.append(base)
            base = base.src[0]
        items, remaining, merged = ["{:}"] * len(base.shape), list(range(len(base.shape))), 0
        for step in reversed(chain):
            axis = step.arg if step.op is Op.INDEX else step.arg[0]
            pos = remaining[axis]
            if items[pos] != "{:}":
                break
            if step.op is Op.INDEX:
                items[pos] = self.show(step.src[1])
                remaining.pop(axis)
            else:
                _, start, stop = step.arg
                lo = "" if start == Affine() else affine_latex(start)
                items[pos] = lo + "{:}" + ("" if stop == base.shape[pos] else affine_latex(stop))
            merged += 1
        if merged < len(chain):  # x[1:][i] indexes one axis twice: subscript the inner chain
            top = chain[0]
            base = top.src[0]
            axis = top.arg if top.op is Op.INDEX else top.arg[0]
            if top.op is Op.INDEX:
                last = self.show(top.src[1])
            else:
                last = affine_latex(top.arg[1]) + "{:}" + affine_latex(top.arg[2])
            items = ["{:}"] * axis + [last]
        while items and items[-1] == "{:}":
            items.pop()
        sub = "_{" + ", ".join(items) + "}"
        if base.op in (Op.INPUT, Op.DEF):
            return self.name(base) + sub, _ATOM, False
        inner = self.show(base)
        if OPS[base.op].kind in ("selection", "step"):
            return inner + sub, _ATOM, False
        return rf"\left({inner}\right){sub}", _ATOM, False

    def sum(self, n: Node) -> Shown:
        lo, hi = _range(n.arg)
        return rf"\sum_{{{n.arg.name}={lo}}}^{{{hi}}} {self.show(n.src[0], _MUL)}", _ATOM, True

    def stack(self, n: Node) -> Shown:
        v: Sym = n.arg
        body = self.show(n.src[0])
        if _is_row(n):
            return rf"\left[{body}\right]", _ATOM, False
        lo, hi = _range(v)
        return rf"\left[{body}\right]_{{{v.name}={lo}}}^{{{hi}}}", _ATOM, False

    def cat(self, n: Node) -> Shown:
        if n.arg != 0:
            parts = ", ".join(self.show(s) for s in n.src)
            return rf"\operatorname{{cat}}_{{{n.arg}}}\left({parts}\right)", _ATOM, False
        rows = [self.show(s.src[0]) if _is_row(s) else self.show(s) for s in n.src]
        return r"\begin{bmatrix} " + r" \\ ".join(rows) + r" \end{bmatrix}", _ATOM, False

    def reduction(self, n: Node, kind: str) -> Shown:
        """mean: \\frac{1}{d} \\sum_{a=0}^{d-1} x_a; max: \\max_{a=0}^{d-1} x_a, over a fresh index a."""
        x, axis = n.src[0], OPS[n.op].axis(n)
        d = x.shape[axis]
        taken = {v.name for m in x.toposort() for v in (m.free | (m.arg.vars if m.op is Op.AFFINE else set()))}
        name = d.terms[0][0].name.lower() if len(d.terms) == 1 and not d.const else "a"
        while name in taken:
            name += "'"
        v = Sym(name, "var", Affine(), d)
        body = self.show(node(Op.INDEX, (x, affine(v)), axis), _MUL)
        limits = rf"_{{{name}=0}}^{{{affine_latex(d - 1)}}}"
        if kind == "max":
            return rf"\max{limits} {body}", _ATOM, True
        return rf"\frac{{1}}{{{affine_latex(d)}}} \sum{limits} {body}", _ATOM, True

    def call(self, name: str, n: Node, extra: Affine | None = None, descending: bool = False) -> Shown:
        """\\operatorname{name}(operands[, extra]), a down arrow marking a descending order."""
        args = [self.show(s) for s in n.src] + ([affine_latex(extra)] if extra is not None else [])
        arrow = r"^{\downarrow}" if descending else ""
        return rf"\operatorname{{{name}}}{arrow}\left({', '.join(args)}\right)", _ATOM, False

    def unary(self, fn: str, n: Node) -> Shown:
        return rf"{fn}\left({self.show(n.src[0])}\right)", _ATOM, False

    def negation(self, n: Node) -> Shown:
        text, _, is_open = self._show(n.src[0], _NEG + 1, tail=True)
        return "-" + text, _NEG, is_open

    def number(self, n: Node) -> Shown:
        text = affine_latex(Affine((), int(n.arg))) if float(n.arg).is_integer() else repr(n.arg)
        return text, (_NEG if n.arg < 0 else _ATOM), False

    def affine(self, n: Node) -> Shown:
        return affine_latex(n.arg), _affine_prec(n.arg), False

    def definition(self, d: Node) -> tuple[str, str, str]:
        """(lhs, rhs, range note) of a named definition."""
        value = d.src[0]
        if value.op is Op.STACK:
            v: Sym = value.arg
            lhs = self.name(d) + "_{" + v.name + "}"
            return lhs, self.show(value.src[0]), rf"{affine_latex(v.lo)} \leq {v.name} < {affine_latex(v.hi)}"
        return self.name(d), self.show(value), ""


def node_latex(n: Node, printer: LatexPrinter | None = None) -> str:
    """One node as LaTeX, definitions by name."""
    return (printer or LatexPrinter()).show(n)


def _shape(shape: tuple[Affine, ...]) -> str:
    if not shape:
        return r"\mathbb{R}"
    dims = [affine_latex(d) if _affine_prec(d) >= _NEG else f"({affine_latex(d)})" for d in shape]
    return r"\mathbb{R}^{" + r" \times ".join(dims) + "}"


def _definition_line(printer: LatexPrinter, d: Node) -> str:
    lhs, rhs, note = printer.definition(d)
    return f"{lhs} &= {rhs}" + (f" && {note}" if note else "")


def _program_lines(p: Program, printer: LatexPrinter, title: str) -> list[str]:
    ins = [f"{printer.name(n)} \\in {_shape(n.arg[1])}" for n in p.inputs]
    cons = [rf"{affine_latex(c.lo)} \leq {c.size.name} \leq {affine_latex(c.hi)}" for c in p.constraints]
    sig = ",\\ ".join(ins) + (";\\ " + ",\\ ".join(cons) if cons else "")
    name = p.name.replace("_", r"\_")
    lines = [rf"& {_text(title)}\ \mathbf{{{name}}}\left({sig}\right) \to {_shape(p.output.shape)}"]
    lines += [_definition_line(printer, d) for d in definitions(p.output)]
    out = r"\mathrm{out}"
    for e in p.early_returns:
        rel = "=" if e.relation == "==" else r"\le"
        cond = f"{affine_latex(e.lhs)} {rel} {affine_latex(e.rhs)}"
        lines.append(rf"{out} &= {printer.show(e.value)} && \text{{if }} {cond}")
    lines.append(f"{out} &= {printer.show(p.output)}" + (r" && \text{otherwise}" if p.early_returns else ""))
    return lines


def _wrap(lines: list[str]) -> str:
    return "$$\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}$$"


def program_latex(p: Program) -> str:
    """A program's signature, named definitions and output, as an aligned LaTeX block."""
    return _wrap(_program_lines(p, LatexPrinter(), "program"))


def derivation_latex(d: Derivation) -> str:
    """The source program, then each step as `before = after` labelled with its rule, then the result."""
    lines = _program_lines(d.source, LatexPrinter(), "source")
    if d.steps:
        lines.append(r"& \text{derivation}")
    for k, s in enumerate(d.steps, 1):
        lines += _step_lines(s, f"({k}) ")
    lines += _program_lines(d.result, LatexPrinter(), "result")
    return _wrap(lines)


def _step_lines(s: Step, number: str = "") -> list[str]:
    p = LatexPrinter()
    lines = [f"{p.show(s.before)} &= {p.show(s.after)} && {_text(f'{number}[{s.pass_name} / {s.rule}]')}"]
    if s.after.op is Op.DEF:  # a new definition: show what it is, not just its name
        known = set(definitions(s.before))
        new = [_definition_line(p, x) for x in definitions(s.after) if x not in known]
        lines += [r"\text{where}\quad " + line if j == 0 else line for j, line in enumerate(new)]
    return lines


def step_latex(s: Step) -> str:
    """One step, `before = after` labelled with its pass and rule (and any definition it introduces)."""
    return _wrap(_step_lines(s))
