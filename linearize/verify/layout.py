"""The structure calculus for the bounds: index expressions, indexing, slicing, concatenation, sums and
comprehensions over index variables, and reductions, on one array at a time (the op table leaves this calculus to
each layer). Values are laid out as the generic semantics (eval/generic.py) lays them out: (batch, *one axis per
free index variable, sorted, *own shape); an index variable always spans its widest range, and a sum whose range
depends on an outer variable is summed over the widest range and masked.

The interval rules (intervals.py) call these on the lower and on the upper values of a box: every op here is
monotone, so that is the box of the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..eval.backends import Backend
from ..ir import OPS, Affine, InputError, Node, Op, Sym, bound, show


@dataclass
class Val:
    data: Any
    axes: tuple[Sym, ...]  # sorted by Sym.sort_key

    @property
    def own_rank(self) -> int:
        return self.data.ndim - 1 - len(self.axes)


def sort_axes(axes: Any) -> tuple[Sym, ...]:
    return tuple(sorted(set(axes), key=Sym.sort_key))


class Layout:
    """The structure ops at concrete sizes, for one backend."""

    def __init__(self, xp: Backend, env: Mapping[Sym, int]):
        self.xp, self.env = xp, dict(env)
        self.extents: dict[Sym, tuple[int, int]] = {}

    def extent(self, v: Sym) -> tuple[int, int]:
        """The widest [lo, hi) a variable takes over its outer variables' ranges."""
        if v not in self.extents:
            lo = bound(v.lo, upper=False).value(self.env)
            self.extents[v] = lo, max(lo, bound(v.hi, upper=True).value(self.env))
        return self.extents[v]

    def size(self, v: Sym) -> int:
        lo, hi = self.extent(v)
        return hi - lo

    def affine(self, a: Affine) -> Val:
        """An index expression as an int64 array of shape (1, *one axis per variable)."""
        xp, axes = self.xp, sort_axes(a.vars)
        out: Any = xp.asarray(a.const + sum(c * self.env[s] for s, c in a.terms if s.kind == "size"),
                              xp.int_dtype).reshape((1,) + (1,) * len(axes))
        for pos, v in enumerate(axes):
            lo, hi = self.extent(v)
            shape = [1] * (1 + len(axes))
            shape[1 + pos] = hi - lo
            out = out + xp.arange(lo, hi).reshape(tuple(shape)) * a.coeff(v)
        return Val(out, axes)

    def align(self, vals: list[Val]) -> tuple[list[Any], tuple[Sym, ...]]:
        """The arrays with singleton axes inserted so that they broadcast together, and their joint axes."""
        axes = sort_axes(a for v in vals for a in v.axes)
        rank = max(v.own_rank for v in vals)
        out = []
        for v in vals:
            own = tuple(v.data.shape[1 + len(v.axes):])
            dims = (self.size(a) if a in v.axes else 1 for a in axes)
            out.append(v.data.reshape((v.data.shape[0], *dims, *(1,) * (rank - len(own)), *own)))
        return out, axes

    def check_range(self, e: Affine, n: int, where: Node) -> None:
        lo, hi = bound(e, upper=False).value(self.env), bound(e, upper=True).value(self.env)
        if lo < 0 or hi >= n:
            raise InputError(f"index {e} takes values {lo}..{hi}, outside [0, {n}), in `{show(where)}`")

    # --- the structure ops, on one array ---------------------------------------------------------------------------
    def index(self, n: Node, x: Val) -> Val:
        xp, e, axis = self.xp, n.src[1].arg, n.arg
        pos = 1 + len(x.axes) + axis
        dim = x.data.shape[pos]
        self.check_range(e, dim, n)
        idx = self.affine(e)
        flat = xp.clip(idx.data[0], 0, dim - 1)  # masked entries of a ragged sum may fall outside: zeroed later
        if not set(x.axes) & set(idx.axes):
            data = x.data[(slice(None),) * pos + (flat,)]
            k = len(idx.axes)
            if k and axis:  # the index axes land where the indexed axis was: move them before the own axes
                data = xp.moveaxis(data, list(range(pos, pos + k)), list(range(pos - axis, pos - axis + k)))
            axes = x.axes + idx.axes
            order = sorted(range(len(axes)), key=lambda i: axes[i].sort_key())
            if order != list(range(len(axes))):
                data = xp.permute(data, (0, *(1 + i for i in order), *range(1 + len(axes), data.ndim)))
            return Val(data, sort_axes(axes))
        # x itself depends on a variable of the index: align both, then take along the axis
        moved = Val(xp.moveaxis(x.data, pos, -1), x.axes)
        (xd, ix), axes = self.align([moved, Val(flat.reshape((1, *flat.shape, 1)), idx.axes)])
        return Val(xp.take_along(xd, ix, -1)[..., 0], axes)

    def slice(self, n: Node, x: Val) -> Val:
        axis, start, stop = n.arg
        pos = 1 + len(x.axes) + axis
        a, b = start.value(self.env), stop.value(self.env)
        if not 0 <= a <= b <= x.data.shape[pos]:
            raise InputError(f"slice {a}:{b} out of range for an axis of size {x.data.shape[pos]} in `{show(n)}`")
        return Val(x.data[(slice(None),) * pos + (slice(a, b),)], x.axes)

    def cat(self, n: Node, parts: list[Val]) -> Val:
        aligned, axes = self.align(parts)
        pos = 1 + len(axes) + n.arg
        target = [max(d) for d in zip(*(p.shape for p in aligned))]
        full = [self.xp.broadcast_to(p, (*target[:pos], p.shape[pos], *target[pos + 1:])) for p in aligned]
        return Val(self.xp.concat(full, pos), axes)

    def binder(self, n: Node, body: Val) -> Val:
        """A sum over n's variable, or a comprehension (stack) with it as the first own axis."""
        xp, v = self.xp, n.arg
        lo, hi = self.extent(v)
        if v not in body.axes:  # the body does not use v: give it the axis
            axes = sort_axes((*body.axes, v))
            p = 1 + axes.index(v)
            shape = (body.data.shape[0], *(self.size(a) for a in body.axes), *body.data.shape[1 + len(body.axes):])
            data = body.data.reshape(shape[:p] + (1,) + shape[p:])
            body = Val(xp.broadcast_to(data, data.shape[:p] + (hi - lo,) + data.shape[p + 1:]), axes)
        pos = 1 + body.axes.index(v)
        rest = tuple(a for a in body.axes if a != v)
        if n.op is Op.STACK:
            return Val(xp.moveaxis(body.data, pos, len(body.axes)), rest)
        if v.lo.vars or v.hi.vars:  # ragged: mask to lo(outer) <= v < hi(outer)
            (a, b, c), m_axes = self.align([self.affine(Affine.of(v)), self.affine(v.lo), self.affine(v.hi)])
            (data, m), axes = self.align([body, Val((a >= b) & (a < c), m_axes)])
            return Val(xp.sum(xp.where(m, data, 0), 1 + axes.index(v)), tuple(a for a in axes if a != v))
        return Val(xp.sum(body.data, pos), rest)

    def reduce(self, n: Node, x: Val) -> Val:
        """mean, amax: the op table's implementation along the node's axis."""
        return Val(OPS[n.op].impl(self.xp, x.data, 1 + len(x.axes) + OPS[n.op].axis(n)), x.axes)
