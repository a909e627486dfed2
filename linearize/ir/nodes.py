"""IR nodes: interned and immutable (op, src, arg), with the shape, dtype and free index variables inferred when
built. `node()` consults the op table (ops.py) for the operands' arity and shape, so a malformed program fails where
it is written, with an error naming the node and the mismatch."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from .affine import Affine, IRError, Shape, Sym, bound
from .opcodes import Op
from .ops import OPS

__all__ = ["Affine", "IRError", "Node", "Op", "Shape", "Sym", "affine", "bound", "describe", "node"]


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
        return _printer[0](self)

    # operators live in build.py, attached there, so that the core stays free of sugar
    __hash__ = object.__hash__


# the notation printer (printing.py, which depends on this module) installs itself here: nodes print in the notation
# without this module importing the printer
_printer: list[Callable[[Node], str]] = [lambda n: f"<{n.op.name.lower()} node>"]


def set_printer(show: Callable[[Node], str]) -> None:
    _printer[0] = show


_cache: weakref.WeakValueDictionary[tuple, Node] = weakref.WeakValueDictionary()


def describe(n: Node) -> str:
    text = _printer[0](n)
    return f"{n.op.name.lower()} `{text if len(text) < 80 else text[:77] + '...'}`"


def _what(op: Op, src: tuple[Node, ...]) -> str:
    """op(operands) in the notation, for error messages."""
    args = ", ".join(_printer[0](s) for s in src)
    return f"{OPS[op].name}({args if len(args) < 100 else args[:97] + '...'})"


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
    spec = OPS[op]
    if spec.arity is not None and len(src) != spec.arity:
        raise IRError(f"{spec.name} takes {spec.arity} operand(s), got {len(src)}")
    shape, dtype = spec.shape(src, arg, lambda: _what(op, src))
    free = frozenset().union(*(s.free for s in src)) if src else frozenset()
    if spec.binds:
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

