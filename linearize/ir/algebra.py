"""Algebra on nodes: substituting index variables, replacing subterms, products and their factors, and facts about
sizes that follow from a program's ranges. Used by the rewrite rules, the planner and the cost model alike."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .affine import Affine, Sym, bound
from .nodes import Node, affine, node
from .opcodes import Op
from .program import Program


def nonneg(a: Affine, program: Program | None = None) -> bool:
    """True when a >= 0 is provable from sizes >= 1 and the program's size ranges (lo <= s <= hi).

    Index variables are first replaced by their extreme values; then each constrained size is replaced by
    the bound that makes `a` smallest, until only unconstrained sizes (each >= 1) remain.
    """
    a = bound(a, upper=False)
    ranges = {c.size: (c.lo, c.hi) for c in (program.constraints if program else ())}
    for _ in range(16):
        sym = next((s for s in a.syms if s in ranges), None)
        if sym is None:
            break
        lo, hi = ranges[sym]
        a = a.subs({sym: lo if a.coeff(sym) > 0 else hi})
    if any(s in ranges for s in a.syms):
        return False
    return all(c >= 0 for _, c in a.terms) and a.const + sum(c for _, c in a.terms) >= 0


def replace_nodes(root: Node, mapping: Mapping[Node, Node]) -> Node:
    """root with every occurrence of each key node replaced by its value (ancestors rebuilt)."""
    if not mapping:
        return root
    out: dict[Node, Node] = {}
    for n in root.toposort():
        if n in mapping:
            out[n] = mapping[n]
        else:
            src = tuple(out[s] for s in n.src)
            out[n] = n if all(a is b for a, b in zip(src, n.src)) else node(n.op, src, n.arg)
    return out[root]


def _mentions(n: Node) -> frozenset[Sym]:
    """Index variables a node depends on, including those its free variables' ranges use."""
    seen: set[Sym] = set()
    todo = list(n.free)
    while todo:
        v = todo.pop()
        if v not in seen:
            seen.add(v)
            todo.extend(v.lo.vars | v.hi.vars)
    return frozenset(seen)


def substitute(root: Node, mapping: Mapping[Sym, Affine]) -> Node:
    """root with index variables replaced by affine expressions; bound variables are renamed where needed."""
    cache: dict[tuple[Node, tuple], Node] = {}

    def sub_sym(v: Sym, m: Mapping[Sym, Affine]) -> Sym:
        return Sym(v.name, v.kind, v.lo.subs(m), v.hi.subs(m))

    def go(n: Node, m: Mapping[Sym, Affine]) -> Node:
        if not (_mentions(n) & m.keys()):
            return n
        key = (n, tuple(sorted(((k.sort_key(), str(v)) for k, v in m.items()))))
        if key in cache:
            return cache[key]
        if n.op is Op.AFFINE:
            out = affine(n.arg.subs(m))
        elif n.op in (Op.SUM, Op.STACK):
            v: Sym = n.arg
            inner = {k: e for k, e in m.items() if k != v}
            captured = any(v.name == u.name for e in inner.values() for u in e.vars)
            new_v = sub_sym(v, inner)
            if captured:
                new_v = Sym(v.name + "'", "var", new_v.lo, new_v.hi)
            if new_v != v:
                inner[v] = Affine.of(new_v)
            out = node(n.op, (go(n.src[0], inner) if inner else n.src[0],), new_v)
        else:
            src = tuple(go(s, m) for s in n.src)
            out = n if all(a is b for a, b in zip(src, n.src)) else node(n.op, src, n.arg)
        cache[key] = out
        return out

    return go(root, dict(mapping))


def fresh(name: str, lo: Affine | int, hi: Affine | int, avoid: Iterable[Node], sizes: Iterable[str] = ()) -> Sym:
    """An index variable named `name` (primed as needed) that none of `avoid` already uses, nor a size in `sizes`
    (POMT's size r and a rank variable r would print alike)."""
    taken = {v.name for n in avoid for v in _mentions(n)} | set(sizes)
    while name in taken:
        name += "'"
    return Sym(name, "var", Affine.of(lo), Affine.of(hi))


def factors(n: Node) -> list[Node]:
    """The factors of a product tree, in order."""
    return factors(n.src[0]) + factors(n.src[1]) if n.op is Op.MUL else [n]


def product(parts: list[Node]) -> Node:
    out = parts[0]
    for p in parts[1:]:
        out = node(Op.MUL, (out, p))
    return out
