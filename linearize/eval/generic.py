"""The generic evaluator: any program, high-level ops included, vectorized over batch, tokens and channels.

Every node evaluates to a `Val`: an array of shape (batch, *one axis per free index variable, *the
node's own shape). Because an index variable always ranges over the same values, a node's value does
not depend on where it is used, so each node is computed once, in topological order, with no Python
loop over tokens, channels or the batch. A sum whose range depends on an outer variable (sum<j < i>)
is evaluated over the widest range and masked.

This is the reference semantics the planned evaluator (planner.py, planops.py, strategies.py) reproduces;
`compile(program, planned=False)` runs it node by node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..ir import OPS, Affine, Node, Op, Sym, bound
from ..ir.printing import show
from ..ir.program import InputError
from .backends import Backend


@dataclass
class Val:
    data: Any
    axes: tuple[Sym, ...]  # sorted by Sym.sort_key

    @property
    def own_rank(self) -> int:
        return self.data.ndim - 1 - len(self.axes)


def sort_axes(axes: Any) -> tuple[Sym, ...]:
    """Index variables in the order their axes are laid out."""
    return tuple(sorted(set(axes), key=Sym.sort_key))


# --- index expressions at concrete sizes, shared with the planner (planner.py) --------------------------------
def widest_range(v: Sym, env: Mapping[Sym, int]) -> tuple[int, int]:
    """The widest [lo, hi) a variable takes over its outer variables' ranges."""
    lo = bound(v.lo, upper=False).value(env)
    hi = bound(v.hi, upper=True).value(env)
    return lo, max(lo, hi)


def affine_array(xp: Backend, env: Mapping[Sym, int], a: Affine,
                 extent: Callable[[Sym], tuple[int, int]]) -> tuple[Any, tuple[Sym, ...]]:
    """An index expression as an int64 array of shape (1, *one axis per variable), and those variables."""
    axes = sort_axes(a.vars)
    out: Any = xp.asarray(a.const + sum(c * env[s] for s, c in a.terms if s.kind == "size"),
                          xp.int_dtype).reshape((1,) + (1,) * len(axes))
    for pos, v in enumerate(axes):
        lo, hi = extent(v)
        shape = [1] * (1 + len(axes))
        shape[1 + pos] = hi - lo
        out = out + xp.arange(lo, hi).reshape(tuple(shape)) * a.coeff(v)
    return out, axes


def check_index_range(env: Mapping[Sym, int], e: Affine, n: int, where: Node) -> None:
    """An InputError unless every value of e lies in [0, n)."""
    lo, hi = bound(e, upper=False).value(env), bound(e, upper=True).value(env)
    if lo < 0 or hi >= n:
        sizes = ", ".join(f"{s.name} = {v}" for s, v in sorted(env.items(), key=lambda t: t[0].name))
        raise InputError(f"index {e} takes values {lo}..{hi}, outside [0, {n}), in `{show(where)}` ({sizes})")


class Evaluation:
    """One evaluation at concrete sizes; `run(root)` returns the root's array."""

    def __init__(self, backend: Backend, env: Mapping[Sym, int], inputs: Mapping[str, Any], dtype: Any):
        self.xp, self.env, self.inputs, self.dtype = backend, dict(env), inputs, dtype
        self.memo: dict[Node, Val] = {}
        self.extents: dict[Sym, tuple[int, int]] = {}

    # --- index variables -------------------------------------------------------------------
    def extent(self, v: Sym) -> tuple[int, int]:
        """The widest [lo, hi) a variable takes over its outer variables' ranges."""
        if v not in self.extents:
            self.extents[v] = widest_range(v, self.env)
        return self.extents[v]

    def affine(self, a: Affine) -> Val:
        """An index expression as an int64 array over its variables' axes."""
        return Val(*affine_array(self.xp, self.env, a, self.extent))

    def align(self, vals: list[Val], full: bool = False) -> tuple[list[Any], tuple[Sym, ...]]:
        """Insert singleton axes so the values broadcast; full=True also expands them."""
        axes = sort_axes(set().union(*(v.axes for v in vals)))
        rank = max(v.own_rank for v in vals)
        out = []
        for v in vals:
            own = tuple(v.data.shape[1 + len(v.axes):])
            var_dims = (self.size(a) if a in v.axes else 1 for a in axes)
            shape = (v.data.shape[0], *var_dims, *(1,) * (rank - len(own)), *own)
            out.append(v.data.reshape(shape))
        if full:
            target = tuple(max(d) for d in zip(*(o.shape for o in out)))
            out = [self.xp.broadcast_to(o, target) for o in out]
        return out, axes

    def size(self, v: Sym) -> int:
        lo, hi = self.extent(v)
        return hi - lo

    def check_range(self, e: Affine, n: int, where: Node) -> None:
        check_index_range(self.env, e, n, where)

    # --- the ops -----------------------------------------------------------------------------
    def run(self, root: Node) -> Any:
        for n in root.toposort():
            if n not in self.memo:
                self.memo[n] = self.eval(n)
        val = self.memo[root]
        return val.data

    def eval(self, n: Node) -> Val:
        spec = OPS[n.op]
        if spec.kind in ("arithmetic", "step"):  # elementwise, broadcast over the operands' index axes
            if len(n.src) == 1:
                v = self.value(n.src[0])
                return Val(spec.impl(self.xp, v.data), v.axes)
            arrays, axes = self.align([self.value(s) for s in n.src])
            return Val(spec.impl(self.xp, *arrays), axes)
        if spec.kind == "selection":
            return _selection(self, n)
        if spec.kind == "reduction":
            return _reduction(self, n)
        return _STRUCTURAL[n.op](self, n)

    def value(self, n: Node) -> Val:
        """A node's value as data: index expressions are cast to the evaluation's float dtype."""
        v = self.memo[n]
        if n.dtype == "int" and n.op is Op.AFFINE:
            return Val(self.xp.to_dtype(v.data, self.dtype), v.axes)
        return v

    def index(self, n: Node) -> Val:
        x, e = self.memo[n.src[0]], n.src[1].arg
        axis = n.arg
        dim = x.data.shape[1 + len(x.axes) + axis]
        self.check_range(e, dim, n)
        idx = self.affine(e)
        # masked entries of a ragged sum may fall outside the range; they are zeroed later
        flat = self.xp.clip(idx.data[0], 0, dim - 1)
        pos = 1 + len(x.axes) + axis
        if not set(x.axes) & set(idx.axes):
            data = x.data[(slice(None),) * pos + (flat,)]
            k = len(idx.axes)
            if k and axis:  # the index axes land where the indexed axis was: move them before the own axes
                data = self.xp.moveaxis(data, list(range(pos, pos + k)), list(range(pos - axis, pos - axis + k)))
            axes = x.axes + idx.axes
            order = sorted(range(len(axes)), key=lambda i: axes[i].sort_key())
            if order != list(range(len(axes))):
                rest = list(range(1 + len(axes), data.ndim))
                data = data.permute(0, *(1 + i for i in order), *rest) if hasattr(data, "permute") else \
                    data.transpose(0, *(1 + i for i in order), *rest)
            return Val(data, sort_axes(set(axes)))
        # x itself depends on a variable of the index: align both, then take along the axis
        moved = Val(self.xp.moveaxis(x.data, pos, -1), x.axes)
        (xd, ix), axes = self.align([moved, Val(flat.reshape((1, *flat.shape, 1)), idx.axes)])
        return Val(self.xp.take_along(xd, ix, -1)[..., 0], axes)

    def binder(self, n: Node) -> Val:
        v: Sym = n.arg
        body = self.memo[n.src[0]]
        lo, hi = self.extent(v)
        if v not in body.axes:  # the body does not use v: give it the axis
            shape = (body.data.shape[0], *(self.size(a) for a in body.axes), *body.data.shape[1 + len(body.axes):])
            axes = sort_axes(set(body.axes) | {v})
            pos = axes.index(v)
            data = body.data.reshape(shape[:1 + pos] + (1,) + shape[1 + pos:])
            full = data.shape[:1 + pos] + (hi - lo,) + data.shape[2 + pos:]
            body = Val(self.xp.broadcast_to(data, full), axes)
        pos = 1 + body.axes.index(v)
        rest = tuple(a for a in body.axes if a != v)
        if n.op is Op.STACK:
            return Val(self.xp.moveaxis(body.data, pos, len(body.axes)), rest)
        if v.lo.vars or v.hi.vars:  # ragged: mask to lo(outer) <= v < hi(outer)
            iv, lo_v, hi_v = self.affine(Affine.of(v)), self.affine(v.lo), self.affine(v.hi)
            (a, b, c), m_axes = self.align([iv, lo_v, hi_v])
            mask = Val((a >= b) & (a < c), m_axes)
            (data, m), axes = self.align([body, mask])
            masked = self.xp.where(m, data, 0)
            return Val(self.xp.sum(masked, 1 + axes.index(v)), tuple(a for a in axes if a != v))
        return Val(self.xp.sum(body.data, pos), rest)


def _input(ev: Evaluation, n: Node) -> Val:
    return Val(ev.inputs[n.arg[0]], ())


def _const(ev: Evaluation, n: Node) -> Val:
    return Val(ev.xp.asarray([n.arg], ev.dtype), ())


def _slice(ev: Evaluation, n: Node) -> Val:
    x = ev.memo[n.src[0]]
    axis, start, stop = n.arg
    pos = 1 + len(x.axes) + axis
    a, b = start.value(ev.env), stop.value(ev.env)
    if not 0 <= a <= b <= x.data.shape[pos]:
        raise InputError(f"slice {a}:{b} out of range for an axis of size {x.data.shape[pos]} in `{show(n)}`")
    return Val(x.data[(slice(None),) * pos + (slice(a, b),)], x.axes)


def _cat(ev: Evaluation, n: Node) -> Val:
    parts = [ev.memo[s] for s in n.src]
    aligned, axes = ev.align(parts)
    pos = 1 + len(axes) + n.arg
    target = [max(d) for d in zip(*(p.shape for p in aligned))]
    full = [ev.xp.broadcast_to(p, tuple(target[:pos]) + (p.shape[pos],) + tuple(target[pos + 1:])) for p in aligned]
    return Val(ev.xp.concat(full, pos), axes)


def _reduction(ev: Evaluation, n: Node) -> Val:
    x = ev.memo[n.src[0]]
    return Val(OPS[n.op].impl(ev.xp, x.data, 1 + len(x.axes) + OPS[n.op].axis(n)), x.axes)


def _selection(ev: Evaluation, n: Node) -> Val:
    """A data-dependent op on whole (batched) operands; an index-expression operand (kth's rank) arrives as a flat
    index array, and the result takes its axes."""
    spec, arrays, at = OPS[n.op], [], None
    for s in n.src:
        if s.op is Op.AFFINE:
            ev.check_range(s.arg, ev.memo[n.src[1]].data.shape[1], n)
            at = ev.affine(s.arg)
            arrays.append(at.data.reshape(-1))
        else:
            arrays.append(ev.memo[s].data)
    out = spec.impl(ev.xp, n, ev.env, *arrays)
    if at is None:
        return Val(out, ())
    return Val(out.reshape((out.shape[0], *at.data.shape[1:], *out.shape[2:])), at.axes)


_STRUCTURAL: dict[Op, Callable[[Evaluation, Node], Val]] = {
    Op.INPUT: _input, Op.CONST: _const, Op.AFFINE: lambda ev, n: ev.affine(n.arg),
    Op.INDEX: Evaluation.index, Op.SLICE: _slice, Op.CAT: _cat,
    Op.SUM: Evaluation.binder, Op.STACK: Evaluation.binder, Op.DEF: lambda ev, n: ev.memo[n.src[0]],
}
