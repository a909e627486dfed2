"""Exhaustive proof over the orderings of the scores: the linearized form equals the original for every n <= max_n,
every k and every weak ordering of the n scores, with the features symbolic. The argument is in docs/prove.md.

    result = prove(get("evit"), max_n=6)     # result.ok, result.regions, result.counterexample, result.seconds

In a region (n, k, weak ordering w) every comparison is a constant, so each side is a polynomial P_w(x, v) in the
features x and the score *values* v. `split` makes P_w a program: comparisons read a representative of w (through
attn), values read a new input `v`. Both sides are evaluated exactly (small integers in float64) on a unisolvent
set -- x in {0, e_1, ..., e_D} (all at once, as channels) and v on the lattice {t >= 0, sum(t) <= degree} over the
blocks of w -- for many orderings at once along the batch axis.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..ir.program import InputError, Program
from .regions import ProveError, channel_generic, degree, order_problems, score_of, sides, split

ELEMENTS_PER_CALL = 3_000_000  # batch rows x tokens^2 x channels per evaluation call (bounds memory)


@dataclass
class Counterexample:
    n: int
    k: int
    ordering: list[int]  # each token's block, 0 = the lowest scores
    scores: list[float]  # concrete scores in that ordering: attn[0, 0, 1:] with one head
    x: list[list[float]]  # [N + 1, C]
    rows: list[dict[str, Any]] = field(default_factory=list)  # {row, expected (original), got (linearized)}
    problem: str = ""

    def __str__(self) -> str:
        lines = [f"n = {self.n}, k = {self.k}, scores = {self.scores}, x = {self.x}"]
        lines += [f"  row {r['row']}: original {r['expected']}, linearized {r['got']}" for r in self.rows]
        return "\n".join(lines + ([f"  {self.problem}"] if self.problem else []))


@dataclass
class ProofResult:
    program: str
    max_n: int
    regions: int  # (ordering, k) pairs settled
    ok: bool
    counterexample: Counterexample | None
    seconds: float
    channel_generic: bool = True  # False: settled for the given number of channels only

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fubini(n: int) -> int:
    """The number of weak orderings of n items: a(n) = sum_i C(n, i) a(n - i) (choose the top block)."""
    a = [1]
    for m in range(1, n + 1):
        a.append(sum(math.comb(m, i) * a[m - i] for i in range(1, m + 1)))
    return a[n]


def weak_orderings(n: int) -> np.ndarray:
    """Every weak ordering of n scores as levels [F, n] (0 = lowest block; levels 0..m-1 all used), sorted."""
    levels, blocks = np.zeros((1, 0), np.int8), np.zeros(1, np.int8)
    for _ in range(n):  # the next token joins block b, or opens a new block below block b
        parts = [(np.c_[levels[blocks > b], np.full((blocks > b).sum(), b)], blocks[blocks > b])
                 for b in range(n)]
        parts += [(np.c_[lv + (lv >= b), np.full(len(lv), b)], blocks[blocks >= b] + 1)
                  for b in range(n) for lv in [levels[blocks >= b]]]
        levels = np.concatenate([p[0] for p in parts]).astype(np.int8)
        blocks = np.concatenate([p[1] for p in parts]).astype(np.int8)
    return levels[np.lexsort(levels.T[::-1])]


# --- settling regions in batches --------------------------------------------------------------------------------
_JOB: dict[str, Any] = {}  # the split programs etc., set before worker processes fork (programs do not pickle)
_CACHE: dict[Any, Any] = {}


def _cached(key: Any, make: Callable[[], Any]) -> Any:
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _lattice(n: int, d: int) -> np.ndarray:
    """Every t in N^n with sum(t) <= d (unisolvent for polynomials of degree <= d), by largest nonzero coordinate."""
    pts = sorted((t for t in itertools.product(range(d + 1), repeat=n) if sum(t) <= d), key=lambda t: t[::-1])
    return np.array(pts, np.float64).reshape(len(pts), n)


def _features(n: int, channels: int | None) -> np.ndarray:
    """[Q, n + 1, C']: x = [I | 0] as channels (channel-generic), or else 0 and every one-hot (token, channel)."""
    if channels is None:
        return np.c_[np.eye(n + 1), np.zeros(n + 1)][None]
    return np.concatenate([np.zeros((1, n + 1, channels)), np.eye((n + 1) * channels).reshape(-1, n + 1, channels)])


def _settle(n: int, k: int, lo: int, hi: int) -> tuple[int, int, str]:
    """Settle orderings [lo, hi) of n scores at k: (settled, the first failing ordering or -1, problem)."""
    w = _cached(("w", n), lambda: weak_orderings(n))[lo:hi].astype(np.int64)
    if _JOB["degree"]:  # v on the lattice over each ordering's blocks: v_i = t[block of token i]
        lat = _cached(("lat", n), lambda: _lattice(n, _JOB["degree"]))
        support = np.array([max((i + 1 for i, t in enumerate(p) if t), default=0) for p in lat])
        o, p = np.nonzero(support[None, :] <= w.max(axis=1)[:, None] + 1)
        v = np.take_along_axis(lat[p], w[o], axis=1)
    else:
        o, v = np.arange(len(w)), w + 1.0
    feats = _features(n, _JOB["channels"])
    o, v = np.repeat(o, len(feats)), np.repeat(v, len(feats), axis=0)
    fo, fl = (_cached(side, lambda side=side: _compile(_JOB[side])) for side in ("original", "linearized"))
    step = max(1, ELEMENTS_PER_CALL // (n * n * feats.shape[2]))
    for start in range(0, len(o), step):
        b = len(o[start:start + step])
        attn = np.zeros((b, 1, n + 1, n + 1))
        attn[:, 0, 0, 1:] = w[o[start:start + b]] + 1  # the representative: integer levels, ties exact
        args = {"x": feats[np.arange(start, start + b) % len(feats)], "attn": attn, "v": v[start:start + b], "k": k}
        try:
            want, got = fo(**args), fl(**args)
        except InputError as e:
            return int(o[start]), lo + int(o[start]), f"evaluation failed: {e}"
        if want.shape != got.shape:
            return int(o[start]), lo + int(o[start]), "output shapes differ"
        bad = np.flatnonzero((want != got).reshape(b, -1).any(axis=1))
        if len(bad):
            return int(o[start + bad[0]]), lo + int(o[start + bad[0]]), ""
    return hi - lo, -1, ""


def _compile(program: Program) -> Callable[..., Any]:
    from ..eval.compiled import compile
    # generic steps only: every comparison evaluated as written (the planner's fast strategies compute a stable
    # rank by sorting, which would make the proof compare a sort with a sort)
    return compile(program, "numpy", fast=False)


def _run(unit: tuple[int, int, int, int]) -> tuple[tuple[int, int, int, int], tuple[int, int, str]]:
    return unit, _settle(*unit)


def counterexample(original: Program, linearized: Program, n: int, k: int, levels: Any, problem: str = "",
                   channels: int = 1) -> Counterexample:
    """Concrete scores in the failing ordering, and x, on which the two forms differ (a few candidates tried)."""
    levels = np.asarray(levels, np.int64)
    scale = 2.0 ** math.ceil(math.log2(levels.max() + 2))  # dyadic scores in (0, 1): exact in every dtype
    scores = [(levels + 1) / scale, (2 * levels + 1) / (2 * scale), (levels + 1) ** 2 / scale**2]
    xs = [np.arange(1.0, (n + 1) * channels + 1), 2.0 ** np.arange((n + 1) * channels), np.arange(1.0, 99) % 3 + 1]
    fo, fl, first = _compile(original), _compile(linearized), None
    for s, x in itertools.product(scores, (a[:(n + 1) * channels].reshape(n + 1, channels) for a in xs)):
        attn = np.zeros((1, 1, n + 1, n + 1))
        attn[0, 0, 0, 1:] = s
        cex = Counterexample(n, k, levels.tolist(), s.tolist(), x.tolist(), problem=problem)
        first = first or cex
        try:
            want, got = fo(x=x[None], attn=attn, k=k)[0], fl(x=x[None], attn=attn, k=k)[0]
        except InputError as e:
            cex.problem = f"evaluation failed: {e}"
            return cex
        if want.shape != got.shape:
            cex.problem = f"output shapes differ: original {list(want.shape)}, linearized {list(got.shape)}"
        cex.rows = [{"row": r, "expected": want[r].tolist() if r < len(want) else None,
                     "got": got[r].tolist() if r < len(got) else None} for r in range(max(len(want), len(got)))
                    if r >= min(len(want), len(got)) or not np.array_equal(want[r], got[r])]
        if cex.rows:
            return cex
    assert first is not None
    first.problem = first.problem or "the forms differ as polynomials in the scores but agree on every candidate"
    return first


def prove(program: Program, *, max_n: int = 6, original: Program | None = None, pipeline: Any = None,
          jobs: int = 1, channels: int = 1, progress: Callable[[int, int, int], None] | None = None) -> ProofResult:
    """Settle every (weak ordering, k) region for n <= max_n; `progress(settled, total, n)` after each batch."""
    t0 = time.perf_counter()
    orig, lin = sides(program, original, pipeline)
    score = score_of(orig)
    if score_of(lin) is not score:
        raise ProveError(f"{orig.name} and {lin.name} read attn differently")
    problems = order_problems(orig, score) + order_problems(lin, score)
    if problems:
        raise ProveError(f"cannot prove {program.name}: " + "; ".join(problems[:3]))
    so, sl = split(orig, score), split(lin, score)
    dv, dx = (max(degree(r, name) for s in (so, sl) for r in s.roots()) for name in ("v", "x"))
    if dx > 1 or dv == math.inf:
        raise ProveError(f"cannot prove {program.name}: with the comparisons fixed the output must be polynomial "
                         f"in the scores and linear in x (degree in x: {dx}, in the scores: {dv})")
    generic = channel_generic(orig) and channel_generic(lin)
    _JOB.update(original=so, linearized=sl, degree=int(dv), channels=None if generic else channels)
    _CACHE.clear()
    total = sum(fubini(n) * n for n in range(1, max_n + 1))
    chunk = 20_000  # orderings per unit of work: bounds memory, spreads over processes
    units = [(n, k, lo, min(fubini(n), lo + chunk)) for n in range(1, max_n + 1) for k in range(1, n + 1)
             for lo in range(0, fubini(n), chunk)]
    settled, failure = 0, None
    pool = multiprocessing.get_context("fork").Pool(jobs) if jobs > 1 else None
    try:
        for (n, k, _, _), (count, bad, problem) in (pool.imap(_run, units) if pool else map(_run, units)):
            settled += count
            if progress:
                progress(settled, total, n)
            if bad >= 0:
                failure = (n, k, weak_orderings(n)[bad], problem)
                break
    finally:
        if pool:
            pool.terminate()
    cex = counterexample(orig, lin, *failure, channels=1 if generic else channels) if failure else None
    return ProofResult(program.name, max_n, settled, failure is None, cex, round(time.perf_counter() - t0, 3), generic)
