"""The IR: immutable, interned nodes (op, src, arg) with shapes inferred from symbolic sizes.

Integer index arithmetic (sizes such as N and k, index variables such as i, j, r) is kept in a
canonical affine form, `Affine`, so that `N + 1 - 1` and `N` are the same shape and the same node.
Every other node is built by `node()`, which checks the operands and infers the shape, so a
malformed program fails where it is written, with an error naming the node and the mismatch.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class IRError(ValueError):
    """A malformed program: the message names the node and what disagrees."""


@dataclass(frozen=True)
class Sym:
    """A size (N, C, H, k) or an index variable ranging over [lo, hi)."""

    name: str
    kind: str  # "size" or "var"
    lo: Affine | None = None
    hi: Affine | None = None

    def sort_key(self) -> tuple:
        return (self.kind != "size", self.name, str(self.lo), str(self.hi))

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Affine:
    """const + sum(coeff * sym): the only integer arithmetic index expressions may use."""

    terms: tuple[tuple[Sym, int], ...] = ()
    const: int = 0

    @staticmethod
    def of(x: Affine | int | Sym) -> Affine:
        if isinstance(x, Affine):
            return x
        if isinstance(x, Sym):
            return Affine(((x, 1),), 0)
        if isinstance(x, bool) or not isinstance(x, int):
            raise IRError(f"index expression must be an integer or affine in sizes and index variables, got {x!r}")
        return Affine((), x)

    @staticmethod
    def _make(coeffs: dict[Sym, int], const: int) -> Affine:
        terms = tuple(sorted(((s, c) for s, c in coeffs.items() if c), key=lambda t: t[0].sort_key()))
        return Affine(terms, const)

    def __add__(self, other: Affine | int) -> Affine:
        other = Affine.of(other)
        coeffs = dict(self.terms)
        for s, c in other.terms:
            coeffs[s] = coeffs.get(s, 0) + c
        return Affine._make(coeffs, self.const + other.const)

    def __neg__(self) -> Affine:
        return Affine(tuple((s, -c) for s, c in self.terms), -self.const)

    def __sub__(self, other: Affine | int) -> Affine:
        return self + (-Affine.of(other))

    def scale(self, factor: int) -> Affine:
        return Affine._make({s: c * factor for s, c in self.terms}, self.const * factor)

    @property
    def syms(self) -> frozenset[Sym]:
        return frozenset(s for s, _ in self.terms)

    @property
    def vars(self) -> frozenset[Sym]:
        return frozenset(s for s, _ in self.terms if s.kind == "var")

    @property
    def is_const(self) -> bool:
        return not self.terms

    def coeff(self, sym: Sym) -> int:
        return dict(self.terms).get(sym, 0)

    def subs(self, mapping: dict[Sym, Affine]) -> Affine:
        out = Affine((), self.const)
        for s, c in self.terms:
            out = out + (mapping[s].scale(c) if s in mapping else Affine(((s, c),), 0))
        return out

    def value(self, env: dict[Sym, int]) -> int:
        try:
            return self.const + sum(c * env[s] for s, c in self.terms)
        except KeyError as e:
            raise IRError(f"size {e.args[0].name} has no value") from None

    def __str__(self) -> str:
        parts: list[str] = []
        for s, c in self.terms:
            mag = "" if abs(c) == 1 else f"{abs(c)}*"
            parts.append(("- " if c < 0 else "+ ") + mag + s.name)
        if self.const or not parts:
            parts.append(("- " if self.const < 0 else "+ ") + str(abs(self.const)))
        text = " ".join(parts)
        return text[2:] if text.startswith("+ ") else "-" + text[2:]


def bound(a: Affine, upper: bool) -> Affine:
    """The exact max (upper) or min of `a` over its index variables' nested ranges, in sizes only.

    Innermost variables are eliminated first, so `j` in [0, i) with `i` in [0, N) gives max j = N - 2.
    """
    for _ in range(64):
        vs = a.vars
        if not vs:
            return a
        # a variable no other remaining variable's range refers to is innermost
        inner = next(v for v in sorted(vs, key=Sym.sort_key)
                     if not any(v in (w.lo.vars | w.hi.vars) for w in vs if w != v))
        take_hi = (a.coeff(inner) > 0) == upper
        a = a.subs({inner: inner.hi - 1 if take_hi else inner.lo})
    raise IRError(f"index variable ranges refer to each other cyclically in {a}")


class Op(enum.Enum):
    INPUT = enum.auto()        # arg: (name, shape)
    CONST = enum.auto()        # arg: number
    AFFINE = enum.auto()       # arg: Affine -- sizes, index variables and their affine combinations
    ADD = enum.auto()
    SUB = enum.auto()
    MUL = enum.auto()
    DIV = enum.auto()
    NEG = enum.auto()
    HEAVISIDE = enum.auto()    # 1 if x > 0 else 0 (strict)
    DELTA = enum.auto()        # 1 if x == 0 else 0
    INDEX = enum.auto()        # src: (x, AFFINE e); arg: axis -- x[..., e, ...]
    SLICE = enum.auto()        # arg: (axis, start, stop)
    CAT = enum.auto()          # arg: axis
    SUM = enum.auto()          # arg: var; sum over var in [var.lo, var.hi)
    STACK = enum.auto()        # arg: var; [body for var in range(var.lo, var.hi)] as a new leading axis
    DEF = enum.auto()          # arg: name; a named definition, computed once and shared
    MEAN = enum.auto()         # arg: axis
    ARGSORT = enum.auto()      # arg: descending; stable
    SORT_BY_KEY = enum.auto()  # src: (X, key); arg: descending; stable
    TOPK = enum.auto()         # src: (key,); arg: k (Affine); indices of the k largest, stable, descending
    GATHER = enum.auto()       # src: (X, idx); X[idx] along the leading axis
    COMPLEMENT = enum.auto()   # src: (idx,); arg: n; ascending indices in [0, n) not in idx
    KTH = enum.auto()          # src: (X, key, AFFINE r); arg: descending; the row of X with stable rank r
    RANK = enum.auto()         # src: (key,); arg: descending; each key's 0-based stable rank, a permutation


ELEMENTWISE = {Op.ADD, Op.SUB, Op.MUL, Op.DIV}
UNARY = {Op.NEG, Op.HEAVISIDE, Op.DELTA}
BINDERS = {Op.SUM, Op.STACK}
DATA_DEPENDENT = {Op.ARGSORT, Op.SORT_BY_KEY, Op.TOPK, Op.GATHER, Op.COMPLEMENT, Op.KTH, Op.RANK}

Shape = tuple[Affine, ...]


class Node:
    """An interned IR node: building the same (op, src, arg) twice gives the same object."""

    __slots__ = ("__weakref__", "arg", "dtype", "free", "op", "shape", "src")
    op: Op
    src: tuple[Node, ...]
    arg: Any
    shape: Shape
    dtype: str  # "float" for data, "int" for indices
    free: frozenset[Sym]  # index variables this node depends on and nothing binds

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("IR nodes are immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("IR nodes are immutable")

    @property
    def affine(self) -> Affine:
        if self.op is not Op.AFFINE:
            raise IRError(f"{describe(self)} is not an index expression")
        return self.arg

    def toposort(self) -> list[Node]:
        """Every node reachable from this one, operands before users."""
        order: list[Node] = []
        seen: set[int] = set()
        stack: list[tuple[Node, bool]] = [(self, False)]
        while stack:
            n, expanded = stack.pop()
            if expanded:
                order.append(n)
                continue
            if id(n) in seen:
                continue
            seen.add(id(n))
            stack.append((n, True))
            stack.extend((s, False) for s in reversed(n.src) if id(s) not in seen)
        return order

    def __repr__(self) -> str:
        from .printing import show
        return show(self)

    # operators live in build.py, attached there, so that the core stays free of sugar
    __hash__ = object.__hash__


_cache: weakref.WeakValueDictionary[tuple, Node] = weakref.WeakValueDictionary()


def describe(n: Node) -> str:
    from .printing import show
    text = show(n)
    return f"{n.op.name.lower()} `{text if len(text) < 80 else text[:77] + '...'}`"


def _affine_vars(arg: Any) -> frozenset[Sym]:
    if isinstance(arg, Affine):
        return arg.vars
    if isinstance(arg, Sym) and arg.kind == "var":
        return frozenset({arg}) | arg.lo.vars | arg.hi.vars
    if isinstance(arg, tuple):
        return frozenset().union(*(_affine_vars(a) for a in arg)) if arg else frozenset()
    return frozenset()


def node(op: Op, src: tuple[Node, ...] = (), arg: Any = None) -> Node:
    """Build (or fetch the interned) node, checking operands and inferring its shape."""
    key = (op, tuple(id(s) for s in src), type(arg).__name__, arg)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    from .shapes import infer
    shape, dtype = infer(op, src, arg)
    free = frozenset().union(*(s.free for s in src)) if src else frozenset()
    if op in BINDERS:
        free = (free - {arg}) | arg.lo.vars | arg.hi.vars
    elif op is not Op.INPUT:
        free = free | _affine_vars(arg)
    n = object.__new__(Node)
    for name, value in (("op", op), ("src", src), ("arg", arg), ("shape", shape), ("dtype", dtype), ("free", free)):
        object.__setattr__(n, name, value)
    _cache[key] = n
    return n


def affine(x: Affine | int | Sym) -> Node:
    return node(Op.AFFINE, (), Affine.of(x))


def walk(root: Node) -> Iterator[Node]:
    yield from root.toposort()
