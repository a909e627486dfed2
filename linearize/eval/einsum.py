"""Contractions planned once: an einsum of two operands becomes one batched matrix product.

`contraction(xp, terms, out, size)` returns f(*operands) computing `einsum(",".join(terms) + "->" + out)`, and
(inner, shape) when f(a, b) is inner(a, b), of that shape, reshaped (for `Planner.emit`'s `tail`), else None.
For two operands the letters are sorted, while planning, into batch (in both and the output), left (first
operand and output), right (second operand and output) and contracted (both, not output) ones, and the call
is transpose, reshape, one batched product (`bmm`), reshape, transpose: a BLAS product for numpy (whose einsum
does not use BLAS with batch letters), and for torch no per-call parsing. Other cases call the library's einsum.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .backends import Backend, permuter
from .plan import compose, lift, reshaper

Tail = tuple[Callable[..., Any], tuple[int, ...]] | None


def contraction(xp: Backend, terms: list[str], out: str, size: dict[str, int]) -> tuple[Callable[..., Any], Tail]:
    spec = ",".join(terms) + "->" + out
    if len(terms) != 2:
        return (lambda *ops: xp.einsum(spec, *ops)), None
    ta, tb = terms
    alone = [c for c in ta if c not in tb and c not in out] + [c for c in tb if c not in ta and c not in out]
    if alone or len(set(ta)) != len(ta) or len(set(tb)) != len(tb):  # summed in one operand only, or repeated
        return (lambda *ops: xp.einsum(spec, *ops)), None
    batch = [c for c in out if c in ta and c in tb]
    left = [c for c in out if c in ta and c not in tb]
    right = [c for c in out if c in tb and c not in ta]
    inner = [c for c in ta if c in tb and c not in out]
    n = [math.prod(size[c] for c in part) for part in (left, inner, right)]
    bs = tuple(size[c] for c in batch)
    pa = permuter(xp, [ta.index(c) for c in batch + left + inner])
    pb = permuter(xp, [tb.index(c) for c in batch + inner + right])
    g = math.prod(bs)
    shape_a, shape_b = (g, n[0], n[1]), (g, n[1], n[2])
    mid = batch + left + right
    shape_out = (*bs, *(size[c] for c in left), *(size[c] for c in right))
    po = permuter(xp, [mid.index(c) for c in out])
    fa = compose(pa, reshaper(tuple(size[c] for c in batch + left + inner), shape_a))
    fb = compose(pb, reshaper(tuple(size[c] for c in batch + inner + right), shape_b))
    fo = compose(reshaper((g, n[0], n[2]), shape_out), po)
    bmm = lift(xp.bmm, fa, fb)
    if fo is None:
        return bmm, None
    return (lambda a, b: fo(bmm(a, b))), ((bmm, (g, n[0], n[2])) if po is None else None)
