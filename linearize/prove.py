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
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from .build import mean, tensor
from .ir import Affine, Node, Op, node
from .printing import show
from .program import InputError, Program

KEEP = {Op.HEAVISIDE, Op.DELTA, Op.TOPK, Op.RANK, Op.ARGSORT, Op.COMPLEMENT}  # comparisons: read the representative
MOVE = {Op.GATHER, Op.SORT_BY_KEY, Op.KTH}  # rows moved by comparisons: the rows are values, the order is not
ELEMENTS_PER_CALL = 3_000_000  # batch rows x tokens^2 x channels per evaluation call (bounds memory)


class ProveError(ValueError):
    """The program is outside what the prover can settle; the message says why."""


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


# --- the two sides, and the checks that make one representative per region enough --------------------------------
def sides(program: Program, original: Program | None = None, pipeline: Any = None) -> tuple[Program, Program]:
    """(original, linearized): a linearized program is compared with its meta["reference"] (or same-named) original."""
    from .form import is_linearized
    if not is_linearized(program):
        from .rewrite import linearize
        return original or program, linearize(program, pipeline).result
    if original is None:
        from .programs import UnknownProgram, get
        try:
            original = get(program.meta.get("reference", program.name))
        except UnknownProgram:
            original = program
    if is_linearized(original):
        raise ProveError(f"{program.name} is already linearized and has no original form to compare against "
                         "(name one in meta['reference'])")
    return original, program


def score_of(program: Program) -> Node:
    """The scores, mean(attn[:, 0, 1:], axis=0): the node both forms must read attn through."""
    attn = next((n for n in program.inputs if n.arg[0] == "attn" and len(n.arg[1]) == 3), None)
    if attn is None or len(program.inputs) != 2 or program.features != ("x",) or program.given_sizes != ("k",):
        raise ProveError(f"{program.name}: prove needs inputs x (the features) and attn [H, N + 1, N + 1], and k")
    return mean(attn[:, 0, 1:], axis=0)


def _uses(program: Program, target: Node) -> set[Node]:
    """The nodes that depend on target."""
    dep: set[Node] = set()
    for n in (m for r in program.roots() for m in r.toposort()):
        if n is target or any(s in dep for s in n.src):
            dep.add(n)
    return dep


def _strip(n: Node) -> Node:
    return _strip(n.src[0]) if n.op is Op.DEF else n


def order_problems(program: Program, score: Node) -> list[str]:
    """Why attn might matter other than through the scores, a comparison depend on more than the weak ordering of
    the scores, or float64 arithmetic be inexact; empty when none can happen."""
    dep, inner, memo = _uses(program, score), set(score.toposort()), {}
    nodes = [n for r in program.roots() for n in r.toposort()]
    problems = [f"attn is used other than through the scores: {show(n)}" for n in nodes
                if n not in inner and any(s in inner and s is not score for s in n.src)]

    def ref(n: Node) -> bool:  # score[e]
        return n.op is Op.INDEX and n.arg == 0 and _strip(n.src[0]) is score

    def compared(a: Node) -> bool:  # the argument of a heaviside or delta
        return od(a) or (a.op is Op.SUB and ref(a.src[0]) and ref(a.src[1]))

    def key(n: Node) -> bool:
        return _strip(n) is score or od(n)

    def position(n: Node) -> bool:  # the operands in comparison positions
        if n.op in (Op.HEAVISIDE, Op.DELTA):
            return compared(n.src[0])
        if n.op in (Op.TOPK, Op.RANK, Op.ARGSORT, Op.SORT_BY_KEY, Op.KTH):
            return key(n.src[1 if n.op in (Op.SORT_BY_KEY, Op.KTH) else 0])
        return od(n.src[1 if n.op is Op.GATHER else 0]) if n.op in (Op.GATHER, Op.COMPLEMENT) else True

    def od(n: Node) -> bool:  # order-determined: a function of the weak ordering (and of anything but the scores)
        if n not in memo:
            memo[n] = (n not in dep or (n is not score and (position(n) if n.op in KEEP else
                       position(n) and od(n.src[0]) if n.op in MOVE else all(od(s) for s in n.src))))
        return memo[n]

    for n in nodes:
        problems += [f"not a comparison of two scores: {show(n)}"] * (not position(n))
        problems += [f"inexact in float64: {show(n)}"] * ((n.op is Op.DIV) or (n.op is Op.MEAN and n is not score)
                                                          or (n.op is Op.CONST and not (n.arg * 1024).is_integer()))
    return list(dict.fromkeys(problems))


def _syms(a: Any) -> set:
    if isinstance(a, Affine):
        return set(a.syms).union(*(_syms(s) for s in a.vars))
    if isinstance(a, tuple):
        return set().union(*(_syms(e) for e in a))
    return ({a} | _syms(a.lo) | _syms(a.hi)) if getattr(a, "kind", None) == "var" else set()


def channel_generic(program: Program) -> bool:
    """True when C (x's last size) is only ever a trailing axis that no op indexes, slices, joins or reduces: each
    channel is then computed alike and on its own, so one channel settles every C."""
    c = next(n for n in program.inputs if n.arg[0] == "x").arg[1][-1]
    if len(c.terms) != 1 or c.const or any(c.syms & _syms((e.lhs, e.rhs)) for e in program.early_returns):
        return False
    for n in (m for r in program.roots() for m in r.toposort()):
        if any(c.syms & _syms(d) for d in n.shape[:-1]) or (n.op is not Op.INPUT and c.syms & _syms(n.arg)):
            return False
        axis = n.arg[0] if n.op is Op.SLICE else n.arg
        if n.op in (Op.INDEX, Op.SLICE, Op.CAT, Op.MEAN) and axis == len(n.src[0].shape) - 1 \
                and n.src[0].shape[-1] == c:
            return False
    return True


def split(program: Program, score: Node) -> Program:
    """The program with every *value* use of the scores reading a new input `v` [N]; comparisons keep the scores."""
    v, dep, memo = tensor("v", *score.shape), _uses(program, score), {}

    def go(n: Node) -> Node:
        if n not in memo:
            memo[n] = (v if n is score else n if n not in dep or n.op in KEEP
                       else node(n.op, (go(n.src[0]), *n.src[1:]), n.arg) if n.op in MOVE
                       else node(n.op, tuple(go(s) for s in n.src), n.arg))
        return memo[n]

    early = tuple(replace(e, value=go(e.value)) for e in program.early_returns)
    return replace(program, inputs=(*program.inputs, v), output=go(program.output), early_returns=early)


def degree(root: Node, name: str) -> float:
    """The polynomial degree of root in the input `name`; inf where it reaches a comparison or a divisor."""
    deg: dict[Node, float] = {}
    for n in root.toposort():
        d = [deg[s] for s in n.src]
        deg[n] = (float(n.arg[0] == name) if n.op is Op.INPUT else d[0] + d[1] if n.op is Op.MUL
                  else (math.inf if d[1] else d[0]) if n.op is Op.DIV
                  else (math.inf if any(d) else 0.0) if n.op in KEEP
                  else (math.inf if any(d[1:]) else d[0]) if n.op in MOVE else max(d, default=0.0))
    return deg[root]


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
    from .evaluate import compile
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
