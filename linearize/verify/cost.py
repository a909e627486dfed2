"""Operation counts on the IR of a linearized form, as SymPy formulas in the sizes.

    c = cost(linearize(get("evit"), SHARED_PIPELINE).result)
    c.formulas["comparisons"]          # N*(N - 1)/2
    c.at(N=196, k=138, C=768, H=12)    # {"comparisons": 19110, "rank_tests": ..., ...}

Every node is counted once (nodes are interned, so a shared definition is one node), at each point of its free
index variables -- nested ranges, so a ragged sum<j < i> counts N(N - 1)/2 points -- times its own elements. A
table (a definition stacked over its indices) counts only the entries its uses read, when every use reads the same
set of entries. What counts as what:

- comparison: heaviside or delta of a data value (a difference of two scores); its subtraction is part of it;
- rank test: heaviside or delta of an integer count (a rank, made of comparisons) against an index expression;
- multiplication: `*` and `/`, and the 1/L of a mean;
- addition: `+` and `-`, a sum of L terms (L - 1 additions; none when its range is empty), a mean over L (L - 1);
- square root: `sqrt` (ToMe's L2 norms), one per element;
- exponential: `exp` (a softmax's numerator), one per element.
Index arithmetic (sizes, index variables) is free: it is known before any data is. The k == N early return is
not counted (it does nothing).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import sympy as sp

from ..ir import OPS, Affine, Node, Op, Sym, bound
from ..ir.algebra import nonneg
from ..ir.program import Program

COUNTS = ("comparisons", "rank_tests", "multiplications", "additions", "exponentials", "square_roots")
OPTIONAL = ("exponentials", "square_roots")  # the CLI prints these only when a program has any


class CostError(ValueError):
    """The program still has data-dependent ops: count its linearized form."""


@dataclass
class Cost:
    program: str
    formulas: dict[str, sp.Expr]  # by COUNTS
    sizes: dict[str, sp.Symbol]

    def at(self, **sizes: int) -> dict[str, int]:
        """The counts at the given sizes (every size the formulas use)."""
        env = {self.sizes[name]: sp.Integer(value) for name, value in sizes.items() if name in self.sizes}
        out = {}
        for name, f in self.formulas.items():
            value = sp.sympify(f.xreplace(env))  # a lone size T becomes a Python int
            if not value.is_number:
                missing = ", ".join(sorted(str(s) for s in value.free_symbols))
                raise ValueError(f"size {missing} has no value")
            out[name] = int(value)
        return out


class _Counter:
    def __init__(self, program: Program):
        self.program = program
        self.sizes: dict[str, sp.Symbol] = {}
        self.vars: dict[Sym, sp.Symbol] = {}
        self.users: dict[Node, list[Node]] = defaultdict(list)
        self.data: set[Node] = set()  # nodes that depend on an input
        self.integer: dict[Node, bool] = {}  # nodes whose every value is an integer (a count, an index)

    def read(self) -> tuple[list[Node], dict[Node, sp.Expr]]:
        """The program's nodes, operands first, with their users, which depend on data and which are integers;
        and the entries each table's body is read at (`_demands`). A selection left is a CostError."""
        program = self.program
        nodes = list(dict.fromkeys(n for o in program.outputs for n in o.toposort()))  # several outputs share nodes
        bad = [n for n in nodes if OPS[n.op].cost is None]
        if bad:
            raise CostError(f"{program.name} is not linearized ({OPS[bad[0].op].name} remains): count linearize(...)")
        for n in nodes:
            for s in n.src:
                self.users[s].append(n)
            if n.op is Op.INPUT or any(s in self.data for s in n.src):
                self.data.add(n)
            self.integer[n] = OPS[n.op].integral(n, [self.integer[s] for s in n.src])
        return nodes, _demands(self, nodes, self.users)

    # --- what the op table's `cost` facets ask ---------------------------------------------------------------
    def comparison_kind(self, n: Node) -> str:
        """A step of a data value is a comparison; of an integer count (a rank) against an index, a rank test."""
        return "rank_tests" if self.integer[n.src[0]] else "comparisons"

    def only_compared(self, n: Node) -> bool:
        return all(OPS[u.op].kind == "step" for u in self.users[n])

    def sum_additions(self, n: Node) -> sp.Expr:
        """A sum of L terms is L - 1 additions at each point where its range is not empty."""
        terms = self.points(self.ranges(n.free | {n.arg}))
        return (terms - self.nonempty(n)) * self.elements(n)

    def length(self, n: Node) -> sp.Expr:
        """The length of the axis a reduction reduces."""
        return self.expr(n.src[0].shape[OPS[n.op].axis(n)])

    def sym(self, s: Sym) -> sp.Expr:
        if s.derived:  # T // 2
            return sp.floor(self.expr(s.lo) / s.hi.const)
        if s.kind == "size":
            return self.sizes.setdefault(s.name, sp.Symbol(s.name, integer=True, positive=True))
        return self.vars.setdefault(s, sp.Symbol(f"{s.name}_{len(self.vars)}", integer=True))

    def expr(self, a: Affine) -> sp.Expr:
        return sp.Integer(a.const) + sum((c * self.sym(s) for s, c in a.terms), sp.Integer(0))

    def ranges(self, free: frozenset[Sym]) -> dict[Sym, tuple[Affine, Affine]]:
        return {v: (bound(v.lo, False, free), bound(v.hi, True, free)) for v in free}

    def points(self, ranges: dict[Sym, tuple[Affine, Affine]]) -> sp.Expr:
        """The number of points of nested ranges (each range may use the others', outermost first)."""
        todo, total = dict(ranges), sp.Integer(1)
        while todo:  # sum out a variable no remaining range refers to
            v = next(v for v in sorted(todo, key=Sym.sort_key)
                     if not any(v in (lo.vars | hi.vars) for w, (lo, hi) in todo.items() if w != v))
            lo, hi = todo.pop(v)
            total = sp.summation(total, (self.sym(v), self.expr(lo), self.expr(hi) - 1))
        return sp.expand(total)

    def elements(self, n: Node) -> sp.Expr:
        return sp.Mul(*(self.expr(d) for d in n.shape))

    def nonempty(self, n: Node) -> sp.Expr:
        """Points of a sum's free variables where its range is not empty."""
        v, ranges = n.arg, self.ranges(n.free)
        length = v.hi - v.lo
        if len(length.vars) == 1:
            (u,) = length.vars
            c, lo, hi = length.coeff(u), *ranges[u]
            if c == 1 and not (length - Affine.of(u)).vars:  # u >= 1 - rest
                bound_ = Affine.of(1) - (length - Affine.of(u))
                ranges[u] = (bound_ if nonneg(bound_ - lo, self.program) else lo, hi)
            elif c == -1 and not (length + Affine.of(u)).vars:  # u <= rest - 1, i.e. u < rest
                bound_ = length + Affine.of(u)
                ranges[u] = (lo, bound_ if nonneg(hi - bound_, self.program) else hi)
        return self.points(ranges)


def _demands(c: _Counter, nodes: list[Node], users: dict[Node, list[Node]]) -> dict[Node, sp.Expr]:
    """For a table d[s1, ..., sr] read only by full index chains that all read the same entries: the number of
    entries read, for the nodes of its body that depend on exactly its indices."""
    out: dict[Node, sp.Expr] = {}
    for d in (n for n in nodes if n.op is Op.DEF):
        stacks, body = [], d.src[0]
        while body.op is Op.STACK:
            stacks.append(body.arg)
            body = body.src[0]
        chains = [u for u in users[d]]
        for _ in stacks[1:]:
            chains = [w for u in chains if u.op is Op.INDEX and u.arg == 0 for w in users[u]]
        if not stacks or not chains or any(u.op is not Op.INDEX or u.arg != 0 for u in chains):
            continue
        images = [_image(u, len(stacks)) for u in chains]
        if any(im is None for im in images) or not all(_same(c.program, images[0], im) for im in images[1:]):
            continue
        count = c.points(c.ranges(frozenset(images[0])))
        outside = {m for root in c.program.outputs for m in _reachable(root, d)}
        for n in body.toposort():
            if n.free == frozenset(stacks) and n not in outside:
                out[n] = count
    return out


def _image(u: Node, r: int) -> list[Sym] | None:
    """The variables a full index chain d[v1]...[vr] reads the table at, when they are distinct plain variables."""
    idx = []
    for _ in range(r):
        a: Affine = u.src[1].arg
        if len(a.terms) != 1 or a.const or a.terms[0][1] != 1 or a.terms[0][0].kind != "var":
            return None
        idx.append(a.terms[0][0])
        u = u.src[0]
    idx.reverse()
    return idx if len(set(idx)) == r else None


def _same(program: Program, a: list[Sym], b: list[Sym]) -> bool:
    """Whether two chains read the same entries: each one's range constraints hold on the other's points."""
    def holds(x: list[Sym], y: list[Sym]) -> bool:  # y's constraints, at x's points
        to_x = {v: Affine.of(w) for v, w in zip(y, x)}
        return all(v.lo.vars <= set(y) and v.hi.vars <= set(y) and nonneg(Affine.of(w) - v.lo.subs(to_x), program)
                   and nonneg(v.hi.subs(to_x) - 1 - Affine.of(w), program) for v, w in zip(y, x))
    return holds(a, b) and holds(b, a)


def _reachable(root: Node, leaf: Node) -> list[Node]:
    """Nodes reachable from root without entering `leaf`."""
    seen: dict[Node, None] = {}
    stack = [root]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen[n] = None
            stack.extend(s for s in n.src if s is not leaf)
    return list(seen)


def cost(program: Program) -> Cost:
    """The counts of a linearized program (see the module docstring): each node's `cost` facet in the op table."""
    c = _Counter(program)
    nodes, demand = c.read()
    counts = dict.fromkeys(COUNTS, sp.Integer(0))
    for n in (n for n in nodes if n in c.data):
        each = demand.get(n) if n in demand else c.points(c.ranges(n.free))
        for name, amount in OPS[n.op].cost(c, n, each * c.elements(n)).items():
            counts[name] += amount
    return Cost(program.name, {k: sp.factor(sp.expand(v)) for k, v in counts.items()}, c.sizes)


def describe(result: Cost, values: dict[str, int]) -> dict[str, Any]:
    """JSON-ready: the counts at the given sizes, and the formulas as text."""
    return {"program": result.program, "sizes": values, **result.at(**values),
            "formulas": {k: str(v) for k, v in result.formulas.items()}}
