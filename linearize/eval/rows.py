"""Rows: a concatenation whose every part is a linear map of one input's rows, as one matrix product.

cat(Y[a:b], [sum<i>(delta(E[i] - r) * w[i] * Y[i + c]) for r], [sum<i>(w'[i] * Y[i + c'])], ...) is D @ Y for the
coefficient matrix D that stacks the parts' own: unit rows for a slice, the one-hot rows (E[i] == s*r + R) times
the weights for moved rows, the weights for a weighted sum in a unit axis. One (B, R, n) matrix and one product
replace a product per part and the concatenation that copies their results (EViT: CLS, the kept rows and the fused
token in one bmm). Only in oblivious plans (with strategy="sort" moving the rows by index costs less), and only
for an input Y: the inputs are checked finite, so the zero coefficients of rows a part does not read add zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir import Affine, Node, Op, Sym
from ..ir.algebra import factors, product
from .patterns import is_float, plain
from .plan import Meta, compose, reshaper
from .planner import Choice, Planner
from .scatter import Moved, moved


@dataclass(frozen=True)
class Part:
    kind: str  # "slice" (rows a:b), "moved" (rows moved by E), "weighted" (a weighted sum in a unit axis)
    rows: tuple[Affine, Affine] | None = None  # a slice's a, b
    i: Sym | None = None  # the summed variable; the part reads Y[i + offset]
    offset: Affine | None = None
    weights: Node | None = None  # the product of the scalar factors over i, or None
    move: Moved | None = None
    r: Sym | None = None  # the moved rows' variable


def _read(f: Node, i: Sym) -> tuple[Node, Affine] | None:
    """(Y, c) for f = Y[i + c] along Y's first axis, Y an input."""
    if f.op is not Op.INDEX or f.arg != 0 or f.src[0].op is not Op.INPUT:
        return None
    e = f.src[1].arg
    c = e - Affine.of(i)
    return (f.src[0], c) if e.coeff(i) == 1 and not c.vars else None


def _split(fs: list[Node], i: Sym) -> tuple[Node, Affine, Node | None] | None:
    """(Y, c, weights) for factors [Y[i + c], scalars over i...]."""
    reads = [f for f in fs if f.shape]
    if len(reads) != 1 or (read := _read(reads[0], i)) is None:
        return None
    scalars = [f for f in fs if f is not reads[0]]
    if any(not f.free <= {i} or not is_float(f) for f in scalars):
        return None
    return read[0], read[1], product(scalars) if scalars else None


def _inside(P: Planner, Y: Node, part: Part) -> bool:
    """The part reads rows of Y only (else the generic steps name the bad index)."""
    n = Y.shape[0].value(P.env)
    if part.kind == "slice":
        a, b = (e.value(P.env) for e in part.rows)  # type: ignore[union-attr]
        return 0 <= a <= b <= n
    lo, hi = P.extent(part.i)  # type: ignore[arg-type]
    first = lo + part.offset.value(P.env)  # type: ignore[union-attr]
    return 0 <= first and first + hi - lo <= n


def _part(P: Planner, p: Node) -> tuple[Node, Part] | None:
    if p.op is Op.SLICE and p.arg[0] == 0 and p.src[0].op is Op.INPUT:
        return p.src[0], Part("slice", rows=(p.arg[1], p.arg[2]))
    m = moved(P, p)
    if m is not None:
        split = _split(m.rest, p.src[0].arg)
        if split is None:
            return None
        Y, c, w = split
        return Y, Part("moved", i=p.src[0].arg, offset=c, weights=w, move=m, r=p.arg)
    if p.op is Op.STACK and p.src[0].op is Op.SUM and not p.free and P.size(p.arg) == 1 and plain(p.src[0].arg):
        i = p.src[0].arg
        split = _split(factors(p.src[0].src[0]), i)
        if split is None:
            return None
        Y, c, w = split
        return Y, Part("weighted", i=i, offset=c, weights=w)
    return None


def rows(P: Planner, n: Node) -> Choice | None:
    if not P.oblivious or n.op is not Op.CAT or n.arg != 0 or n.free:
        return None
    found = [_part(P, p) for p in n.src]
    if any(f is None for f in found) or len({Y for Y, _ in found}) != 1:  # type: ignore[misc]
        return None
    Y, parts = found[0][0], [part for _, part in found]  # type: ignore[index]
    if all(part.kind == "slice" for part in parts) or not all(_inside(P, Y, part) for part in parts):
        return None  # nothing to multiply (the generic cat copies), or an index the generic steps will refuse
    operands = [Y] + [x for part in parts for x in (part.move.E if part.move else None, part.weights) if x is not None]
    return operands, lambda P: _build_rows(P, Y, parts)


def _build_rows(P: Planner, Y: Node, parts: list[Part]) -> int:
    sy = P.value(Y)
    my = P.metas[sy]
    n, rest, B = my.own[0], my.own[1:], my.batch
    F, xp = math.prod(rest), P.xp
    coefs, sizes = [], []
    for part in parts:
        slot, R = (_slice_rows if part.kind == "slice" else _weighted_rows)(P, part, n)
        coefs.append(slot)
        sizes.append(R)
    total = sum(sizes)
    shapes = [(B, R, n) for R in sizes]
    wide = [P.metas[c].batch != B for c in coefs]
    flat_y = (B, n, F)
    reshape_y = my.shape != flat_y
    out_shape = (B, total, *rest)
    reshape_out = out_shape != (B, total, F)
    P.note(B * total * n)

    def product_of_rows(y: Any, *cs: Any) -> Any:
        d = xp.concat([xp.broadcast_to(c, sh) if w else c for c, sh, w in zip(cs, shapes, wide)], 1)
        out = xp.bmm(d, y.reshape(flat_y) if reshape_y else y)
        return out.reshape(out_shape) if reshape_out else out
    return P.emit(product_of_rows, [sy, *coefs], Meta((), (), (total, *rest), B, "float", False))


def _slice_rows(P: Planner, part: Part, n: int) -> tuple[int, int]:
    a, b = (e.value(P.env) for e in part.rows)  # type: ignore[union-attr]
    d = np.zeros((1, b - a, n))
    d[0, np.arange(b - a), np.arange(a, b)] = 1.0
    return P.constant(P.xp.asarray(d, P.dtype), Meta((), (), (b - a, n), 1, "float", True)), b - a


def _weighted_rows(P: Planner, part: Part, n: int) -> tuple[int, int]:
    """The part's coefficients over Y's n rows: its own over i, placed at columns i + offset, zero elsewhere."""
    xp, dtype, (lo, hi) = P.xp, P.dtype, P.extent(part.i)  # type: ignore[arg-type]
    ni = hi - lo
    left = lo + part.offset.value(P.env)  # type: ignore[union-attr]
    right = n - left - ni  # both >= 0: the row reads were checked when matched
    ins = [P.value(x) for x in (part.move.E if part.move else None, part.weights) if x is not None]
    metas = [P.metas[s] for s in ins]
    G = max([m.batch for m in metas], default=1)

    def placer(m: Meta, fill: float) -> Any:
        """[G', ni] (or [G'], not over i) -> [G, 1, n]: the values at their columns, `fill` elsewhere."""
        shape = (m.batch, ni if m.axes else 1)
        fit = compose(reshaper(m.shape, shape), None if shape == (G, ni) else lambda v: xp.broadcast_to(v, (G, ni)))
        pads = [xp.asarray(np.full((G, w), fill), dtype) for w in (left, right) if w]
        if not pads:
            return compose(fit, lambda v: v.reshape(G, 1, n))
        at = 1 if left else 0

        def place(v: Any) -> Any:
            blocks = list(pads)
            blocks.insert(at, fit(v) if fit else v)
            return xp.concat(blocks, 1).reshape(G, 1, n)
        return place

    if part.kind == "weighted":
        if not ins:  # no weights: ones at the part's columns
            d = np.zeros((1, 1, n))
            d[0, 0, left:left + ni] = 1.0
            return P.constant(xp.asarray(d, dtype), Meta((), (), (1, n), 1, "float", True)), 1
        return P.emit(placer(metas[0], 0.0), ins, Meta((), (), (1, n), G, "float", True)), 1
    move, r = part.move, part.r
    assert move is not None and r is not None
    r_lo, r_hi = P.extent(r)
    Rn = r_hi - r_lo
    rv, raxes = P.affine(move.R)
    target = xp.arange(r_lo, r_hi).reshape(1, Rn, 1) * move.s + rv.reshape(1, 1, -1)  # s*r + R, placed like E
    if raxes:
        target = xp.concat([xp.asarray(np.zeros((1, Rn, w)), xp.int_dtype) for w in (left,) if w] + [target] +
                           [xp.asarray(np.zeros((1, Rn, w)), xp.int_dtype) for w in (right,) if w], 2)
    target = xp.to_dtype(target, dtype)
    place_e = placer(metas[0], math.nan)  # NaN equals no position
    if part.weights is None:
        return P.emit(lambda e: xp.to_dtype(place_e(e) == target, dtype), ins,
                      Meta((), (), (Rn, n), G, "float", True)), Rn
    place_w = placer(metas[1], 0.0)
    return P.emit(lambda e, w: xp.to_dtype(place_e(e) == target, dtype) * place_w(w), ins,
                  Meta((), (), (Rn, n), G, "float", False)), Rn
