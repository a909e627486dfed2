"""What a program compares, and the checks that make one representative per region enough (docs/prove.md).

A *read* is a chain of views -- DEF, NEG, INDEX, SLICE, and MEAN or AMAX over a reduced-only axis (the heads) --
from a score input (Program.role) to a node some other op uses. Every use of a score input is a read. A read in a
*comparison position* (a heaviside or delta of a difference of two reads, the key of a topk, rank or sort, the
operand of an amax) makes the entries it reads *compared*; every other use reads their values. `analyze` finds the
reads and names what would make a comparison depend on more than the weak ordering of the compared entries;
`Layout` says, at concrete sizes, which entries of the score inputs are compared and which are only read as
values; `degree` bounds the output's degree in the score values and in the feature/value inputs with the
comparisons held fixed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ir import OPS, Affine, Node, Op, Sym
from ..ir.form import degree as form_degree
from ..ir.printing import show
from ..ir.program import InputError, Program

KEEP = {op for op, s in OPS.items() if s.order == "compare"}  # read only the order of their keys: constant on a region
MOVE = {op for op, s in OPS.items() if s.order == "move"}  # rows moved by such an order: the rows are values
VIEWS = {Op.DEF, Op.NEG, Op.INDEX, Op.SLICE}  # a read's chain: these, and a reduction over a reduced-only axis
REDUCE = {op for op, s in OPS.items() if s.kind == "reduction"}  # mean, amax


class ProveError(ValueError):
    """The program is outside what the prover can settle; the message says why."""


def nodes(program: Program) -> list[Node]:
    """Every node of every root (output and early returns), operands first, once."""
    seen: dict[Node, None] = {}
    for r in program.roots():
        for n in r.toposort():
            seen.setdefault(n, None)
    return list(seen)


def _syms(a: Any) -> set[Sym]:
    """The sizes and index variables an arg, shape or affine expression mentions (ranges included)."""
    if isinstance(a, Affine):
        return set(a.syms).union(*(_syms(s.lo) | _syms(s.hi) for s in a.vars)) if a.vars else set(a.syms)
    if isinstance(a, Sym):
        return {a} | (_syms(a.lo) | _syms(a.hi) if a.kind == "var" else set())
    if isinstance(a, tuple):
        return set().union(*(_syms(e) for e in a)) if a else set()
    return set()


def _sizes(a: Any) -> set[Sym]:
    return {s for s in _syms(a) if s.kind == "size"}


@dataclass
class Analysis:
    """The reads of one program and what they are used for; `problems` is empty when a region settles it."""

    program: Program
    scores: tuple[str, ...]  # the score inputs
    linear: tuple[str, ...]  # the feature and value inputs
    chain: set[Node] = field(default_factory=set)
    compared: set[Node] = field(default_factory=set)  # reads in comparison positions
    reads: set[Node] = field(default_factory=set)  # every read: chain nodes used by another op (or returned)
    problems: list[str] = field(default_factory=list)
    averaged: set[Sym] = field(default_factory=set)  # sizes only ever reduced over (one settles all: H)
    reducers: dict[Sym, set[Op]] = field(default_factory=dict)  # how each of those is reduced (mean, amax)

    def sign(self, read: Node) -> int:
        """+1 or -1: the parity of the negations between the read and its score input."""
        s, n = 1, read
        while n.op is not Op.INPUT:
            s, n = (-s if n.op is Op.NEG else s), n.src[0]
        return s

    def source(self, read: Node) -> str:
        n = read
        while n.op is not Op.INPUT:
            n = n.src[0]
        return n.arg[0]


def analyze(program: Program) -> Analysis:
    """Find the reads of the score inputs, and why a comparison might depend on more than the weak ordering."""
    scores = tuple(n for n in program.input_names if program.role(n) == "score")
    linear = tuple(n for n in program.input_names if program.role(n) != "score")
    a = Analysis(program, scores, linear)
    every = nodes(program)
    # a reduction belongs to a read when it reduces an axis only reductions see (the heads): which axes those are
    # depends on which nodes are reads, so iterate to a fixed point from "every reduction of a read"
    reducible = {s for n in every if n.op in REDUCE for s in _sizes(n.src[0].shape[OPS[n.op].axis(n)])}
    for _ in range(8):
        a.chain = set()
        for n in every:
            if (n.op is Op.INPUT and n.arg[0] in scores) or (n.src and n.src[0] in a.chain and (
                    n.op in VIEWS or (n.op in REDUCE and _sizes(n.src[0].shape[OPS[n.op].axis(n)]) <= reducible))):
                a.chain.add(n)
        roots = set(program.roots())
        a.reads = {n for n in every if n in a.chain and n in roots}
        a.reads |= {s for n in every if n not in a.chain for s in n.src if s in a.chain}
        found = _averaged(program, a, strict=False)
        if found == reducible:
            break
        reducible = found
    a.averaged = _averaged(program, a)
    a.reducers = {s: {n.op for n in a.chain if n.op in REDUCE and s in _sizes(n.src[0].shape[OPS[n.op].axis(n)])}
                  for s in reducible}
    dep: set[Node] = set()  # nodes that depend on a score input
    for n in every:
        if n in a.chain or any(s in dep for s in n.src):
            dep.add(n)
    memo: dict[Node, bool] = {}

    def pair(arg: Node) -> bool:  # a difference of two reads with the same sign (or a sum of opposite signs)
        while arg.op is Op.NEG and arg not in a.chain:
            arg = arg.src[0]
        if arg.op not in (Op.SUB, Op.ADD) or not all(s in a.chain and s.shape == () for s in arg.src):
            return False
        same = a.sign(arg.src[0]) == a.sign(arg.src[1])
        return same if arg.op is Op.SUB else not same

    def key(k: Node) -> bool:
        return (k in a.chain and len(k.shape) == 1) or od(k)

    def valid(n: Node) -> bool:  # the operands in comparison positions (the op table's keys) are reads or ordered
        spec = OPS[n.op]
        if spec.order is None:
            return True
        if spec.kind == "step":
            return pair(n.src[0]) or od(n.src[0])
        k = n.src[spec.keys[0]]
        return key(k) if k.dtype == "float" else od(k)  # a key's order, or indices made from one

    def od(n: Node) -> bool:  # order-determined: a function of the weak ordering and of the other inputs only
        if n not in memo:
            memo[n] = n not in dep or (n not in a.chain and valid(n) and (
                True if n.op in KEEP else od(n.src[0]) if n.op in MOVE else all(od(s) for s in n.src)))
        return memo[n]

    for n in every:
        if n in a.chain:
            continue
        if not valid(n):
            a.problems.append(f"not a comparison of two scores: {show(n)}")
            continue
        spec = OPS[n.op]
        if spec.kind == "step" and pair(n.src[0]):
            arg = n.src[0]
            while arg.op is Op.NEG and arg not in a.chain:
                arg = arg.src[0]
            a.compared.update(arg.src)
        elif spec.order is not None and n.src[spec.keys[0]] in a.chain:
            a.compared.add(n.src[spec.keys[0]])
        elif n.op is Op.AMAX and n.src[0] in a.chain:  # the largest of some scores: which one, the order says
            a.compared.add(n.src[0])
    return a


def _averaged(program: Program, a: Analysis, strict: bool = True) -> set[Sym]:
    """Sizes that only ever size an axis of a score input that its reads reduce (like H, the heads, averaged): every
    read is then the mean (or max) over that axis, and one entry (H = 1) realizes every value of the reductions.
    strict=False: also the sizes a read indexes or slices (attn[0]): their reductions still belong to the reads,
    but one entry settles them only for that size (which a proof then fixes)."""
    candidates = set().union(*(_sizes(n.arg[1]) for n in program.inputs if n.arg[0] in a.scores)) if a.scores \
        else set()
    for n in program.inputs:
        if n.arg[0] not in a.scores:
            candidates -= _sizes(n.arg[1])
    for c in program.constraints:
        candidates -= {c.size} | _sizes(c.lo) | _sizes(c.hi)
    for e in program.early_returns:
        candidates -= _sizes(e.lhs) | _sizes(e.rhs)
    for n in nodes(program):
        if n.op is Op.INPUT:
            continue
        if n not in a.chain:
            candidates -= _sizes(n.shape) | _sizes(n.arg)
        elif n.op in (Op.INDEX, Op.SLICE) and strict:
            candidates -= _sizes(n.src[0].shape[OPS[n.op].axis(n)]) | _sizes(n.arg if n.op is Op.SLICE
                                                                             else n.src[1].arg)
        elif n.op in REDUCE:
            dim = n.src[0].shape[OPS[n.op].axis(n)]
            if not (len(dim.terms) == 1 and dim.terms[0][1] == 1 and not dim.const):
                candidates -= _sizes(dim)
    if strict:  # a size that is an axis of a read (not reduced away) is not reduced-only
        for r in a.reads:
            candidates -= _sizes(r.shape)
    return candidates


def degree(root: Node, names: Iterable[str], a: Analysis | None = None) -> float:
    """The polynomial degree of root in the inputs `names`, inf where one reaches a comparison or a divisor (the op
    table's degree facets). With the analysis `a` of the score inputs, every comparison of their reads is a
    constant on a region, rows moved by such an order are linear in the rows, and the largest of some compared
    scores is one of them."""
    if a is None:
        return form_degree(root, names)
    names, deg = frozenset(names), {}
    for n in root.toposort():
        d = [deg[s] for s in n.src]
        deg[n] = (0.0 if n.op in KEEP else d[0] if n.op in MOVE or (n.op is Op.AMAX and n.src[0] in a.compared)
                  else OPS[n.op].degree(n, d, names))
    return deg[root]


def value_reads(root: Node, a: Analysis) -> set[Node]:
    """The reads whose values (not only their order) reach root."""
    found: dict[Node, frozenset[Node]] = {}
    for n in root.toposort():
        if n in a.reads and n in a.chain:
            found[n] = frozenset({n})
        elif n.op in KEEP:
            found[n] = frozenset()
        elif n.op in MOVE:
            found[n] = found[n.src[0]]
        else:
            found[n] = frozenset().union(*(found[s] for s in n.src)) if n.src else frozenset()
    return set(found[root])


def inexact(root: Node, a: Analysis) -> list[str]:
    """What float64 might round: a division, a mean other than over an averaged-only axis (which a proof sets to one
    entry), a constant that is not a multiple of 1/1024. Values are small integers otherwise, so every sum and
    product is exact."""
    return [show(n) for n in root.toposort() if n.op is Op.DIV or (n.op is Op.MEAN and n not in a.chain)
            or (n.op is Op.CONST and not (n.arg * 1024).is_integer())]


# --- at concrete sizes ----------------------------------------------------------------------------------------
@dataclass
class Layout:
    """At concrete sizes: the compared entries of the score inputs (in a fixed order: ordering position p is entry
    `positions[p]`), and the entries read only as values."""

    shapes: dict[str, tuple[int, ...]]  # every input, unbatched, at these sizes (averaged sizes = 1)
    score_names: tuple[str, ...]
    positions: list[tuple[str, int]]  # (score input, flat index) of each compared entry
    extras: list[tuple[str, int]]  # entries read as values but never compared

    def scores(self, levels: np.ndarray, values: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Score inputs [B, *shape]: levels [B, P] at the compared entries (and values [B, E] at the extras)."""
        b = levels.shape[0]
        out = {name: np.zeros((b, math.prod(self.shapes[name]))) for name in self.score_names}
        for col, (name, flat) in enumerate(self.positions):
            out[name][:, flat] = levels[:, col]
        for col, (name, flat) in enumerate(self.extras):
            out[name][:, flat] = values[:, col] if values is not None else 0
        return {name: a.reshape((b, *self.shapes[name])) for name, a in out.items()}


def read_positions(a: Analysis, root: Node, env: Mapping[Sym, int], shapes: Mapping[str, tuple[int, ...]],
                   reads: Iterable[Node]) -> tuple[set[tuple[str, int]], list[str]]:
    """The entries (input, flat index) the given reads take, found by evaluating them on inputs that hold each
    entry's number; reads that cannot be evaluated at these sizes (an index out of range) are skipped: the
    program's own evaluation reports them."""
    from ..eval.backends import NUMPY
    from ..eval.generic import value
    ids = {name: (np.arange(math.prod(shapes[name]), dtype=np.float64) + 1).reshape((1, *shapes[name]))
           for name in a.scores}
    inputs = {**{n: np.zeros((1, *shapes[n])) for n in a.linear}, **ids}
    found: set[tuple[str, int]] = set()
    problems = []
    for r in reads:
        try:
            data = value(NUMPY, env, inputs, np.float64, r)
        except (InputError, IndexError, ValueError):
            continue
        for n in r.toposort():
            if n.op in REDUCE and n in a.chain and n.src[0].shape[OPS[n.op].axis(n)].value(dict(env)) != 1:
                problems.append(f"reads the {OPS[n.op].name} of several scores: {show(n)}")
        vals = np.abs(data).ravel()
        name = a.source(r)
        found |= {(name, int(v) - 1) for v in np.unique(vals) if v >= 1}
    return found, problems
