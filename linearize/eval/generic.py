"""The generic semantics: for each IR op, the step that computes it at fixed sizes, vectorized.

This is the one definition of what a program computes; every strategy (strategies.py) must give these values,
and `compile(..., strategy="generic")` (alias `planned=False` or `fast=False`) runs nothing else.

Every node's value is an array of shape (batch, *one axis per free index variable, *the node's own shape).
An index variable always ranges over the same values (its widest range over the outer variables), so a node's
value does not depend on where it is used: each node is computed once, with no Python loop over tokens,
channels or the batch. Elementwise ops (the op table's `impl`) broadcast over the union of their operands'
index axes; a sum whose range depends on an outer variable (sum<j < i>) is summed over the widest range and
masked. Each builder reads its operands' layouts (`Meta`), works out every reshape, permutation, index array
and mask while planning, and emits a step that only calls array operations.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ..ir import OPS, Affine, InputError, Node, Op, Sym, show
from .backends import Backend, permuter
from .plan import Meta, chain, lift, reshaper
from .planner import Choice, Planner, sort_axes


def broadcast_dim(dims: tuple[int, ...]) -> int:
    """The size axes of these sizes broadcast to: 1 only if all are 1 (an empty axis stays empty)."""
    return next((d for d in dims if d != 1), 1)


def broadcast(P: Planner, metas: list[Meta]) -> tuple[list[tuple[int, ...]], Meta]:
    """The shapes that make values broadcast against each other (singleton axes inserted), and the result."""
    axes = sort_axes(a for m in metas for a in m.axes)
    rank = max(len(m.own) for m in metas)
    shapes = [(m.batch, *(P.size(a) if a in m.axes else 1 for a in axes), *(1,) * (rank - len(m.own)), *m.own)
              for m in metas]
    top = tuple(broadcast_dim(d) for d in zip(*shapes))
    kind = "int" if all(m.kind == "int" for m in metas) else "float"
    return shapes, Meta(axes, top[1:1 + len(axes)], top[1 + len(axes):], top[0], kind, all(m.finite for m in metas))


# --- leaves -----------------------------------------------------------------------------------------------
def _input(P: Planner, n: Node) -> int:
    s = P.new(Meta((), (), P.own(n), P.batch, finite=P.is_checked(n)))  # where the call checks it whole
    P.inputs[n.arg[0]] = s
    return s


def _const(P: Planner, n: Node) -> int:
    return P.constant(P.xp.asarray([n.arg], P.dtype), Meta((), (), (), 1, finite=math.isfinite(n.arg)))


def _affine(P: Planner, n: Node) -> int:
    data, axes = P.affine(n.arg)
    return P.constant(data, Meta(axes, tuple(P.size(a) for a in axes), (), 1, "int", True))


# --- elementwise ------------------------------------------------------------------------------------------
def _unary(P: Planner, n: Node) -> int:
    s = P.value(n.src[0])
    m = P.metas[s]
    impl, xp = P.xp.overrides.get(n.op, OPS[n.op].impl), P.xp
    if OPS[n.op].kind == "step":
        meta = replace(m, kind="float", finite=True)
    elif n.op is Op.NEG:
        meta = m  # -a is finite wherever a is
    else:
        meta = replace(m, kind="float", finite=False)  # exp: a float, which may overflow
    return P.emit(lambda a: impl(xp, a), [s], meta)


def _binary(P: Planner, n: Node) -> int:
    ins = [P.value(s) for s in n.src]
    a, b = ins
    if n.op is Op.MUL and P.home[a] in P.flags and P.metas[b].kind == "float":  # bool * x is the 0/1 float * x
        ins = [P.flags[P.home[a]], b]
    elif n.op is Op.MUL and P.home[b] in P.flags and P.metas[a].kind == "float":
        ins = [a, P.flags[P.home[b]]]
    shapes, meta = broadcast(P, [P.metas[i] for i in ins])
    meta = replace(meta, finite=False)  # may overflow
    ins, (ra, rb) = P.shaped(ins, shapes)
    impl, xp = P.xp.overrides.get(n.op, OPS[n.op].impl), P.xp
    return P.emit(lift(lambda a, b: impl(xp, a, b), ra, rb), ins, meta)


# --- indexing ---------------------------------------------------------------------------------------------
def _index(P: Planner, n: Node) -> int:
    xs = P.slots[n.src[0]]
    mx, e, axis = P.metas[xs], n.src[1].arg, n.arg
    dim = mx.own[axis]
    P.check_range(e, dim, n)
    idx, iaxes = P.affine(e)
    flat = P.xp.clip(idx[0], 0, dim - 1)  # masked entries of a ragged sum may fall outside; they are zeroed later
    pos = 1 + len(mx.axes) + axis
    own = mx.own[:axis] + mx.own[axis + 1:]
    idims = tuple(P.size(a) for a in iaxes)
    if not set(mx.axes) & set(iaxes):
        key: Any = static_key([int(v) for v in flat.reshape(-1).tolist()]) if len(iaxes) <= 1 else None
        if key is None:
            key = flat
        elif iaxes and isinstance(key, int):  # one row over a unit axis: keep the axis
            key = slice(key, key + 1)
        head = (slice(None),) * pos
        # x[key] puts the index axes where the indexed axis was; move them before the own axes, sorted
        where = {a: 1 + k for k, a in enumerate(mx.axes)} | {a: pos + k for k, a in enumerate(iaxes)}
        axes = sort_axes(mx.axes + iaxes)
        rest = [p for p in range(1 + len(mx.axes), 1 + len(mx.axes) + len(mx.own) - 1 + len(iaxes))
                if not pos <= p < pos + len(iaxes)]
        perm = permuter(P.xp, [0, *(where[a] for a in axes), *rest])
        meta = Meta(axes, tuple(P.size(a) for a in axes), own, mx.batch, mx.kind, mx.finite or P.is_checked(n))
        if isinstance(key, slice) and key.indices(dim) == (0, dim, 1) and perm is None:  # every row, in order
            return P.alias(xs, meta)
        if perm is None and not isinstance(key, slice | int):
            return P.emit(lambda x: x[head + (key,)], [xs], meta)
        if perm is None:
            return view(P, xs, head + (key,), meta)
        return P.emit(chain(lambda x: x[head + (key,)], perm), [xs], meta)
    # x itself depends on a variable of the index: align both, then take along the axis
    moved = Meta(mx.axes, mx.dims, own + (dim,), mx.batch, mx.kind)
    ix = Meta(iaxes, idims, (1,), 1, "int")
    (sx, si), meta = broadcast(P, [moved, ix])
    ixr = flat.reshape(si)
    xp = P.xp
    return P.emit(lambda x: xp.take_along(xp.moveaxis(x, pos, -1).reshape(sx), ixr, -1)[..., 0], [xs],
                  replace(meta, own=own, kind=mx.kind, finite=mx.finite))


def _slice(P: Planner, n: Node) -> int:
    xs = P.slots[n.src[0]]
    mx = P.metas[xs]
    axis, start, stop = n.arg
    pos = 1 + len(mx.axes) + axis
    a, b = start.value(P.env), stop.value(P.env)
    if not 0 <= a <= b <= mx.shape[pos]:
        raise InputError(f"slice {a}:{b} out of range for an axis of size {mx.shape[pos]} in `{show(n)}`")
    own = mx.own[:axis] + (b - a,) + mx.own[axis + 1:]
    return view(P, xs, (slice(None),) * pos + (slice(a, b),), replace(mx, own=own, finite=mx.finite or P.is_checked(n)))


def static_key(values: list[int]) -> int | slice | None:
    """The int (one value) or slice (an arithmetic progression, any nonzero step) picking `values`, else None."""
    if len(values) <= 1:
        return values[0] if values else slice(0, 0)
    step = values[1] - values[0]
    if step == 0 or any(b - a != step for a, b in itertools.pairwise(values)):
        return None
    return _progression(values[0], step, len(values))


def _progression(start: int, step: int, count: int) -> slice:
    stop = start + step * count
    return slice(start, None if stop < 0 else stop, None if step == 1 else step)


def _compose(k1: tuple, k2: tuple, shape: tuple[int, ...]) -> tuple:
    """The basic-indexing key (ints and slices) equal to applying k1 to an array of this shape, then k2."""
    out = list(k1) + [slice(None)] * (len(shape) - len(k1))
    kept = [p for p, e in enumerate(out) if isinstance(e, slice)]  # where each dim of x[k1] comes from
    for d, e in enumerate(k2):
        p = kept[d]
        start, stop, step = out[p].indices(shape[p])
        n = len(range(start, stop, step))
        if isinstance(e, int):
            out[p] = start + step * (e % n)
        else:
            a, b, t = e.indices(n)
            out[p] = _progression(start + step * a, step * t, len(range(a, b, t)))
    return tuple(out)


def view(P: Planner, xs: int, key: tuple, meta: Meta) -> int:
    """x[key] for a key of ints and slices; a view of a view is taken from the first array in one step."""
    src, first = P.views.get(P.home[xs], (xs, None))
    if first is not None:
        key = _compose(first, key, P.metas[src].shape)
    s = P.emit(P.xp.viewer(key, P.metas[src].shape), [src], meta)
    P.views[P.home[s]] = (src, key)
    return s



def _cat(P: Planner, n: Node) -> int:
    ins = [P.slots[s] for s in n.src]
    shapes, meta = broadcast(P, [P.metas[i] for i in ins])
    pos = 1 + len(meta.axes) + n.arg
    target = [broadcast_dim(d) for d in zip(*shapes)]
    fulls = [tuple(target[:pos]) + (sh[pos],) + tuple(target[pos + 1:]) for sh in shapes]
    xp = P.xp
    prep = [(reshaper(P.metas[i].shape, sh), full if full != sh else None) for i, sh, full in zip(ins, shapes, fulls)]

    def cat(*parts: Any) -> Any:
        out = []
        for p, (r, full) in zip(parts, prep):
            p = p if r is None else r(p)
            out.append(p if full is None else xp.broadcast_to(p, full))
        return xp.concat(out, pos)

    own = tuple(target[1 + len(meta.axes):pos]) + (sum(sh[pos] for sh in shapes),) + tuple(target[pos + 1:])
    return P.emit(cat, ins, replace(meta, own=own, kind=P.metas[ins[0]].kind))


def _reduction(P: Planner, n: Node) -> int:
    xs = P.slots[n.src[0]]
    mx = P.metas[xs]
    axis = OPS[n.op].axis(n)
    pos, xp = 1 + len(mx.axes) + axis, P.xp
    # sum, then divide by the count as an array of the dtype: the library's mean to the bit for float32/64
    # (tests/test_evaluate.py); half precision means accumulate wider, so those call the library's mean
    d = xp.asarray(mx.own[axis], P.dtype) if str(P.dtype).endswith(("float32", "float64")) else None
    own = mx.own[:axis] + mx.own[axis + 1:]
    impl = OPS[n.op].impl
    return P.emit(lambda x: impl(xp, x, pos, d), [xs], replace(mx, own=own, finite=False))


# --- sums and comprehensions ------------------------------------------------------------------------------
def ragged_mask(P: Planner, v: Any) -> tuple[Any, Meta]:
    """lo(outer) <= v < hi(outer) as a 0/1 array over v and the outer variables its bounds use."""
    iv, lo, hi = (P.affine(a) for a in (Affine.of(v), v.lo, v.hi))
    metas = [Meta(ax, tuple(P.size(a) for a in ax), (), 1, "int") for _, ax in (iv, lo, hi)]
    shapes, meta = broadcast(P, metas)
    a, b, c = (d.reshape(sh) for (d, _), sh in zip((iv, lo, hi), shapes))
    return (a >= b) & (a < c), meta


def _binder(P: Planner, n: Node) -> int:
    v = n.arg
    bs = P.slots[n.src[0]]
    mb = P.metas[bs]
    lo, hi = P.extent(v)
    xp = P.xp
    pre = None
    if v not in mb.axes:  # the body does not use v: give it the axis
        axes = sort_axes((*mb.axes, v))
        p = 1 + axes.index(v)
        shape = mb.shape[:p] + (1,) + mb.shape[p:]
        full = mb.shape[:p] + (hi - lo,) + mb.shape[p:]
        pre = (lambda a: a.reshape(shape)) if hi - lo == 1 else (lambda a: xp.broadcast_to(a.reshape(shape), full))
        mb = replace(mb, axes=axes, dims=tuple(P.size(a) for a in axes))
    body = chain(pre)
    pos = 1 + mb.axes.index(v)
    rest = tuple(a for a in mb.axes if a != v)
    dims = tuple(P.size(a) for a in rest)
    if n.op is Op.STACK:  # v's axis becomes the first own axis
        out = replace(mb, axes=rest, dims=dims, own=(hi - lo, *mb.own))
        order = [d for d in range(len(mb.shape)) if d != pos]
        order.insert(len(mb.axes), pos)
        move = permuter(P.xp, order)
        if pre is None and move is None:
            return P.alias(bs, out)
        if pre is not None and hi - lo == 1:  # a unit axis put in place: one reshape
            return P.reshape(bs, out)
        return P.emit(chain(pre, move), [bs], out)
    if v.lo.vars or v.hi.vars:  # ragged: mask to lo(outer) <= v < hi(outer)
        mask, mm = ragged_mask(P, v)
        (sd, sm), meta = broadcast(P, [mb, mm])
        m = mask.reshape(sm)
        rd = chain(body, reshaper(mb.shape, sd))
        at = 1 + meta.axes.index(v)
        out = Meta(tuple(a for a in meta.axes if a != v), meta.dims[:at - 1] + meta.dims[at:], meta.own, meta.batch,
                   mb.kind, False)
        return P.emit(lambda a: xp.sum(xp.where(m, rd(a), 0), at), [bs], out)
    return P.emit(lambda a: xp.sum(body(a), pos), [bs], Meta(rest, dims, mb.own, mb.batch, mb.kind, False))


# --- selections: data-dependent ops (the original programs) -----------------------------------------------
def _selection(P: Planner, n: Node) -> int:
    """The op table's implementation on whole (batched) operands; an index-expression operand (kth's rank) is a
    flat index array fixed while planning, and the result takes its axes."""
    spec, xp, env = OPS[n.op], P.xp, P.env
    ins = [P.slots[s] for s in n.src if s.op is not Op.AFFINE]
    metas = [P.metas[i] for i in ins]
    batch = max(m.batch for m in metas)
    kind = "int" if n.dtype == "int" else metas[0].kind if spec.order == "move" else "float"
    finite = metas[0].finite if spec.order == "move" else True
    ranked = next((s.arg for s in n.src if s.op is Op.AFFINE), None)
    if ranked is None:
        return P.emit(lambda *a: spec.impl(xp, n, env, *a), ins,
                      replace(P.layout(n, batch, kind), axes=(), dims=(), finite=finite))
    P.check_range(ranked, metas[1].own[0], n)
    ranks, raxes = P.affine(ranked)
    flat, rshape = ranks.reshape(-1), ranks.shape[1:]

    def rows(*a: Any) -> Any:
        out = spec.impl(xp, n, env, *a, flat)
        return out.reshape((out.shape[0], *rshape, *out.shape[2:]))
    return P.emit(rows, ins, Meta(raxes, tuple(P.size(a) for a in raxes), metas[0].own[1:], batch, kind, finite))


_GENERIC: dict[Op, Callable[[Planner, Node], int]] = {
    Op.INPUT: _input, Op.CONST: _const, Op.AFFINE: _affine, Op.INDEX: _index, Op.SLICE: _slice, Op.CAT: _cat,
    Op.SUM: _binder, Op.STACK: _binder, Op.DEF: lambda P, n: P.slots[n.src[0]],
}
# elementwise and selection ops are planned from their op-table facets, by kind
_BY_KIND: dict[str, Callable[[Planner, Node], int]] = {"selection": _selection, "reduction": _reduction}


def value(xp: Backend, env: Mapping[Sym, int], arrays: Mapping[str, Any], dtype: Any, n: Node) -> Any:
    """n's value by the generic steps alone, laid out (batch, *one axis per free index variable, *own shape): for
    callers that evaluate parts of a program (prove's regions, the exact evaluation) rather than compile it."""
    batch = max(a.shape[0] for a in arrays.values()) if arrays else 1
    return Planner(xp, env, batch, dtype, (), generic_step, "generic").plan(n).run(arrays)


def generic_step(n: Node) -> Choice:
    """Plan n from all its operands, by the generic semantics."""
    spec = OPS[n.op]
    build = (_unary if len(n.src) == 1 else _binary) if spec.kind in ("arithmetic", "step") else \
        _BY_KIND.get(spec.kind) or _GENERIC[n.op]
    return list(n.src), lambda P: build(P, n)
