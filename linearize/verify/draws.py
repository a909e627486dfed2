"""What the checker draws for a program: sizes and inputs from its signature, ties where its comparisons read.

Score inputs are drawn so that the entries the program compares take tie-forcing values (docs/checker.md): every
value is a multiple of 1/GRID, and an axis the reads only average over (the heads) holds the drawn value plus
offsets that sum to zero, so every implementation computes the same means and equal scores stay equal. Feature
and value inputs are drawn freely from [-2, 2].
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ..ir import Op, Sym
from ..ir.build import cat, gather, mean, sizes, tensor, topk
from ..ir.program import Program, program
from .regions import analyze, read_positions

MAX_SIZES = {"B": 3, "N": 11, "C": 4, "H": 3}  # N + 1 <= 12 tokens; the averaged sizes (H) up to 3, others up to 4
GRID = 2**12  # every score and attention value drawn is a multiple of 1/4096: sums over heads are exact
TIE_UNITS = (0, GRID // 8, GRID // 4, GRID // 2)  # tie-forcing draws: scores from a few values, 0, 1/8, 1/4, 1/2
KINDS = ("continuous", "ties", "equal")  # equal: every compared entry of a batch item is the same


def evit_signature() -> Program:
    """The inputs of EViT and Top-K (x, attn, k): what callables are checked with when no program is given."""
    N, C, H, k = sizes("N C H k")
    x, attn = tensor("x", N + 1, C), tensor("attn", H, N + 1, N + 1)
    return program("evit-signature", [x, attn], cat(x[0:1], gather(x[1:], topk(mean(attn[:, 0, 1:], axis=0), k))),
                   sizes={k: (1, N)})


class Model:
    """The draws for the programs of a check: the first gives the signature; all of them the compared entries."""

    def __init__(self, programs: list[Program]):
        self.program = p = programs[0]
        self.scores = tuple(n for n in p.input_names if p.role(n) == "score")
        self.linear = tuple(n for n in p.input_names if p.role(n) != "score")
        self.analyses = [analyze(q) for q in programs]
        self.averaged = set.intersection(*(a.averaged for a in self.analyses))
        # how the reads reduce each averaged size: offsets that keep a mean, a max, or (both) none
        reducers = {s: set().union(*(a.reducers.get(s, set()) for a in self.analyses)) for s in self.averaged}
        self.spread_kind = {s: "mean" if ops == {Op.MEAN} else "amax" if ops == {Op.AMAX} else "none"
                            for s, ops in reducers.items()}
        self.tokens = {s for n in p.inputs if n.arg[0] in self.scores for d in n.arg[1] for s in d.syms}
        self.tokens -= self.averaged
        # the token size first, so that it shrinks first
        self.derivable = sorted({s for n in p.inputs for d in n.arg[1] for s in d.syms},
                                key=lambda s: (s in self.averaged, s not in self.tokens, s.name != "N", s.name))
        self.given = [c for c in p.constraints if c.size not in set(self.derivable)]
        self._positions: dict[tuple, list[tuple[str, int]]] = {}

    def spread_of(self, name: str) -> str:
        """How to spread input `name` along its first averaged axis: "mean", "amax" or "none"."""
        shape = next(n.arg[1] for n in self.program.inputs if n.arg[0] == name)
        for d in shape:
            hit = d.syms & self.averaged
            if hit:
                return self.spread_kind[next(iter(hit))]
        return "none"

    def size_range(self, s: Sym) -> tuple[int, int]:
        """Token sizes up to N's bound, averaged ones (heads) up to H's, others (channels) up to C's."""
        return 1, MAX_SIZES["H" if s in self.averaged else "N" if s in self.tokens else "C"]

    def shapes(self, env: dict[Sym, int], collapse: bool = False) -> dict[str, tuple[int, ...]]:
        """Each input's shape at env; collapse=True sets the averaged axes to 1."""
        env1 = {**env, **{s: 1 for s in self.averaged}} if collapse else env
        return {n.arg[0]: tuple(d.value(env1) for d in n.arg[1]) for n in self.program.inputs}

    def positions(self, env: dict[Sym, int]) -> list[tuple[str, int]]:
        """The compared entries (score input, flat index in the collapsed shape) at these sizes, in a fixed order;
        every entry of the score inputs when no program says which."""
        key = tuple(sorted((s.name, v) for s, v in env.items()))
        if key not in self._positions:
            env1 = {**env, **{s: 1 for s in self.averaged}}
            shapes, found = self.shapes(env, collapse=True), set()
            for a in self.analyses:
                root = a.program.active_root(env1)
                inside = set(root.toposort())
                found |= read_positions(a, root, env1, shapes, [r for r in a.compared if r in inside])[0]
            if not found and not any(a.compared for a in self.analyses):
                found = {(n, i) for n in self.scores for i in range(math.prod(shapes[n]))}
            order = {n: i for i, n in enumerate(self.program.input_names)}
            self._positions[key] = sorted(found, key=lambda q: (order[q[0]], q[1]))
        return self._positions[key]


@functools.cache
def _items(kind: str, count: int, linear: tuple[tuple[str, tuple[int, ...]], ...]) -> st.SearchStrategy:
    """B batch items, each (compared values [count] in units of 1/GRID, {linear input: array}); cached."""
    which = st.integers(0, len(TIE_UNITS) - 1)
    if kind == "continuous":  # distinct: entry t's value is stride * base + (count - 1 - t)
        stride = 1 << max(count - 1, 0).bit_length()
        base = hnp.arrays(np.int64, count, elements=st.integers(0, GRID // stride - 1), fill=st.nothing())
        values = base.map(lambda a: a * stride + np.arange(count)[::-1])
    elif kind == "ties":
        values = hnp.arrays(np.int64, count, elements=which, fill=st.nothing()).map(lambda a: np.array(TIE_UNITS)[a])
    else:
        values = which.map(lambda u: np.full(count, TIE_UNITS[u]))
    arrays = st.fixed_dictionaries({name: hnp.arrays(np.float64, shape, elements=st.floats(-2, 2))
                                    for name, shape in linear})  # float64 draws are cheaper than width=32
    return st.lists(st.tuples(values, arrays), min_size=1, max_size=MAX_SIZES["B"])


@st.composite
def draw_instance(draw: Callable[..., Any], model: Model, ties: bool = True, dtype: Any = np.float32) -> dict:
    """One draw: {kind, sizes (B and every size), given, inputs (batched arrays), scores [B, P]}."""
    kind = draw(st.sampled_from(KINDS if ties else KINDS[:1]))
    env: dict[Sym, int] = {}
    for s in model.derivable:
        env[s] = draw(st.integers(*model.size_range(s)))
    p = model.program
    for c in p.constraints:
        if c.size in env:
            assume(c.lo.value(env) <= env[c.size] <= c.hi.value(env))
    for c in model.given:
        lo, hi = c.lo.value(env), c.hi.value(env)
        assume(lo <= hi)
        env[c.size] = draw(st.integers(lo, hi))
    shapes, collapsed = model.shapes(env), model.shapes(env, collapse=True)
    assume(all(d >= 0 for shape in shapes.values() for d in shape))
    positions = model.positions(env)
    items = draw(_items(kind, len(positions), tuple((n, shapes[n]) for n in model.linear)))
    b = len(items)
    # the rest of the score inputs (entries nothing compares) and the offsets along the averaged axes come from one
    # drawn seed and a spread that shrinks to 0 (equal heads), to keep draws cheap
    spread = draw(st.integers(0, GRID // 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # an input the program requires positive (POMT's attn) is drawn one unit up, ties kept, and never spread below
    # one unit (offsets that keep a mean could: its heads stay equal)
    low = {name: int(cond == "positive") for name, cond in p.requires}
    values = np.stack([v for v, _ in items]) + np.array([low.get(owner, 0) for owner, _ in positions])  # [B, P]
    inputs = {}
    for name in model.scores:
        flat = rng.integers(low.get(name, 0), GRID, (b, math.prod(collapsed[name])))
        for col, (owner, at) in enumerate(positions):
            if owner == name:
                flat[:, at] = values[:, col]
        how = model.spread_of(name)
        spread_here = 0 if low.get(name) and how == "mean" else spread
        a = _spread(flat.reshape((b, *collapsed[name])), shapes[name], spread_here, rng, how)
        inputs[name] = (np.maximum(a, 1) if low.get(name) else a) / GRID
    for name in model.linear:
        inputs[name] = np.stack([arrays[name] for _, arrays in items])
    sizes = {"B": b, **{s.name: v for s, v in env.items()}}
    given = {c.size.name: env[c.size] for c in model.given}
    return {"kind": kind, "sizes": sizes, "given": given, "inputs": {k: v.astype(dtype) for k, v in inputs.items()},
            "scores": values / GRID}


def _spread(a: np.ndarray, shape: tuple[int, ...], spread: int, rng: np.random.Generator, kind: str) -> np.ndarray:
    """a [B, *collapsed] expanded to [B, *shape]. Along the first averaged axis: for a mean, the value plus offsets
    that sum to zero (the mean is the value exactly); for a max, the value in one entry and less in the others;
    for both (or neither), copies."""
    out = np.broadcast_to(a, (a.shape[0], *shape)).copy()
    axes = [i for i, (c, d) in enumerate(zip(a.shape[1:], shape)) if c != d]
    if not axes or shape[axes[0]] < 2 or kind == "none":
        return out
    ax = 1 + axes[0]
    first, rest = [slice(None)] * out.ndim, [slice(None)] * out.ndim
    first[ax], rest[ax] = slice(-1, None), slice(None, -1)
    if kind == "mean":
        offsets = rng.integers(-spread, spread + 1, out.shape)
        offsets[tuple(first)] = -offsets[tuple(rest)].sum(axis=ax, keepdims=True)
    else:  # the last entry along the axis keeps the value: the others are below it
        offsets = -rng.integers(0, spread + 1, out.shape)
        offsets[tuple(first)] = 0
    return out + offsets
