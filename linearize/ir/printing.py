"""The text notation (that of the hand derivation published with EViT): sum<i < N>(...), heaviside(...),
delta(...), named definitions.

Each op's notation is its `text` facet in the op table; the printer supplies the shared pieces (calls, infix
operators, index chains, sums and comprehensions) and names definitions uniquely."""

from __future__ import annotations

from .affine import Affine, Sym
from .nodes import Node, set_printer
from .opcodes import Op
from .ops import ADD as _ADD
from .ops import ATOM as _ATOM
from .ops import MUL as _MUL
from .ops import NEG as _NEG
from .ops import OPS


def _affine_prec(a: Affine) -> int:
    if len(a.terms) + (1 if a.const and a.terms else 0) > 1:
        return _ADD
    if a.terms and a.terms[0][1] not in (1, -1):
        return _MUL
    if (a.terms and a.terms[0][1] < 0) or a.const < 0:
        return _NEG
    return _ATOM


def _num(v: float | int) -> str:
    return repr(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(v)


def var_range(v: Sym) -> str:
    return f"{v.name} < {v.hi}" if v.lo == Affine() else f"{v.lo} <= {v.name} < {v.hi}"


class Printer:
    """Renders nodes; definitions print by name, with names made unique where two differ."""

    def __init__(self) -> None:
        self.names: dict[Node, str] = {}
        self.taken: set[str] = set()

    def name_of(self, d: Node) -> str:
        if d not in self.names:
            base, n = d.arg, 2
            name = base
            while name in self.taken:
                name, n = f"{base}_{n}", n + 1
            self.taken.add(name)
            self.names[d] = name
        return self.names[d]

    def show(self, n: Node, prec: int = 0) -> str:
        text, p = self._show(n)
        return f"({text})" if p < prec else text

    def _show(self, n: Node) -> tuple[str, int]:
        return OPS[n.op].text(self, n)

    def items(self, n: Node) -> tuple[str, int]:
        """x[a, b:c] for a chain of indexing and slicing on one tensor."""
        chain: list[Node] = []
        base = n
        while base.op in (Op.INDEX, Op.SLICE):
            chain.append(base)
            base = base.src[0]
        items = [":"] * len(base.shape)
        remaining = list(range(len(base.shape)))
        merged = 0
        for step in reversed(chain):
            axis = step.arg if step.op is Op.INDEX else step.arg[0]
            pos = remaining[axis]
            if items[pos] != ":":
                break
            if step.op is Op.INDEX:
                items[pos] = self.show(step.src[1])
                remaining.pop(axis)
            else:
                _, start, stop = step.arg
                lo = "" if start == Affine() else str(start)
                hi = "" if stop == base.shape[pos] else str(stop)
                items[pos] = f"{lo}:{hi}"
            merged += 1
        if merged < len(chain):  # x[1:][0] indexes one axis twice: print the outer step alone
            top = chain[0]
            axis = top.arg if top.op is Op.INDEX else top.arg[0]
            pre = ":, " * axis
            if top.op is Op.INDEX:
                return f"{self.show(top.src[0], _ATOM)}[{pre}{self.show(top.src[1])}]", _ATOM
            _, start, stop = top.arg
            return f"{self.show(top.src[0], _ATOM)}[{pre}{start}:{stop}]", _ATOM
        while items and items[-1] == ":":
            items.pop()
        return f"{self.show(base, _ATOM)}[{', '.join(items)}]", _ATOM

    # --- the pieces the op table's `text` facets use ----------------------------------------------------
    def number(self, n: Node) -> tuple[str, int]:
        return _num(n.arg), (_NEG if n.arg < 0 else _ATOM)

    def affine(self, n: Node) -> tuple[str, int]:
        return str(n.arg), _affine_prec(n.arg)

    def binary(self, n: Node, symbol: str, prec: int) -> tuple[str, int]:
        left = self.show(n.src[0], prec)
        if symbol in "+-" and n.src[1].op is Op.AFFINE:  # a - (k - 1) reads better as a - k + 1
            text = str(n.src[1].arg if symbol == "+" else -n.src[1].arg)
            return (f"{left} - {text[1:]}" if text.startswith("-") else f"{left} + {text}"), prec
        # the right operand of - and / needs parentheses at equal precedence, and a product nested on the
        # right gets them too: a * (b * c) is not (a * b) * c to floating point, nor to `linearize cost`
        right = self.show(n.src[1], prec + (1 if symbol in "-/" or (symbol == "*" and n.src[1].op is Op.MUL) else 0))
        return f"{left} {symbol} {right}", prec

    def negation(self, n: Node) -> tuple[str, int]:
        return f"-{self.show(n.src[0], _NEG + 1)}", _NEG

    def call(self, name: str, n: Node, extra: str | None = None) -> tuple[str, int]:
        """name(operands[, extra])."""
        args = [self.show(s) for s in n.src] + ([extra] if extra else [])
        return f"{name}({', '.join(args)})", _ATOM

    def cat(self, n: Node) -> tuple[str, int]:
        return f"cat({', '.join(self.show(s) for s in n.src)}{'' if n.arg == 0 else f', axis={n.arg}'})", _ATOM

    def sum(self, n: Node) -> tuple[str, int]:
        return f"sum<{var_range(n.arg)}>({self.show(n.src[0])})", _ATOM

    def stack(self, n: Node) -> tuple[str, int]:
        v: Sym = n.arg
        body = self.show(n.src[0])
        if v not in n.src[0].free and v.hi - v.lo == Affine((), 1):
            return f"[{body}]", _ATOM
        rng = f"range({v.hi})" if v.lo == Affine() else f"range({v.lo}, {v.hi})"
        return f"[{body} for {v.name} in {rng}]", _ATOM


def definitions(root: Node) -> list[Node]:
    """The named definitions a node uses, each after those it depends on."""
    return [n for n in root.toposort() if n.op is Op.DEF]


def show_definition(p: Printer, d: Node) -> str:
    value = d.src[0]
    if value.op is Op.STACK:
        v: Sym = value.arg
        lhs = f"{p.name_of(d)}[{var_range(v)}]"
        return f"{lhs} = {p.show(value.src[0])}"
    return f"{p.name_of(d)} = {p.show(value)}"


def show(n: Node, printer: Printer | None = None) -> str:
    """One node in the text notation, definitions by name."""
    return (printer or Printer()).show(n)


def show_with_definitions(n: Node) -> str:
    """A node preceded by every named definition it uses."""
    p = Printer()
    lines = [show_definition(p, d) for d in definitions(n)]
    lines.append(p.show(n))
    return "\n".join(lines)


def shorten(text: str, width: int = 120, lines: int = 16) -> str:
    """text for a REPL: each line cut to `width` characters, at most `lines` lines, and what was cut said."""
    rows = text.splitlines()
    out = [r if len(r) <= width else r[:width - 3] + "..." for r in rows[:lines]]
    if len(rows) > lines:
        out.append(f"... ({len(rows) - lines} more lines)")
    return "\n".join(out)


set_printer(show)
