"""Rows: a concatenation whose every part is a linear map of one input's rows, as one matrix product.

cat(Y[a:b], [sum<i>(delta(E[i] - r) * w[i] * Y[i + c]) for r], [sum<i>(w'[i] * Y[i + c'])], ...) is D @ Y for the
coefficient matrix D that stacks the parts' own: unit rows for a slice, the one-hot rows (E[i] == s*r + R) times
the weights for moved rows, the weights for a weighted sum in a unit axis. One (B, R, n) matrix and one product
replace a product per part and the concatenation that copies their results (EViT: CLS, the kept rows and the fused
token in one bmm). Only in oblivious plans (with strategy="sort" moving the rows by index costs less), and only
for an input Y the call checks finite whole (ir/reads.py), so the zero coefficients of rows a part does not read
add zeros.
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
    if not P.is_checked(Y):
        return None  # the product multiplies every row of Y: all of it must be checked finite (ir/reads.py)
    if all(part.kind == "slice" for part in parts) or not all(_inside(P, Y, part) for part in parts):
        return None  # nothing to multiply (the generic cat copies), or an index the generic steps will refuse
    operands = [Y] + [x for part in parts for x in (part.move.E if part.move else None, part.weights) if x is not None]
    return operands, lambda P: _build_rows(P, Y, parts)


def _rows_of(P: Planner, part: Part) -> int:
    if part.kind == "slice":
        a, b = (e.value(P.env) for e in part.rows)  # type: ignore[union-attr]
        return b - a
    if part.move is None:
        return 1
    lo, hi = P.extent(part.r)  # type: ignore[arg-type]
    return hi - lo


def _build_rows(P: Planner, Y: Node, parts: list[Part]) -> int:
    """One step: D = empty (B, R, n); each part writes its rows of D in place (its columns, zeros around them);
    then D @ Y. No boolean copy, no float copy, no concatenation: D and the output are the step's only arrays."""
    sy = P.value(Y)
    my = P.metas[sy]
    n, rest, B = my.own[0], my.own[1:], my.batch
    F, xp, dtype = math.prod(rest), P.xp, P.dtype
    counts = [_rows_of(P, part) for part in parts]
    total = sum(counts)
    shape, flat_y, out_shape = (B, total, n), (B, n, F), (B, total, *rest)
    writers, ins, top, pads = [], [sy], 0, []
    for part, R in zip(parts, counts):
        write, operands, zeros = _writer(P, part, shape, top, R)
        writers.append((write, len(ins) - 1, len(ins) - 1 + len(operands)))
        ins += operands
        pads += [(top, top + R, a, b) for a, b in zeros]
        top += R
    merged: list[list[int]] = []  # the zero regions, rows of consecutive parts with the same columns joined
    for r0, r1, a, b in pads:
        if merged and merged[-1][1] == r0 and merged[-1][2:] == [a, b]:
            merged[-1][1] = r1
        else:
            merged.append([r0, r1, a, b])
    zero = [xp.viewer((slice(None), slice(r0, r1), slice(a, b)), shape) for r0, r1, a, b in merged]
    reshape_y, reshape_out = my.shape != flat_y, out_shape != (B, total, F)
    P.note(B * total * n)

    def product_of_rows(y: Any, *operands: Any) -> Any:
        d = xp.empty(shape, dtype)
        for region in zero:
            xp.fill_zero(region(d))
        for write, a, b in writers:
            write(d, *operands[a:b])
        out = xp.rows_product(d, y.reshape(flat_y) if reshape_y else y)
        return out.reshape(out_shape) if reshape_out else out
    return P.emit(product_of_rows, ins, Meta((), (), (total, *rest), B, "float", False))


def _writer(P: Planner, part: Part, shape: tuple[int, int, int], top: int,
            R: int) -> tuple[Any, list[int], list[tuple[int, int]]]:
    """(write(d, *operands), the operands' slots, the column ranges to zero): write fills rows top .. top + R of d
    at the part's own columns; the zero ranges are the rest of those rows."""
    xp, dtype = P.xp, P.dtype
    B, _, n = shape
    if part.kind == "slice":
        a = part.rows[0].value(P.env)  # type: ignore[index]
        unit = np.zeros((1, R, n))
        unit[0, np.arange(R), np.arange(a, a + R)] = 1.0
        rows, const = xp.viewer((slice(None), slice(top, top + R)), shape), xp.asarray(unit, dtype)

        def copy_slice(d: Any) -> None:
            xp.copy_into(rows(d), const)
        return copy_slice, [], []
    lo, hi = P.extent(part.i)  # type: ignore[arg-type]
    ni = hi - lo
    left = lo + part.offset.value(P.env)  # type: ignore[union-attr]  # the part's columns: left .. left + ni
    zeros = [(a, b) for a, b in ((0, left), (left + ni, n)) if a < b]
    slots = [P.value(x) for x in (part.move.E if part.move else None, part.weights) if x is not None]
    metas = [P.metas[sl] for sl in slots]

    def shaped(m: Meta, target: tuple[int, ...]) -> Any:  # [G, ni] (or [G], not over i) as `target`
        each = (m.batch, *target[1:-1], ni if m.axes else 1)
        return compose(reshaper(m.shape, each), None if each == target else lambda v: xp.broadcast_to(v, target))

    if part.move is None:  # a weighted sum: its weights (or ones) at its columns of its one row
        cols = xp.viewer((slice(None), top, slice(left, left + ni)), shape)  # [B, ni]
        w_of = shaped(metas[0], (B, ni)) if slots else None
        ones = xp.asarray(np.ones((1, ni)), dtype)

        def weights(d: Any, *w: Any) -> None:
            xp.copy_into(cols(d), (w_of(w[0]) if w_of else w[0]) if w else ones)
        return weights, slots, zeros
    move, r = part.move, part.r
    r_lo, _ = P.extent(r)  # type: ignore[arg-type]
    rv, _ = P.affine(move.R)
    target = xp.to_dtype(xp.arange(r_lo, r_lo + R).reshape(1, R, 1) * move.s + rv.reshape(1, 1, -1), dtype)
    block = xp.viewer((slice(None), slice(top, top + R), slice(left, left + ni)), shape)
    e_of = shaped(metas[0], (B, 1, ni)) or (lambda e: e)
    w_of = (shaped(metas[1], (B, 1, ni)) or (lambda w: w)) if part.weights is not None else None

    def onehot(d: Any, e: Any, *w: Any) -> None:  # D[r, i] = (E[i] == s*r + R[i]) (* w[i])
        rows = block(d)
        xp.equal_into(e_of(e), target, rows)
        if w_of:
            xp.multiply_into(rows, w_of(w[0]))
    return onehot, slots, zeros
