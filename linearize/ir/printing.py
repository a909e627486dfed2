"""Printing in linearize's text notation (that of the hand derivation published with EViT): sum<i < N>(...),
heaviside(...), delta(...), named definitions."""

from __future__ import annotations

from collections.abc import Callable

from .nodes import Affine, Node, Op, Sym

# precedence: a sum binds loosest, then products, then negation, then atoms
_ADD, _MUL, _NEG, _ATOM = 1, 2, 3, 4


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
        return _PRINTERS[n.op](self, n)

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


def _binary(symbol: str, prec: int) -> Callable[[Printer, Node], tuple[str, int]]:
    def render(p: Printer, n: Node) -> tuple[str, int]:
        left = p.show(n.src[0], prec)
        if symbol in "+-" and n.src[1].op is Op.AFFINE:  # a - (k - 1) reads better as a - k + 1
            text = str(n.src[1].arg if symbol == "+" else -n.src[1].arg)
            return (f"{left} - {text[1:]}" if text.startswith("-") else f"{left} + {text}"), prec
        # the right operand of - and / needs parentheses at equal precedence, and a product nested on the
        # right gets them too: a * (b * c) is not (a * b) * c to floating point, nor to `linearize cost`
        right = p.show(n.src[1], prec + (1 if symbol in "-/" or (symbol == "*" and n.src[1].op is Op.MUL) else 0))
        return f"{left} {symbol} {right}", prec
    return render


def _call(name: str) -> Callable[[Printer, Node], tuple[str, int]]:
    return lambda p, n: (f"{name}({', '.join(p.show(s) for s in n.src)})", _ATOM)


def _sorting(p: Printer, n: Node) -> tuple[str, int]:
    name = {Op.ARGSORT: "argsort", Op.SORT_BY_KEY: "sort_by_key", Op.RANK: "rank_of"}[n.op]
    desc = ", descending=True" if n.arg else ""
    return f"{name}({', '.join(p.show(s) for s in n.src)}{desc})", _ATOM


def _stack(p: Printer, n: Node) -> tuple[str, int]:
    v: Sym = n.arg
    body = p.show(n.src[0])
    if v not in n.src[0].free and v.hi - v.lo == Affine((), 1):
        return f"[{body}]", _ATOM
    rng = f"range({v.hi})" if v.lo == Affine() else f"range({v.lo}, {v.hi})"
    return f"[{body} for {v.name} in {rng}]", _ATOM


_PRINTERS: dict[Op, Callable[[Printer, Node], tuple[str, int]]] = {
    Op.INPUT: lambda p, n: (n.arg[0], _ATOM),
    Op.CONST: lambda p, n: (_num(n.arg), _NEG if n.arg < 0 else _ATOM),
    Op.AFFINE: lambda p, n: (str(n.arg), _affine_prec(n.arg)),
    Op.ADD: _binary("+", _ADD), Op.SUB: _binary("-", _ADD),
    Op.MUL: _binary("*", _MUL), Op.DIV: _binary("/", _MUL),
    Op.NEG: lambda p, n: (f"-{p.show(n.src[0], _NEG + 1)}", _NEG),
    Op.HEAVISIDE: _call("heaviside"), Op.DELTA: _call("delta"),
    Op.INDEX: Printer.items, Op.SLICE: Printer.items,
    Op.CAT: lambda p, n: (f"cat({', '.join(p.show(s) for s in n.src)}"
                          f"{'' if n.arg == 0 else f', axis={n.arg}'})", _ATOM),
    Op.SUM: lambda p, n: (f"sum<{var_range(n.arg)}>({p.show(n.src[0])})", _ATOM),
    Op.STACK: _stack,
    Op.DEF: lambda p, n: (p.name_of(n), _ATOM),
    Op.MEAN: lambda p, n: (f"mean({p.show(n.src[0])}, axis={n.arg})", _ATOM),
    Op.ARGSORT: _sorting, Op.SORT_BY_KEY: _sorting, Op.RANK: _sorting,
    Op.TOPK: lambda p, n: (f"topk({p.show(n.src[0])}, {n.arg})", _ATOM),
    Op.GATHER: _call("gather"),
    Op.COMPLEMENT: lambda p, n: (f"complement({p.show(n.src[0])}, {n.arg})", _ATOM),
    Op.KTH: lambda p, n: (f"kth_{'largest' if n.arg else 'smallest'}({', '.join(p.show(s) for s in n.src)})", _ATOM),
}


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
