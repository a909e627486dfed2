"""Which sizes a proof enumerates, which one value settles for all, and which it fixes (docs/prove.md).

- the *token* size (N): the size of the score inputs that is not averaged away; prove runs it over 1..max_n;
- the *given* sizes (k): every value their ranges allow at each token size;
- *averaged* sizes (H, the heads): a size that only ever sizes an axis the reads average over; one head realizes
  every mean, and nothing else sees the size, so H = 1 settles every H;
- the *channel* size (C, the last axis of the features): when no op indexes, slices, joins or reduces it, every
  channel is computed alike and on its own, so the prover evaluates one channel per point (all points at once, as
  channels) and the result holds for every C;
- any other size is fixed (`sizes={"M": 2}`, 1 by default) and the result says so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..ir import OPS, Affine, Op, Sym
from ..ir.program import Program
from .regions import Analysis, ProveError, _syms, nodes

MAX_POINTS = 20_000  # feature/value points per region: beyond, the lattice of a high degree is too large


def channel_generic(program: Program, c: Affine | None = None) -> bool:
    """True when C (the last size of the features, or `c`) is only ever a trailing axis that no op indexes,
    slices, joins or reduces: each channel is then computed alike and on its own, so one channel settles every C."""
    if c is None:
        feats = [n for n in program.inputs if program.role(n.arg[0]) != "score" and n.arg[1]]
        if not feats:
            return False
        c = feats[0].arg[1][-1]
    if len(c.terms) != 1 or c.const or c.terms[0][1] != 1 or any(c.syms & _syms((e.lhs, e.rhs))
                                                                for e in program.early_returns):
        return False
    if any(c.syms & _syms((k.lo, k.hi, k.size)) for k in program.constraints):
        return False
    for n in nodes(program):
        if n.op is Op.INPUT and program.role(n.arg[0]) == "score" and c.syms & _syms(n.arg[1]):
            return False
        if any(c.syms & _syms(d) for d in n.shape[:-1]) or (n.op is not Op.INPUT and c.syms & _syms(n.arg)):
            return False
        axis = OPS[n.op].axis  # the operand axis an op indexes, slices, joins or reduces
        if axis is not None and axis(n) == len(n.src[0].shape) - 1 and n.src[0].shape[-1] == c:
            return False
    return True


def signature(program: Program) -> tuple:
    return (tuple(sorted((n.arg[0], tuple(str(d) for d in n.arg[1])) for n in program.inputs)),
            program.given_sizes, tuple(sorted((n, program.role(n)) for n in program.input_names)))


@dataclass
class SizePlan:
    """How each size of the program is settled, and the size environments of a proof."""

    program: Program  # the candidate: its signature
    token: Sym | None
    averaged: set[Sym]
    channel: Sym | None  # the channel size when the programs are channel-generic, else None
    fixed: dict[Sym, int]
    derivable: set[Sym] = field(default_factory=set)

    def envs(self, n: int | None) -> Iterator[dict[Sym, int]]:
        """Every size environment at token size n: the given sizes over their whole ranges."""
        base = {**self.fixed, **{s: 1 for s in self.averaged}}
        if self.channel is not None:
            base[self.channel] = 1
        if self.token is not None:
            base[self.token] = n
        given = [c for c in self.program.constraints if c.size not in self.derivable]
        for c in self.program.constraints:
            if c.size in self.derivable and not c.lo.value(base) <= base[c.size] <= c.hi.value(base):
                return
        if any(d.value(base) < 0 for i in self.program.inputs for d in i.arg[1]):
            return

        def expand(env: dict[Sym, int], rest: list) -> Iterator[dict[Sym, int]]:
            if not rest:
                yield dict(env)
                return
            c = rest[0]
            for v in range(c.lo.value(env), c.hi.value(env) + 1):
                yield from expand({**env, c.size: v}, rest[1:])
        yield from expand(base, given)

    def shapes(self, env: Mapping[Sym, int]) -> dict[str, tuple[int, ...]]:
        return {n.arg[0]: tuple(d.value(dict(env)) for d in n.arg[1]) for n in self.program.inputs}

    def describe(self, max_n: int) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.token is not None:
            out[self.token.name] = f"1..{max_n}"
        for c in self.program.constraints:
            if c.size not in self.derivable:
                out[c.size.name] = f"every value, {c.lo} <= {c.size.name} <= {c.hi}"
        for s in sorted(self.averaged, key=lambda s: s.name):
            out[s.name] = "every value (only averaged over)"
        if self.channel is not None:
            out[self.channel.name] = "every value (channel-generic)"
        for s, v in sorted(self.fixed.items(), key=lambda t: t[0].name):
            out[s.name] = str(v)
        return out


def plan_sizes(candidate: Program, programs: list[Program], analyses: list[Analysis],
               sizes: Mapping[str, int] | None = None, channels: int = 1) -> SizePlan:
    """Decide how each size is settled (module docstring); `sizes` fixes sizes by name, `channels` the channel
    size when the programs are not channel-generic."""
    sizes = dict(sizes or {})
    derivable = {s for n in candidate.inputs for d in n.arg[1] for s in d.syms}
    averaged = set.intersection(*(a.averaged for a in analyses)) if analyses else set()
    averaged -= {s for s in derivable if s.name in sizes}
    scores = {s for n in candidate.inputs if candidate.role(n.arg[0]) == "score" for d in n.arg[1] for s in d.syms}
    linear = [n for n in candidate.inputs if candidate.role(n.arg[0]) != "score" and n.arg[1]]
    channel = None
    if linear:
        c = linear[0].arg[1][-1]
        if len(c.terms) == 1 and not c.const and c.terms[0][1] == 1 and c.terms[0][0] not in scores:
            if c.terms[0][0].name not in sizes and all(channel_generic(p, c) for p in programs):
                channel = c.terms[0][0]
            else:
                sizes.setdefault(c.terms[0][0].name, channels)
    rest = sorted(derivable - averaged - {channel}, key=lambda s: s.name)
    token_choices = [s for s in rest if s in scores and s.name not in sizes]
    if len(token_choices) > 1:
        named = [s for s in token_choices if s.name == "N"]
        token_choices = named or token_choices[:1]
    if not token_choices:
        token_choices = [s for s in rest if s.name == "N" and s.name not in sizes]
    token = token_choices[0] if token_choices else None
    fixed = {s: int(sizes.get(s.name, 1)) for s in rest if s is not token}
    unknown = set(sizes) - {s.name for s in derivable}
    if unknown:
        raise ProveError(f"{candidate.name} has no size {', '.join(sorted(unknown))} to fix (its sizes read off "
                         f"the inputs: {', '.join(sorted(s.name for s in derivable))})")
    return SizePlan(candidate, token, averaged, channel, fixed, derivable)


# --- feature and value inputs: the points that fix a polynomial of degree D in them --------------------------------
def lattice(n: int, d: int) -> np.ndarray:
    """Every t in N^n with sum(t) <= d (unisolvent for polynomials of degree <= d), by largest nonzero coordinate."""
    if math.comb(n + d, d) > MAX_POINTS:
        raise ProveError(f"a polynomial of degree {d} in {n} values needs {math.comb(n + d, d):,} points per "
                         f"region, more than {MAX_POINTS:,}: lower --max-n")
    pts = sorted((t for t in itertools.product(range(d + 1), repeat=n) if sum(t) <= d), key=lambda t: t[::-1])
    return np.array(pts, np.float64).reshape(len(pts), n)


def linear_points(shapes: Mapping[str, tuple[int, ...]], names: list[str], channel_inputs: set[str],
                  degree: int) -> list[dict[str, np.ndarray]]:
    """Feature/value inputs (unbatched) that fix a polynomial of total degree <= `degree` in all their entries.

    Inputs in `channel_inputs` (channel-generic, shaped [..., 1] here) take one point per channel, all at once;
    the others one point per returned group, grouped so that groups of the same shape stack along the batch.
    """
    plain = [n for n in names if n not in channel_inputs]
    chans = [n for n in names if n in channel_inputs]
    size = {n: math.prod(shapes[n]) for n in names}
    m_plain, m_chan = sum(size[n] for n in plain), sum(size[n] // max(shapes[n][-1], 1) for n in chans)
    groups = []
    for t in lattice(m_plain, degree):
        arrays, at = {}, 0
        for n in plain:
            arrays[n] = t[at:at + size[n]].reshape(shapes[n])
            at += size[n]
        if chans:
            pts = lattice(m_chan, degree - int(t.sum()))  # [C', m_chan]: channel c holds point c
            at = 0
            for n in chans:
                rows = size[n] // max(shapes[n][-1], 1)
                arrays[n] = pts[:, at:at + rows].T.reshape((*shapes[n][:-1], len(pts)))
                at += rows
        groups.append(arrays)
    return groups
