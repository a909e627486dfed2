"""A data-oblivious program at static sizes as the Python source of a torch.nn.Module (no torch imported here).

Every node becomes one array, laid out as in the generic evaluator (eval/generic.py): an optional leading
batch axis, one axis per free index variable (sorted by `Sym.sort_key`, each over its widest range), then the
node's own shape. Inputs carry the batch axis; index expressions, masks of ragged sums and one-hot index
matrices are constants without it, built once in `__init__` as buffers. Operands are aligned by inserting
singleton axes (`t[:, None]`), never by reading a shape, so the batch size stays dynamic.

A sum of a product becomes one `torch.einsum` over the factors (a ragged sum's mask is one more factor), so
`sum<i>(delta(rank[i] - r) * x[i + 1])` is a [B, N, k] one-hot matrix times x and nothing of size
[B, k, N, C] is built. heaviside(a - b) is `(a > b)` cast to the input's dtype and delta(a - b) is `(a == b)`:
for finite floats these agree with the subtraction's sign (gradual underflow makes a - b zero only when
a == b). The emitted code uses elementwise arithmetic and comparisons, sum and mean, einsum, static slices,
`movedim`, singleton axes and `cat`: no sort, topk, gather, scatter, nonzero, `.item()` or in-place op.
"""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..ir.nodes import Affine, IRError, Node, Op, Sym, bound
from ..ir.ops import OPS
from ..ir.printing import show
from ..ir.program import InputError, Program

LETTERS = "cdefghaijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # own axes take them from the front


@dataclass(frozen=True)
class Ref:
    """A node's value in the generated code: an expression and its layout."""

    expr: str
    batched: bool
    axes: tuple[Sym, ...]
    own: tuple[int, ...]
    literal: bool = False  # a Python number, which broadcasts against anything

    @property
    def ndim(self) -> int:
        return int(self.batched) + len(self.axes) + len(self.own)


def sort_axes(axes: object) -> tuple[Sym, ...]:
    return tuple(sorted(set(axes), key=Sym.sort_key))  # type: ignore[call-overload]


def broadcast_own(shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for t in range(1, rank + 1):
        dims = {s[-t] for s in shapes if len(s) >= t} - {1}
        if len(dims) > 1:
            raise IRError(f"own shapes {shapes} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(reversed(out))


def identifier(name: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", name) or "t"
    if base[0].isdigit() or keyword.iskeyword(base):
        base = "_" + base
    out, n = base, 1
    while out in taken:
        n += 1
        out = f"{base}_{n}"
    taken.add(out)
    return out


class Generator:
    """Generates `forward` for one root at concrete sizes; `buffers` are the constants `__init__` builds."""

    def __init__(self, program: Program, env: Mapping[Sym, int]):
        self.program, self.env = program, dict(env)
        self.inputs = program.input_names
        self.taken = {"self", "torch", "dt", *self.inputs}
        self.lines: list[str] = []
        self.buffers: list[tuple[str, str]] = []  # (name, torch expression of the constant, in `dtype`)
        self.memo: dict[Node, Ref] = {}
        self.constants: dict[tuple, Ref] = {}

    # --- sizes and layouts -------------------------------------------------------------------------------
    def extent(self, v: Sym) -> tuple[int, int]:
        """The widest [lo, hi) a variable takes over its outer variables' ranges (as eval/generic.py)."""
        lo = bound(v.lo, upper=False).value(self.env)
        hi = bound(v.hi, upper=True).value(self.env)
        return lo, max(lo, hi)

    def size(self, v: Sym) -> int:
        lo, hi = self.extent(v)
        return hi - lo

    def layout(self, r: Ref, axes: tuple[Sym, ...], rank: int) -> str:
        """r's expression with singleton axes inserted so that it broadcasts in the layout (axes, own rank);
        a value without the batch axis gets none: broadcasting adds it in front."""
        if r.literal:
            return r.expr
        items = [":"] if r.batched else []
        items += [":" if a in r.axes else "None" for a in axes]
        items += ["None"] * (rank - len(r.own)) + [":"] * len(r.own)
        while items and items[-1] == ":":
            items.pop()
        if not items:
            return r.expr
        return f"{_atom(r.expr)}[{', '.join(items)}]"

    def emit(self, expr: str, hint: str = "t") -> str:
        name = identifier(hint, self.taken)
        self.lines.append(f"{name} = {expr}")
        return name

    def constant(self, key: tuple, code: str, axes: tuple[Sym, ...], hint: str) -> Ref:
        """A buffer (built once, without a batch axis) and its local name in forward, cast to the input dtype."""
        if key not in self.constants:
            name = identifier(hint, self.taken)
            self.buffers.append((name, code))
            self.lines.append(f"{name} = self.{name}.to(dt)")
            self.constants[key] = Ref(name, False, axes, ())
        return self.constants[key]

    def affine_code(self, a: Affine, axes: tuple[Sym, ...], full: bool = True) -> str:
        """torch code for an int64 tensor of a's values over `axes` (full=False: singleton where a is constant)."""
        const = a.const + sum(c * self.env[s] for s, c in a.terms if s.kind == "size")
        parts = []
        for v in sort_axes(a.vars):
            lo, hi = self.extent(v)
            view = [1] * len(axes)
            view[axes.index(v)] = hi - lo
            coeff = a.coeff(v)
            parts.append(f"{'' if coeff == 1 else f'{coeff} * '}torch.arange({lo}, {hi}).reshape({tuple(view)})")
        if const or not parts:
            parts.append(str(const))
        if (full and set(a.vars) != set(axes)) or not a.vars:
            shape = tuple(self.size(v) for v in axes) if full else (1,) * len(axes)
            parts.insert(0, f"torch.zeros({shape}, dtype=torch.int64)")
        return " + ".join(parts)

    # --- nodes ---------------------------------------------------------------------------------------------
    def value(self, n: Node) -> Ref:
        if n not in self.memo:
            if n.op is Op.DEF:
                inner = self.build(n.src[0])
                ref = inner if inner.literal else Ref(self.emit(inner.expr, n.arg), inner.batched, inner.axes,
                                                      inner.own)
                self.memo[n.src[0]] = ref
            else:
                ref = self.build(n)
                if not ref.literal and not _is_name(ref.expr):
                    ref = Ref(self.emit(ref.expr), ref.batched, ref.axes, ref.own)
            self.memo[n] = ref
        return self.memo[n]

    def build(self, n: Node) -> Ref:
        """n's expression (not yet assigned to a name): leaves and structure by the handlers below, arithmetic,
        steps and reductions by the op table's `impl` run on expressions (SourceBackend)."""
        if n in self.memo:
            return self.memo[n]
        spec = OPS[n.op]
        if spec.kind == "selection":
            raise IRError(f"{spec.name} is data-dependent and has no oblivious translation: `{show(n)}`; "
                          "linearize the program first")
        handler = _HANDLERS.get(n.op) or _KINDS.get(spec.kind)
        if handler is None:
            raise IRError(f"no oblivious translation for {spec.name} ({spec.kind}): `{show(n)}`")
        return handler(self, n)

    def arithmetic(self, n: Node) -> Ref:
        """An elementwise op (arithmetic or a step): its table `impl` on the operands laid out to broadcast.
        A step of a difference compares the two sides: heaviside(a - b) is a > b, delta(a - b) is a == b."""
        spec = OPS[n.op]
        difference = spec.kind == "step" and n.src[0].op is Op.SUB
        refs = [self.value(s) for s in (n.src[0].src if difference else n.src)]
        axes = sort_axes(a for r in refs for a in r.axes)
        own = broadcast_own([r.own for r in refs])
        codes = [Code(self.layout(r, axes, len(own)), r.literal) for r in refs]
        try:
            out = spec.impl(SOURCE, *([Difference(*codes)] if difference else codes))
        except AttributeError as e:
            raise IRError(f"no oblivious translation for {spec.name}: its implementation needs {e.name!r}, "
                          "which export does not generate") from None
        if out.literal:
            return Ref(out.text, False, (), (), literal=True)
        return Ref(out.text, any(r.batched for r in refs), axes, own)

    def reduction(self, n: Node) -> Ref:
        """A reduction along an own axis: the table's `impl` with that axis's position in the layout."""
        spec, x = OPS[n.op], self.value(n.src[0])
        axis = spec.axis(n)
        try:
            out = spec.impl(SOURCE, Code(x.expr), self.own_axis(x, axis))
        except AttributeError as e:
            raise IRError(f"no oblivious translation for {spec.name}: its implementation needs {e.name!r}, "
                          "which export does not generate") from None
        return Ref(out.text, x.batched, x.axes, x.own[:axis] + x.own[axis + 1:])

    def leaf(self, n: Node) -> Ref:
        if n.op is Op.INPUT:
            name, shape = n.arg
            return Ref(name, True, (), tuple(d.value(self.env) for d in shape))
        if n.op is Op.CONST:
            return Ref(repr(float(n.arg)), False, (), (), literal=True)
        a: Affine = n.arg
        if not a.vars:
            return Ref(str(a.value(self.env)), False, (), (), literal=True)
        axes = sort_axes(a.vars)
        return self.constant(("affine", a), f"({self.affine_code(a, axes)})", axes, "idx")

    def own_axis(self, r: Ref, axis: int) -> int:
        return int(r.batched) + len(r.axes) + axis

    def index(self, n: Node) -> Ref:
        x, e, axis = self.value(n.src[0]), n.src[1].arg, n.arg
        dim = x.own[axis]
        lo, hi = bound(e, upper=False).value(self.env), bound(e, upper=True).value(self.env)
        if lo < 0 or hi >= dim:
            raise InputError(f"index {e} takes values {lo}..{hi}, outside [0, {dim}), in `{show(n)}`")
        pos = self.own_axis(x, axis)
        own = x.own[:axis] + x.own[axis + 1:]
        lead = ", ".join([":"] * pos)
        sel = (lead + ", " if lead else "")
        if not e.vars:  # a constant index: a one-wide slice, then the axis dropped
            return Ref(f"{_atom(x.expr)}[{sel}{lo}:{lo + 1}].squeeze({pos})", x.batched, x.axes, own)
        (v, coeff), = e.terms if len(e.vars) == 1 and len(e.terms) == 1 else ((None, 0),)
        if v is not None and coeff == 1 and v not in x.axes:  # x[v + c]: a static slice moved to v's axis
            axes = sort_axes((*x.axes, v))
            expr = x.expr if (lo, hi + 1) == (0, dim) else f"{_atom(x.expr)}[{sel}{lo}:{hi + 1}]"
            target = int(x.batched) + axes.index(v)
            if target != pos:
                expr = f"{_atom(expr)}.movedim({pos}, {target})"
            return Ref(expr, x.batched, axes, own)
        # anything else: contract the axis with a constant one-hot matrix [*vars of e, dim]
        evars = sort_axes(e.vars)
        code = (f"(torch.clamp({self.affine_code(e, evars)}, 0, {dim - 1}).unsqueeze(-1) == "
                f"torch.arange({dim}))")
        onehot = self.constant(("onehot", e, dim), code, evars, "onehot")
        axes = sort_axes(x.axes + evars)
        letters, own_letters, _ = self.letters(axes, len(x.own))
        xs = ("b" if x.batched else "") + "".join(letters[a] for a in x.axes) + "".join(own_letters)
        os_ = "".join(letters[a] for a in evars) + own_letters[axis]
        out = ("b" if x.batched else "") + "".join(letters[a] for a in axes) + \
            "".join(c for t, c in enumerate(own_letters) if t != axis)
        return Ref(f"torch.einsum('{xs},{os_}->{out}', {x.expr}, {onehot.expr})", x.batched, axes, own)

    @staticmethod
    def letters(axes: tuple[Sym, ...], own_rank: int) -> tuple[dict[Sym, str], list[str], list[str]]:
        """einsum letters: a variable keeps its own name where it can ("b" is the batch), then the own axes
        ("c", "d", ...), then spares."""
        names: dict[Sym, str] = {}
        for a in axes:
            if len(a.name) == 1 and a.name.islower() and a.name not in "bc" and a.name not in names.values():
                names[a] = a.name
        pool = [c for c in LETTERS if c not in names.values() and c != "b"]
        for a in axes:
            if a not in names:
                names[a] = pool.pop()
        if len(pool) < own_rank:
            raise IRError(f"too many axes for einsum: {len(axes)} index variables and {own_rank} own axes")
        return names, pool[:own_rank], pool[own_rank:]

    def slice_(self, n: Node) -> Ref:
        x = self.value(n.src[0])
        axis, start, stop = n.arg
        a, b = start.value(self.env), stop.value(self.env)
        if not 0 <= a <= b <= x.own[axis]:
            raise InputError(f"slice {a}:{b} out of range for an axis of size {x.own[axis]} in `{show(n)}`")
        own = x.own[:axis] + (b - a,) + x.own[axis + 1:]
        if (a, b) == (0, x.own[axis]):
            return Ref(x.expr, x.batched, x.axes, own)
        lead = ", ".join([":"] * self.own_axis(x, axis))
        return Ref(f"{_atom(x.expr)}[{lead + ', ' if lead else ''}{a}:{b}]", x.batched, x.axes, own)

    def full(self, r: Ref, axes: tuple[Sym, ...], own: tuple[int, ...], skip: int | None = None) -> str:
        """r laid out over (axes, own) and expanded to their full sizes (the batch axis left as it is)."""
        expr = self.layout(r, axes, len(own))
        have = ([] if not r.batched else [-1]) + [self.size(a) if a in r.axes else 1 for a in axes] + \
            [1] * (len(own) - len(r.own)) + list(r.own)
        want = ([] if not r.batched else [-1]) + [self.size(a) for a in axes] + list(own)
        if skip is not None:
            want[int(r.batched) + len(axes) + skip] = have[int(r.batched) + len(axes) + skip]
        if have == want:
            return expr
        return f"{_atom(expr)}.expand({', '.join(str(w) for w in want)})"

    def cat(self, n: Node) -> Ref:
        parts = [self.value(s) for s in n.src]
        if not all(p.batched for p in parts):
            raise IRError(f"cat of a part that does not depend on the inputs is not supported: `{show(n)}`")
        axes = sort_axes([a for p in parts for a in p.axes])
        own = list(broadcast_own([p.own[:n.arg] + (1,) + p.own[n.arg + 1:] for p in parts]))
        exprs = []
        for p in parts:
            target = tuple(own[:n.arg] + [p.own[n.arg]] + own[n.arg + 1:])
            exprs.append(self.full(p, axes, target, skip=n.arg))
        own[n.arg] = sum(p.own[n.arg] for p in parts)
        return Ref(f"torch.cat([{', '.join(exprs)}], {1 + len(axes) + n.arg})", True, axes,
                   tuple(own))

    def stack(self, n: Node) -> Ref:
        v: Sym = n.arg
        body = self.value(n.src[0])
        if body.literal:
            raise IRError(f"stack of a constant is not supported: `{show(n)}`")
        rest = tuple(a for a in body.axes if a != v)
        target = int(body.batched) + len(rest)
        if v not in body.axes:  # the body does not use v: a new axis, repeated
            ref = Ref(f"{_atom(body.expr)}[{', '.join([':'] * target + ['None'])}]", body.batched, rest,
                      (1, *body.own))
            return Ref(self.full(ref, rest, (self.size(v), *body.own)), body.batched, rest,
                       (self.size(v), *body.own))
        pos = int(body.batched) + body.axes.index(v)
        expr = body.expr if pos == target else f"{_atom(body.expr)}.movedim({pos}, {target})"
        return Ref(expr, body.batched, rest, (self.size(v), *body.own))

    def sum_(self, n: Node) -> Ref:
        """sum<v>(product of factors) as one einsum; a ragged range contributes its mask as one more factor."""
        v: Sym = n.arg
        factors = [self.value(f) for f in _factors(n.src[0])]
        scalars = [f.expr for f in factors if f.literal]
        arrays = [f for f in factors if not f.literal]
        if v.lo.vars or v.hi.vars:
            arrays.append(self.mask(v))
        if not any(v in f.axes for f in arrays):  # constant in v (only an unragged range can be)
            scalars.append(str(self.size(v)))
            v = None  # type: ignore[assignment]
        if not arrays:
            return Ref(" * ".join(f"({s})" for s in scalars), False, (), (), literal=True)
        axes = sort_axes(a for f in arrays for a in f.axes)
        out_axes = tuple(a for a in axes if a != v)
        own = broadcast_own([f.own for f in arrays])
        batched = any(f.batched for f in arrays)
        if v is None:
            expr = " * ".join(_atom(self.layout(f, axes, len(own))) for f in arrays)
        elif len(arrays) == 1:
            f = arrays[0]
            expr = f"{_atom(f.expr)}.sum({int(f.batched) + f.axes.index(v)})"
        else:
            expr = self.einsum(arrays, axes, out_axes, own, batched)
        for s in scalars:
            expr = f"{_atom(expr)} * {_atom(s)}"
        return Ref(expr, batched, out_axes, own)

    def einsum(self, arrays: list[Ref], axes: tuple[Sym, ...], out_axes: tuple[Sym, ...], own: tuple[int, ...],
               batched: bool) -> str:
        letters, own_letters, spares = self.letters(axes, len(own))
        spare = iter(spares)
        terms = []
        for f in arrays:
            t = ("b" if f.batched else "") + "".join(letters[a] for a in f.axes)
            for pos, d in enumerate(f.own):  # right-aligned against own; a broadcast 1 is summed away alone
                o = len(own) - len(f.own) + pos
                t += own_letters[o] if d == own[o] else next(spare)
            terms.append(t)
        out = ("b" if batched else "") + "".join(letters[a] for a in out_axes) + "".join(own_letters)
        return f"torch.einsum('{','.join(terms)}->{out}', {', '.join(f.expr for f in arrays)})"

    def mask(self, v: Sym) -> Ref:
        """1 where lo(outer) <= v < hi(outer), over v and the outer variables of its bounds."""
        axes = sort_axes({v} | v.lo.vars | v.hi.vars)
        iv = self.affine_code(Affine.of(v), axes, full=False)
        tests = [f"({iv} >= {self.affine_code(b, axes, full=False)})" for b in [v.lo] if b.vars] + \
                [f"({iv} < {self.affine_code(b, axes, full=False)})" for b in [v.hi] if b.vars]
        return self.constant(("mask", v), f"({' & '.join(tests)})", axes, f"mask_{v.name}")

    # --- the whole forward ---------------------------------------------------------------------------------
    def forward(self, root: Node) -> str:
        out = self.value(root)
        if out.literal or not out.batched or out.axes:
            raise IRError(f"program {self.program.name}: the output does not depend on the inputs")
        self.lines.append(f"return {out.expr}")
        return "\n".join(_inline_aliases(self.lines))


def _factors(n: Node) -> list[Node]:
    return _factors(n.src[0]) + _factors(n.src[1]) if n.op is Op.MUL else [n]


def _is_name(expr: str) -> bool:
    return expr.isidentifier()


def _atom(expr: str) -> str:
    """expr, parenthesized unless it is a name, a number, a call or a subscript."""
    if re.fullmatch(r"[\w.]+(\[[^\[\]]*\])?(\.\w+\([^()]*\))*", expr) or re.fullmatch(r"\(.*\)", expr):
        return expr
    return f"({expr})"


def _inline_aliases(lines: list[str]) -> list[str]:
    """`t3 = expr; name = t3` (t3 used nowhere else) becomes `name = expr`."""
    out = list(lines)
    for i, line in enumerate(out):
        m = re.fullmatch(r"(\w+) = (t(?:_\d+)?)", line)
        if not m:
            continue
        new, old = m.groups()
        uses = [j for j, other in enumerate(out) if j != i and re.search(rf"\b{old}\b", other.split(" = ", 1)[1]
                                                                          if " = " in other else other)]
        defs = [j for j, other in enumerate(out) if other.startswith(f"{old} = ")]
        if uses or len(defs) != 1:
            continue
        out[defs[0]] = f"{new} = " + out[defs[0]].split(" = ", 1)[1]
        out[i] = ""
    return [line for line in out if line]


_HANDLERS = {
    Op.INPUT: Generator.leaf, Op.CONST: Generator.leaf, Op.AFFINE: Generator.leaf, Op.INDEX: Generator.index,
    Op.SLICE: Generator.slice_, Op.CAT: Generator.cat, Op.SUM: Generator.sum_, Op.STACK: Generator.stack,
}  # leaves and structure: the calculus every layer implements itself (DEF is handled in `value`)
_KINDS = {"arithmetic": Generator.arithmetic, "step": Generator.arithmetic, "reduction": Generator.reduction}


class Code:
    """A Python expression that the op table's implementations compute with, as they would with arrays."""

    def __init__(self, text: str, literal: bool = False):
        self.text, self.literal = text, literal

    def _op(self, symbol: str, other: object, swap: bool = False) -> Code:
        code = other if isinstance(other, Code) else Code(repr(other), True)
        a, b = (code, self) if swap else (self, code)
        return Code(f"{_atom(a.text)} {symbol} {_atom(b.text)}", a.literal and b.literal)

    def __add__(self, other: object) -> Code:
        return self._op("+", other)

    def __radd__(self, other: object) -> Code:
        return self._op("+", other, True)

    def __sub__(self, other: object) -> Code:
        return self._op("-", other)

    def __rsub__(self, other: object) -> Code:
        return self._op("-", other, True)

    def __mul__(self, other: object) -> Code:
        return self._op("*", other)

    def __rmul__(self, other: object) -> Code:
        return self._op("*", other, True)

    def __truediv__(self, other: object) -> Code:
        return self._op("/", other)

    def __rtruediv__(self, other: object) -> Code:
        return self._op("/", other, True)

    def __gt__(self, other: object) -> Code:
        return self._op(">", other)

    def __lt__(self, other: object) -> Code:
        return self._op("<", other)

    def __ge__(self, other: object) -> Code:
        return self._op(">=", other)

    def __le__(self, other: object) -> Code:
        return self._op("<=", other)

    def __eq__(self, other: object) -> Code:  # type: ignore[override]
        return self._op("==", other)

    def __ne__(self, other: object) -> Code:  # type: ignore[override]
        return self._op("!=", other)

    def __neg__(self) -> Code:
        return Code(f"(-{_atom(self.text)})", self.literal)

    __hash__ = None  # type: ignore[assignment]


class Difference(Code):
    """a - b, which a step compares with 0 as a against b: for finite floats the same test, one op fewer."""

    def __init__(self, a: Code, b: Code):
        super().__init__(f"{_atom(a.text)} - {_atom(b.text)}", a.literal and b.literal)
        self.a, self.b = a, b

    def _op(self, symbol: str, other: object, swap: bool = False) -> Code:
        if symbol in (">", "<", ">=", "<=", "==", "!=") and type(other) in (int, float) and other == 0:
            return self.a._op(symbol, self.b, swap)
        return Code(self.text, self.literal)._op(symbol, other, swap)


class SourceBackend:
    """The backend primitives (eval/backends.py's names) that the op table's arithmetic, step and reduction
    implementations call, writing code instead of computing."""

    name = "source"

    @staticmethod
    def flag(mask: Code, like: Code) -> Code:
        return Code(f"float({mask.text})", True) if mask.literal else Code(f"({mask.text}).to(dt)")

    @staticmethod
    def sum(x: Code, axis: int) -> Code:
        return Code(f"{_atom(x.text)}.sum({axis})")

    @staticmethod
    def mean(x: Code, axis: int, divisor: object = None) -> Code:
        return Code(f"{_atom(x.text)}.mean({axis})")

    @staticmethod
    def amax(x: Code, axis: int) -> Code:
        return Code(f"{_atom(x.text)}.amax({axis})")

    @staticmethod
    def exp(x: Code) -> Code:  # POMT's softmax; a constant's is written as its value
        if x.literal:
            return Code(repr(math.exp(float(x.text))), True)
        return Code(f"torch.exp({x.text})")


SOURCE = SourceBackend()
