"""The hull of the rows that may sit at each rank: for rows lo, hi [B * n, *F], row (b, i) covering the ranks
rank_lo[b, i]..rank_hi[b, i], the minimum of lo and maximum of hi over the rows covering each rank.

Two ways, the cheaper chosen by counting: directly, one (row, rank) pair per rank a row covers (most rows cover
one rank when the box is small); or through a segment tree over the ranks, where a row covering a run of ranks is
recorded at the O(log R) nodes whose blocks make up the run, and each rank then takes the hull of its ancestors
(when rows cover many ranks each, as at large boxes). Both give the same numbers: min and max are exact.
"""

from __future__ import annotations

from typing import Any

from ..eval.backends import Backend
from .kernels import Kernels


def segment_hull(k: Kernels, lo: Any, hi: Any, src: Any, seg: Any, n_seg: int, fill: float = 0.0) -> tuple[Any, Any]:
    """out_lo[s] = min of lo[src[p]] over the p with seg[p] == s, out_hi[s] the max of hi (fill, -fill where no p),
    for rows lo, hi [R, *F] and seg sorted. One pass per slot (a segment's first, second, ... member), each a
    gather and a minimum over the segments that have that many members: most segments have one, so this is about
    one gather of the rows, where a reduceat or scatter-reduce over all members costs several times more."""
    out_lo, out_hi = k.full((n_seg, *lo.shape[1:]), fill, lo), k.full((n_seg, *lo.shape[1:]), -fill, lo)
    if not seg.shape[0]:
        return out_lo, out_hi
    counts = k.bincount(seg, n_seg)
    starts = k.cumsum(counts) - counts
    slot = k.arange(seg.shape[0]) - starts[seg]
    for s in range(int(counts.max())):
        at = slot == s
        where, rows = seg[at], src[at]
        if s == 0:
            k.put(out_lo, where, k.take(lo, rows))
            k.put(out_hi, where, k.take(hi, rows))
        else:
            k.put(out_lo, where, k.minimum(k.take(out_lo, where), k.take(lo, rows)))
            k.put(out_hi, where, k.maximum(k.take(out_hi, where), k.take(hi, rows)))
    return out_lo, out_hi


def covering_hull(xp: Backend, k: Kernels, lo: Any, hi: Any, rank_lo: Any, rank_hi: Any, first: int,
                  count: int, method: str | None = None, stride: int | None = None, offset: int = 0) -> tuple[Any, Any]:
    """[B, count, *F] hulls for the ranks first..first + count - 1 (0 where no row covers a rank); row (b, i) is
    lo[b * stride + offset + i] (stride n by default). method "direct" or "tree" forces one way (the tests compare
    them); by default the one with fewer row visits is taken."""
    B, n = rank_lo.shape
    stride = n if stride is None else stride
    a, c = xp.clip(rank_lo - first, 0, count), xp.clip(rank_hi - first, -1, count - 1)
    covers = a <= c
    pairs = int(k.where(covers, c - a + 1, 0).sum())
    size = 1 << max(count - 1, 0).bit_length()
    if method == "direct" or (method is None and pairs <= 2 * B * (count + 2 * size)):
        pos = k.arange(count)
        cand = (a[:, None, :] <= pos[None, :, None]) & (pos[None, :, None] <= c[:, None, :])  # [B, count, n]
        b, r, t = k.nonzero(cand)
        out_lo, out_hi = segment_hull(k, lo, hi, b * stride + offset + t, b * count + r, B * count)
        return out_lo.reshape((B, count, *lo.shape[1:])), out_hi.reshape((B, count, *lo.shape[1:]))
    return _tree_hull(xp, k, lo, hi, a, c, covers, count, size, stride, offset)


def _tree_hull(xp: Backend, k: Kernels, lo: Any, hi: Any, a: Any, c: Any, covers: Any, count: int,
               size: int, stride: int, offset: int) -> tuple[Any, Any]:
    B = a.shape[0]
    b, t = k.nonzero(covers)
    row = b * stride + offset + t
    left, right = a[b, t] + size, c[b, t] + size + 1  # the half-open run of leaves, as tree nodes
    nodes, rows = [], []
    while left.shape[0]:  # the standard bottom-up decomposition of [left, right) into whole blocks
        take = left & 1  # 0 or 1, as the integers they are
        nodes.append(b[take == 1] * 2 * size + left[take == 1])
        rows.append(row[take == 1])
        left = left + take
        take = (right & 1) * (left < right)
        right = right - take
        nodes.append(b[take == 1] * 2 * size + right[take == 1])
        rows.append(row[take == 1])
        left, right = left // 2, right // 2
        keep = left < right
        b, row, left, right = b[keep], row[keep], left[keep], right[keep]
    if not nodes:  # no row covers any of these ranks
        return k.full((B, count, *lo.shape[1:]), 0.0, lo), k.full((B, count, *lo.shape[1:]), 0.0, lo)
    # only the nodes over ranks < count are ever used: level by level, the first `need` nodes of each level,
    # stored one level after the other (about 2 * count rows, not 2 * size)
    widths = [1 << level for level in range(size.bit_length())]  # nodes per level, root first
    need = [-(-count * w // size) for w in widths]
    start = [sum(need[:j]) for j in range(len(need))]
    total = start[-1] + need[-1]
    place = [-1] * (2 * size)  # tree node -> its row in the compact layout
    for w, n_w, s_w in zip(widths, need, start):
        place[w:w + n_w] = range(s_w, s_w + n_w)
    place_arr = xp.asarray(place, xp.int_dtype)
    nodes_flat, rows_flat = xp.concat(nodes, 0), xp.concat(rows, 0)
    nodes_flat = (nodes_flat // (2 * size)) * total + place_arr[nodes_flat % (2 * size)]
    order = xp.argsort(nodes_flat, False)
    inf = float("inf")
    t_lo, t_hi = segment_hull(k, lo, hi, rows_flat[order], nodes_flat[order], B * total, fill=inf)
    F = tuple(lo.shape[1:])
    t_lo, t_hi = t_lo.reshape((B, total, *F)), t_hi.reshape((B, total, *F))
    for j in range(len(widths) - 1):  # push each node's hull down to its two children
        parent, child = slice(start[j], start[j] + need[j]), slice(start[j + 1], start[j + 1] + need[j + 1])
        for t, op in ((t_lo, k.minimum), (t_hi, k.maximum)):
            twice = xp.broadcast_to(t[:, parent][:, :, None], (B, need[j], 2, *F)).reshape((B, 2 * need[j], *F))
            t[:, child] = op(t[:, child], twice[:, :need[j + 1]])
    out_lo, out_hi = t_lo[:, start[-1]:], t_hi[:, start[-1]:]
    empty = out_lo == inf
    return k.where(empty, 0.0, out_lo), k.where(empty, 0.0, out_hi)
