"""The SymPy bridge: IR nodes and programs as SymPy expressions, evaluated on numbers by `.subs` + `.doit()`.

Convention: a node is converted *elementwise*. A node of shape (d0, ..., dn) becomes the SymPy expression
for its element at integer index symbols, one per axis (`form.indices`): a row of x is x[i + 1, c], with a
channel index c. An axis' symbol is named after its size when that is a single size (C -> c, N -> n),
else t, u, v, w, never a name the node already uses. In detail:

- sizes are nonnegative integer Symbols (N, C, H, k; POMT's r may be 0); index variables are integer Symbols
  (i, j, r);
- inputs are IndexedBases (x[i + 1, c]; a scalar input is a Symbol);
- sum<lo <= i < hi>(f) is Sum(f, (i, lo, hi - 1)): SymPy's limits are inclusive;
- [f(r) for r in range(lo, hi)] at row t is f(lo + t); mean(X, axis) is a Sum over a fresh index / the size;
- heaviside(a) is Heaviside(a, 0) (strict: H(0) = 0); delta(a - b) is KroneckerDelta(a, b), delta(a) is
  KroneckerDelta(a, 0);
- cat along an axis is a Piecewise in that axis' symbol t: (part 0 at t, t < d0), (part 1 at t - d0,
  t < d0 + d1), ..., (last part, True);
- a named definition is an IndexedBase reference (rank[i]) plus its equation in `form.definitions`
  (name -> Eq(rank[i], num_greater[i] + Sum(...))), in dependency order;
- data-dependent ops (topk, gather, sort_by_key, complement, kth_largest, rank_of, argsort) are
  uninterpreted Functions of whole tensors (an IndexedBase, another such Function, or a Lambda over the
  operand's indices) followed by the element's indices, `_desc` marking descending order:
  gather(x[1:], idx)[t, c] -> gather(Lambda((n, c), x[n + 1, c]), idx, t, c). They print; they do not evaluate.

`SympyForm.evaluate(values)` substitutes sizes and input arrays (one instance, no batch axis), expands the sums
with `.doit()`, and returns the node's values as a numpy array; `sympy_latex(expr)` (sympy_latex.py) prints a
SymPy expression with \\theta(.) for Heaviside, delta(a - b) for KroneckerDelta and upright multi-letter names.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp

from ..ir import OPS, Affine, Node, Op, Sym
from ..ir.printing import Printer
from ..ir.program import Program
from .sympy_latex import sympy_latex

if TYPE_CHECKING:
    pass



class MaxOver(sp.Function):
    """max over s in [0, hi] of f(s), f a Lambda: stays symbolic until hi is a number, then is SymPy's Max."""

    @classmethod
    def eval(cls, f: sp.Lambda, hi: sp.Expr) -> sp.Expr | None:
        if hi.is_Integer:
            return sp.Max(*(f(s) for s in range(int(hi) + 1)))
        return None


def _var(name: str) -> sp.Symbol:
    return sp.Symbol(name, integer=True)


def _number(v: float) -> sp.Expr:
    if float(v).is_integer():
        return sp.Integer(int(v))
    r = sp.Rational(v)
    return r if r.q <= 1024 else sp.Float(v)


def _var_names(n: Node) -> set[str]:
    names: set[str] = set()
    for m in n.toposort():
        syms = [m.arg] if m.op in (Op.SUM, Op.STACK) else list(m.arg.syms) if m.op is Op.AFFINE else []
        names |= {s.name for s in syms}
    return names


def _axis_symbols(shape: tuple[Affine, ...], avoid: set[str]) -> tuple[sp.Symbol, ...]:
    out: list[sp.Symbol] = []
    pool = iter(["t", "u", "v", "w", *(f"t{i}" for i in range(1, 99))])
    for d in shape:
        name = d.terms[0][0].name.lower() if len(d.terms) == 1 and d.terms[0][1] == 1 and not d.const else ""
        while not name or name in avoid:
            name = next(pool)
        avoid.add(name)
        out.append(_var(name))
    return tuple(out)


@dataclass(frozen=True)
class SympyForm:
    """A node (or a program's output) as SymPy: `expr` is the element at `indices`; see the module docstring."""

    expr: sp.Expr
    indices: tuple[sp.Symbol, ...]
    shape: tuple[sp.Expr, ...]
    definitions: dict[str, sp.Eq]
    sizes: dict[str, sp.Symbol]
    inputs: dict[str, sp.Expr]
    input_shapes: dict[str, tuple[sp.Expr, ...]]
    early_returns: tuple[tuple[sp.Basic, sp.Expr, tuple[sp.Expr, ...]], ...] = ()  # (condition, expr, shape)
    def_shapes: dict[str, tuple[sp.Expr, ...]] = field(default_factory=dict)

    def bind(self, values: Mapping[str, Any]) -> dict[sp.Symbol, sp.Integer]:
        """Size values: given by name, or read off the input arrays' shapes."""
        env = {self.sizes[k]: sp.Integer(int(v)) for k, v in values.items() if k in self.sizes}
        dims = [(d, s) for name, shape in self.input_shapes.items() if name in values
                for d, s in zip(shape, np.shape(values[name]))]
        for _ in range(len(dims) + 1):
            for d, s in dims:
                unknown = d.free_symbols - set(env)
                if len(unknown) == 1:
                    (u,) = unknown
                    env[u] = sp.Integer(sp.solve(sp.Eq(d.xreplace(env), s), u)[0])
        return env

    def evaluate(self, values: Mapping[str, Any]) -> np.ndarray:
        """The node's values for one instance (no batch axis): inputs as arrays, sizes and free index variables
        by name (sizes may be left to be read off the inputs' shapes). Input values enter as exact rationals."""
        env = self.bind(values)
        table: dict[sp.Basic, sp.Expr] = {}
        for name, base in self.inputs.items():
            a = np.asarray(values[name], dtype=float)
            table.update({base[pos] if pos else base: sp.Rational(float(a[pos])) for pos in np.ndindex(a.shape)})

        def fill(expr: sp.Expr, indices: tuple[sp.Symbol, ...], shape: tuple[sp.Expr, ...]) -> dict:
            expr = expr.xreplace(env)
            out = {}
            for pos in itertools.product(*(range(int(d.xreplace(env))) for d in shape)):
                v = expr.subs(dict(zip(indices, pos))).doit().xreplace(table).doit()
                if not v.is_number:
                    raise ValueError(f"not a number after substitution: {v}")
                out[pos] = v
            return out

        for name, eq in self.definitions.items():  # definitions are closed: no free index variables
            base, idx = (eq.lhs.base, tuple(eq.lhs.indices)) if isinstance(eq.lhs, sp.Indexed) else (eq.lhs, ())
            table.update({base[pos] if pos else base: v for pos, v in fill(eq.rhs, idx, self.def_shapes[name]).items()})
        expr, shape = next(((e, s) for c, e, s in self.early_returns if c.xreplace(env) == sp.true),
                           (self.expr, self.shape))
        free = {s: sp.Integer(int(values[s.name])) for s in expr.free_symbols
                if s.name in values and s.name not in self.sizes and s.name not in self.inputs}
        out = np.zeros([int(d.xreplace(env)) for d in shape])
        for pos, v in fill(expr.xreplace(free), self.indices, shape).items():
            out[pos] = float(v)
        return out

    def _repr_latex_(self) -> str:
        lines = [f"{sympy_latex(eq.lhs)} &= {sympy_latex(eq.rhs)}" for eq in self.definitions.values()]
        out = sympy_latex(sp.Indexed("out", *self.indices) if self.indices else sp.Symbol("out"))
        for cond, e, _ in self.early_returns:
            lines.append(f"{out} &= {sympy_latex(e)} && \\text{{if }} {sympy_latex(cond)}")
        lines.append(f"{out} &= {sympy_latex(self.expr)}")
        return "$$\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}$$"


class _Converter:
    def __init__(self) -> None:
        self.names = Printer()
        self.sizes: dict[str, sp.Symbol] = {}
        self.inputs: dict[str, sp.Expr] = {}
        self.input_shapes: dict[str, tuple[sp.Expr, ...]] = {}
        self.defs: dict[str, sp.Eq] = {}
        self.def_shapes: dict[str, tuple[sp.Expr, ...]] = {}
        self.done: set[Node] = set()

    def affine(self, a: Affine, env: Mapping[Sym, sp.Expr]) -> sp.Expr:
        out: sp.Expr = sp.Integer(a.const)
        for s, c in a.terms:
            if s.kind == "size":
                term = self.sizes.setdefault(s.name, sp.Symbol(s.name, integer=True, nonnegative=True))
            else:
                term = env.get(s, _var(s.name))
            out = out + c * term
        return out

    def shape(self, shape: tuple[Affine, ...]) -> tuple[sp.Expr, ...]:
        return tuple(self.affine(d, {}) for d in shape)

    def base(self, name: str, rank: int) -> sp.Expr:
        return sp.IndexedBase(name) if rank else sp.Symbol(name)

    def ref(self, base: sp.Expr, idx: tuple[sp.Expr, ...]) -> sp.Expr:
        return base[idx] if idx else base

    def fresh(self, name: str, idx: tuple[sp.Expr, ...], env: Mapping[Sym, sp.Expr]) -> sp.Symbol:
        taken = {s.name for e in (*idx, *env.values()) for s in e.free_symbols}
        while name in taken:
            name += "'"
        return _var(name)

    def define(self, d: Node) -> sp.Expr:
        name = self.names.name_of(d)
        base = self.base(name, len(d.shape))
        if d not in self.done:
            self.done.add(d)
            value = d.src[0]
            avoid = _var_names(value)
            if value.op is Op.STACK and value.arg.lo == Affine():
                idx = (_var(value.arg.name), *_axis_symbols(value.shape[1:], avoid | {value.arg.name}))
            else:
                idx = _axis_symbols(d.shape, avoid)
            rhs = self.elem(value, idx, {})
            self.defs[name] = sp.Eq(self.ref(base, idx), rhs, evaluate=False)
            self.def_shapes[name] = self.shape(d.shape)
        return base

    def whole(self, n: Node, idx: tuple[sp.Expr, ...], env: Mapping[Sym, sp.Expr]) -> sp.Expr:
        """A whole tensor, as an argument of an uninterpreted function (idx: the caller's indices, to avoid)."""
        if n.op in (Op.INPUT, Op.DEF):
            return self.elem(n, (), env)
        if OPS[n.op].kind == "selection" and n.op is not Op.KTH:  # a whole tensor already
            return self.elem(n, (), env)
        if not n.shape:
            return self.elem(n, (), env)
        syms = _axis_symbols(n.shape, _var_names(n) | {s.name for e in (*idx, *env.values()) for s in e.free_symbols})
        return sp.Lambda(syms, self.elem(n, syms, env))

    def input(self, n: Node) -> sp.Expr:
        name, shape = n.arg
        self.input_shapes[name] = self.shape(shape)
        return self.inputs.setdefault(name, self.base(name, len(shape)))

    def function(self, name: str, n: Node, idx: tuple[sp.Expr, ...], env: Mapping[Sym, sp.Expr],
                 extra: Affine | None = None) -> sp.Expr:
        """An uninterpreted function of whole tensors, then the element's indices."""
        args = [self.whole(s, idx, env) for s in n.src]
        if extra is not None:
            args.append(self.affine(extra, env))
        return sp.Function(name)(*args, *idx)

    def elem(self, n: Node, idx: tuple[sp.Expr, ...], env: Mapping[Sym, sp.Expr]) -> sp.Expr:
        return OPS[n.op].sympy(self, n, idx, env)

    # --- the pieces the op table's `sympy` facets use ---------------------------------------------------------
    sp = sp

    def input_ref(self, n: Node, idx: tuple[sp.Expr, ...]) -> sp.Expr:
        return self.ref(self.input(n), idx)

    def define_ref(self, n: Node, idx: tuple[sp.Expr, ...]) -> sp.Expr:
        return self.ref(self.define(n), idx)

    def number(self, v: float) -> sp.Expr:
        return _number(v)

    def binary(self, n: Node, idx: tuple[sp.Expr, ...], env: Mapping[Sym, sp.Expr], fn: Any) -> sp.Expr:
        a, b = (self.elem(s, self.broadcast(s, n, idx), env) for s in n.src)
        return fn(a, b)

    def delta(self, n: Node, idx: tuple[sp.Expr, ...], env: Mapping[Sym, sp.Expr]) -> sp.Expr:
        x = n.src[0]
        if x.op is Op.SUB:
            return sp.KroneckerDelta(*(self.elem(s, self.broadcast(s, x, idx), env) for s in x.src))
        return sp.KroneckerDelta(self.elem(x, idx, env), 0)

    def index(self, n: Node, idx: tuple[sp.Expr, ...], env: Mapping[Sym, sp.Expr]) -> sp.Expr:
        axis = n.arg
        return self.elem(n.src[0], (*idx[:axis], self.affine(n.src[1].arg, env), *idx[axis:]), env)

    def slice(self, n: Node, idx: tuple[sp.Expr, ...], env: Mapping[Sym, sp.Expr]) -> sp.Expr:
        axis, start, _ = n.arg
        return self.elem(n.src[0], (*idx[:axis], idx[axis] + self.affine(start, env), *idx[axis + 1:]), env)

    def cat(self, n: Node, idx: tuple[sp.Expr, ...], env: Mapping[Sym, sp.Expr]) -> sp.Expr:
        axis, offset, pieces = n.arg, sp.Integer(0), []
        for part in n.src:
            size = self.affine(part.shape[axis], env)
            at = (*idx[:axis], idx[axis] - offset, *idx[axis + 1:])
            pieces.append((self.elem(part, at, env), sp.Lt(idx[axis], offset + size)))
            offset = offset + size
        return sp.Piecewise(*pieces[:-1], (pieces[-1][0], True))

    def sum(self, n: Node, idx: tuple[sp.Expr, ...], env: Mapping[Sym, sp.Expr]) -> sp.Expr:
        v: Sym = n.arg
        s = self.fresh(v.name, idx, env)
        body = self.elem(n.src[0], idx, {**env, v: s})
        return sp.Sum(body, (s, self.affine(v.lo, env), self.affine(v.hi, env) - 1))

    def stack(self, n: Node, idx: tuple[sp.Expr, ...], env: Mapping[Sym, sp.Expr]) -> sp.Expr:
        v = n.arg
        return self.elem(n.src[0], idx[1:], {**env, v: self.affine(v.lo, env) + idx[0]})

    def reduce(self, kind: str, n: Node, idx: tuple[sp.Expr, ...], env: Mapping[Sym, sp.Expr]) -> sp.Expr:
        """mean: a Sum over a fresh index divided by the length; max: MaxOver, expanded once the length is known."""
        axis, x = OPS[n.op].axis(n), n.src[0]
        d = x.shape[axis]
        size = self.affine(d, env)
        name = d.terms[0][0].name.lower() if len(d.terms) == 1 and not d.const else "a"
        s = self.fresh(name, idx, env)
        body = self.elem(x, (*idx[:axis], s, *idx[axis:]), env)
        if kind == "max":
            return MaxOver(sp.Lambda(s, body), size - 1)
        return sp.Sum(body, (s, 0, size - 1)) / size

    def broadcast(self, operand: Node, n: Node, idx: tuple[sp.Expr, ...]) -> tuple[sp.Expr, ...]:
        off = len(n.shape) - len(operand.shape)
        return tuple(idx[off + a] if d == n.shape[off + a] else sp.Integer(0) for a, d in enumerate(operand.shape))


def to_sympy(expr: Node | Program, indices: tuple[str, ...] | None = None) -> SympyForm:
    """A node, or a program's output with its definitions and early returns, as SymPy (see the module docstring).

    `indices` names the symbols of the output's axes (default: c for an axis of size C, else t, u, ...).
    """
    cv = _Converter()
    root = expr.output if isinstance(expr, Program) else expr
    roots = expr.roots() if isinstance(expr, Program) else (expr,)
    avoid = set().union(*(_var_names(r) for r in roots))
    idx = tuple(_var(i) for i in indices) if indices is not None else _axis_symbols(root.shape, avoid)
    if len(idx) != len(root.shape):
        raise ValueError(f"{len(idx)} index names for a node of rank {len(root.shape)}")
    out = cv.elem(root, idx, {})
    early: list[tuple[sp.Basic, sp.Expr, tuple[sp.Expr, ...]]] = []
    if isinstance(expr, Program):
        for e in expr.early_returns:
            value = cv.elem(e.value, idx[len(idx) - len(e.value.shape):], {})
            relation = sp.Eq if e.relation == "==" else sp.Le
            early.append((relation(cv.affine(e.lhs, {}), cv.affine(e.rhs, {})), value, cv.shape(e.value.shape)))
        for n in expr.inputs:
            cv.input(n)
    return SympyForm(out, idx, cv.shape(root.shape), cv.defs, cv.sizes, cv.inputs, cv.input_shapes,
                     tuple(early), cv.def_shapes)
