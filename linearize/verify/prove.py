"""Exhaustive proof over the orderings of what a program compares: the candidate equals its reference for every
token size n <= max_n, every value of the given sizes (k) and every weak ordering of the compared entries, with the
feature and value inputs symbolic. The argument is in docs/prove.md.

    result = prove(get("evit"), max_n=6)                    # linearize(evit) against evit's original form
    result = prove(get("evit-seed"), get("evit"))           # a linearized program against its declared reference
    result.ok, result.regions, result.counterexample, result.candidate, result.reference

In a region every comparison is a constant, so each side is a polynomial in the compared values and the
feature/value inputs. Both sides are evaluated exactly (small integers in float64, or rationals when a program
divides) on a set that fixes such a polynomial, for many orderings at once along the batch axis.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..ir.program import InputError, Program
from .regions import Layout, ProveError, analyze, degree, inexact, read_positions, value_reads
from .sizes import SizePlan, channel_generic, lattice, linear_points, plan_sizes, signature

__all__ = ["Counterexample", "ProofResult", "ProveError", "Side", "channel_generic", "fubini", "prove",
           "weak_orderings"]

ELEMENTS_PER_CALL = 3_000_000  # batch rows x entries per evaluation call (bounds memory)
MAX_COMPARED = 9  # compared entries per region set: 7,087,261 weak orderings of 9
TOLERANCE = 1e-9  # against a torch function, which computes in float64


@dataclass
class Side:
    """One side of a comparison: a program in some form, or a torch function."""

    name: str
    form: str  # "linearized form", "as written", "original form", "torch function"
    program: Program | None = None
    fn: Callable[..., Any] | None = None

    def __str__(self) -> str:
        return f"{self.name} ({self.form})"

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "form": self.form}


@dataclass
class Counterexample:
    n: int | None  # the token size
    sizes: dict[str, int]
    ordering: list[int]  # each compared entry's block, 0 = the lowest
    scores: list[float]  # the compared entries' values, in that order (for EViT: tokens 1..N's scores)
    inputs: dict[str, Any]  # the concrete inputs, unbatched
    rows: list[dict[str, Any]] = field(default_factory=list)  # {row, expected (reference), got (candidate)}
    problem: str = ""

    @property
    def k(self) -> int | None:
        return self.sizes.get("k")

    @property
    def x(self) -> Any:
        return self.inputs.get("x")

    def __str__(self) -> str:
        sizes = ", ".join(f"{k} = {v}" for k, v in self.sizes.items())
        lines = [f"{sizes}, scores = {self.scores}"]
        lines += [f"  {name} = {v}" for name, v in self.inputs.items() if not isinstance(v, list) or
                  len(str(v)) < 400]
        lines += [f"  row {r['row']}: reference {r['expected']}, candidate {r['got']}" for r in self.rows]
        return "\n".join(lines + ([f"  {self.problem}"] if self.problem else []))


@dataclass
class ProofResult:
    program: str
    max_n: int
    regions: int  # (ordering, sizes) pairs settled
    ok: bool
    counterexample: Counterexample | None
    seconds: float
    channel_generic: bool = True  # False: settled for the given number of channels only
    candidate: dict[str, str] = field(default_factory=dict)  # {name, form}
    reference: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, str] = field(default_factory=dict)  # how each size was settled
    exact: str = "float64"  # "float64" (small integers, exact) or "rational" (a program divides)
    assumption: str = ""  # what a torch-function reference is assumed to be

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
    return levels[np.lexsort(levels.T[::-1])] if n else levels


# --- the two sides -------------------------------------------------------------------------------------------------
def sides(program: Program, reference: Program | Callable[..., Any] | None = None, pipeline: Any = None,
          reference_name: str | None = None) -> tuple[Side, Side]:
    """(candidate, reference). A program not in linearized form is linearized and compared with its declared
    reference, or, when it declares none, with its own original form; a linearized program needs a reference."""
    from ..ir.form import is_linearized
    declared = program.meta.get("reference") if program.meta else None
    if reference is None and declared:
        raise ProveError(f"{program.name} declares the reference {declared!r}: pass it (reference=...; "
                         "`linearize prove` finds it by name)")
    if is_linearized(program):
        cand = Side(program.name, "as written", program)
        if reference is None:
            raise ProveError(f"{program.name} is already linearized and names no reference to compare it with "
                             "(meta={'reference': ...} or --reference)")
    else:
        from ..rewrite import linearize
        cand = Side(program.name, "linearized form", linearize(program, pipeline).result)
        reference = program if reference is None else reference
    if isinstance(reference, Program):
        form = "original form" if reference is program or not is_linearized(reference) else "as written"
        ref = Side(reference_name or reference.name, form, reference)
        if ref.program.output is cand.program.output and ref.program.early_returns == cand.program.early_returns:
            raise ProveError(f"{program.name}: the candidate and the reference are the same program")
        if signature(ref.program) != signature(cand.program):
            raise ProveError(f"{cand} and {ref} take different inputs, sizes or roles: "
                             f"{cand.program.signature().rstrip(':')} against {ref.program.signature().rstrip(':')}")
    elif callable(reference):
        from .check import signature_problem
        ref = Side(reference_name or getattr(reference, "__name__", "reference"), "torch function", fn=reference)
        if signature_problem(reference, cand.program):
            raise ProveError(signature_problem(reference, cand.program))
    else:
        raise ProveError(f"cannot prove against a {type(reference).__name__}: pass a Program or a function")
    return cand, ref


# --- settling regions in batches --------------------------------------------------------------------------------
_JOB: dict[str, Any] = {}  # the prepared sides and regions, set before worker processes fork
_CACHE: dict[Any, Any] = {}


def _cached(key: Any, make: Callable[[], Any]) -> Any:
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _evaluator(side: Side, exact: bool) -> Callable[[dict[str, np.ndarray], dict[str, int]], np.ndarray]:
    if side.fn is not None:
        fn = side.fn

        def call(inputs: dict[str, np.ndarray], given: dict[str, int]) -> np.ndarray:
            import torch
            out = fn(**{k: torch.from_numpy(np.ascontiguousarray(v, np.float64)) for k, v in inputs.items()}, **given)
            return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
        return call
    if exact:
        from .exact import evaluate
        return lambda inputs, given: evaluate(side.program, inputs, given)
    from ..eval.compiled import compile
    # generic steps only: every comparison evaluated as written (the planner's fast strategies compute a stable
    # rank by sorting, which would make the proof compare a sort with a sort)
    f = compile(side.program, "numpy", fast=False)
    return lambda inputs, given: np.asarray(f(**inputs, **given))


def _differ(want: np.ndarray, got: np.ndarray, tolerant: bool) -> np.ndarray:
    """Per batch row: do the outputs differ?"""
    b = want.shape[0]
    if tolerant:
        close = np.isclose(want.astype(np.float64), got.astype(np.float64), rtol=TOLERANCE, atol=TOLERANCE)
        return ~close.reshape(b, -1).all(axis=1)
    return (want != got).reshape(b, -1).any(axis=1)


def _call(side: str, inputs: dict[str, np.ndarray], given: dict[str, int]) -> np.ndarray:
    """One side's output; InputError when it refuses the input (a program's index out of range, a function that
    raises), which is a counterexample when the other side answers."""
    f = _cached(side, lambda: _evaluator(_JOB[side], _JOB["exact"]))
    try:
        return f(inputs, given)
    except InputError as e:
        raise InputError(f"the {side} ({_JOB[side]}) refused the input: {e}") from None
    except Exception as e:  # a torch function's own error; in a program's evaluation it would be a bug: raised
        if _JOB[side].fn is None:
            raise
        raise InputError(f"the {side} ({_JOB[side]}) raised {type(e).__name__}: {e}") from None


def _settle(e: int, lo: int, hi: int) -> tuple[int, int, str]:
    """Settle orderings [lo, hi) at environment e: (settled, the first failing ordering or -1, problem)."""
    _env, n, given = _JOB["envs"][e]
    layout: Layout = _JOB["layouts"][n]
    P, E, dv = len(layout.positions), len(layout.extras), _JOB["degree"]
    w = _cached(("w", P), lambda: weak_orderings(P))[lo:hi].astype(np.int64)
    if dv:  # block values c (level + 1) + t[block], t on the lattice (extras: t[P + e]); c > dv keeps the order
        lat = _cached(("lat", P + E), lambda: lattice(P + E, dv))
        support = np.array([max((i + 1 for i, t in enumerate(p[:P]) if t), default=0) for p in lat])
        o, p = np.nonzero(support[None, :] <= w.max(axis=1, initial=-1)[:, None] + 1)
        t = lat[p]
        vals = (dv + 1) * (w[o] + 1) + np.take_along_axis(t[:, :P], w[o], axis=1) if P else np.zeros((len(o), 0))
        extras = t[:, P:]
    else:
        o = np.arange(len(w))
        vals, extras = (w + 1.0), np.zeros((len(w), E))
    groups = _cached(("lin", n), lambda: _JOB["points"](n))
    for pts in groups:  # points of one shape stack along the batch axis
        rows_o = np.repeat(o, len(pts))
        per = max(1, ELEMENTS_PER_CALL // _JOB["elements"](n, pts[0]))
        for start in range(0, len(rows_o), per):
            idx = np.arange(start, min(start + per, len(rows_o)))
            pick = idx // len(pts)
            inputs = layout.scores(vals[pick], extras[pick])
            for name in pts[0]:
                inputs[name] = np.stack([pts[i % len(pts)][name] for i in idx])
            try:
                want, got = _call("reference", inputs, given), _call("candidate", inputs, given)
            except InputError as err:
                return int(rows_o[start]), lo + int(rows_o[start]), f"evaluation failed: {err}"
            if want.shape != got.shape:
                return int(rows_o[start]), lo + int(rows_o[start]), (
                    f"output shapes differ: reference {list(want.shape[1:])}, candidate {list(got.shape[1:])}")
            bad = np.flatnonzero(_differ(want, got, _JOB["reference"].fn is not None))
            if len(bad):
                first = int(rows_o[start + bad[0]])
                return first, lo + first, ""
    return hi - lo, -1, ""


def _run(unit: tuple[int, int, int]) -> tuple[tuple[int, int, int], tuple[int, int, str]]:
    return unit, _settle(*unit)


# --- preparing a proof ------------------------------------------------------------------------------------------------
def _prepare(cand: Side, ref: Side, max_n: int, sizes: Mapping[str, int] | None, channels: int) -> dict[str, Any]:
    progs = [s.program for s in (cand, ref) if s.program is not None]
    analyses = [analyze(p) for p in progs]
    problems = [f"{s}: {msg}" for s, a in zip((cand, ref), analyses) for msg in a.problems]
    if problems:
        raise ProveError("cannot prove it: " + "; ".join(problems[:3]))
    plan = plan_sizes(cand.program, progs, analyses, sizes, channels)
    scores = [n for n in cand.program.input_names if cand.program.role(n) == "score"]
    linear = [n for n in cand.program.input_names if cand.program.role(n) != "score"]
    dv = max((degree(r, scores, a) for p, a in zip(progs, analyses) for r in p.roots()), default=0.0)
    dl = max((degree(r, linear) for p in progs for r in p.roots()), default=0.0)
    if math.isinf(dv) or math.isinf(dl):  # the analysis made every comparison valid, so a divisor is to blame
        which = "score values" if math.isinf(dv) else ", ".join(linear)
        raise ProveError(f"cannot prove it: with the comparisons fixed the output must be a polynomial in the "
                         f"{which} (a divisor or a comparison depends on them)")
    exact = any(inexact(r, a) for p, a in zip(progs, analyses) for r in p.roots())
    envs, layouts = [], {}
    for n in (range(1, max_n + 1) if plan.token is not None else [None]):
        at_n = list(plan.envs(n))
        if not at_n:
            continue
        shapes = plan.shapes(at_n[0])
        compared, valued = set(), set()
        for env in at_n:
            for p, a in zip(progs, analyses):
                root = p.active_root(env)
                inside = set(root.toposort())
                found, why = read_positions(a, root, env, shapes, [r for r in a.compared if r in inside])
                compared |= found
                values, why2 = read_positions(a, root, env, shapes, value_reads(root, a))
                valued |= values
                if why or why2:
                    raise ProveError(f"cannot prove it: {(why + why2)[0]}")
        order = {name: i for i, name in enumerate(cand.program.input_names)}
        positions = sorted(compared, key=lambda q: (order[q[0]], q[1]))
        if len(positions) > MAX_COMPARED:
            raise ProveError(f"at {plan.token} = {n} the programs compare {len(positions)} entries: more than "
                             f"{MAX_COMPARED} ({fubini(len(positions)):,} orderings); lower --max-n")
        extras = sorted(valued - compared, key=lambda q: (order[q[0]], q[1]))
        layouts[n] = Layout(shapes, tuple(scores), positions, extras)
        envs += [(env, n, {s.name: v for s, v in env.items() if s.name in cand.program.given_sizes})
                 for env in at_n]
    if not envs:
        raise ProveError(f"no sizes to settle: {plan.token} = 1..{max_n} is outside the program's ranges")
    chans = {n.arg[0] for n in cand.program.inputs if plan.channel is not None and n.arg[0] in linear
             and n.arg[1] and n.arg[1][-1].syms == {plan.channel}}

    def points(n: int | None) -> list[list[dict[str, np.ndarray]]]:
        groups = linear_points(layouts[n].shapes, linear, chans, int(dl))
        by_shape: dict[tuple, list] = {}
        for g in groups:
            by_shape.setdefault(tuple((k, v.shape) for k, v in g.items()), []).append(g)
        return list(by_shape.values()) or [[{}]]

    def elements(n: int | None, pt: dict[str, np.ndarray]) -> int:
        """About the largest array one batch row makes: a pairwise table of the tokens over the channels."""
        width = max(len(layouts[n].positions), n or 1)
        chans = max((v.shape[-1] for v in pt.values() if v.ndim), default=1)
        inputs = sum(math.prod(s) for s in layouts[n].shapes.values()) + sum(v.size for v in pt.values())
        return (width * width * chans + inputs) * (100 if exact else 1)  # rationals: smaller batches
    return {"plan": plan, "envs": envs, "layouts": layouts, "degree": int(dv), "exact": exact, "linear": linear,
            "points": points, "elements": elements, "candidate": cand, "reference": ref}


def prove(program: Program, reference: Program | Callable[..., Any] | None = None, *, max_n: int = 6,
          pipeline: Any = None, jobs: int = 1, channels: int = 1, sizes: Mapping[str, int] | None = None,
          reference_name: str | None = None,
          progress: Callable[[int, int, int], None] | None = None) -> ProofResult:
    """Settle every region for token sizes n <= max_n; `progress(settled, total, n)` after each batch.

    `reference` is what the program is proved against: a Program (proved exactly), or a torch function taking the
    inputs by name and the given sizes (evaluated at the same points; its result holds if the function is, like
    the program, a polynomial of that degree on each region). `channels` settles a program that is not
    channel-generic for that many channels; `sizes` fixes other sizes by name (default 1).
    """
    t0 = time.perf_counter()
    cand, ref = sides(program, reference, pipeline, reference_name)
    sizes = dict(sizes or {})
    job = _prepare(cand, ref, max_n, sizes, channels)
    _JOB.clear()
    _JOB.update(job)
    _CACHE.clear()
    units, total = [], 0
    for e, (_, n, _) in enumerate(job["envs"]):
        count = fubini(len(job["layouts"][n].positions))
        total += count
        units += [(e, lo, min(count, lo + 20_000)) for lo in range(0, count, 20_000)]  # bounds memory per unit
    settled, failure = 0, None
    pool = multiprocessing.get_context("fork").Pool(jobs) if jobs > 1 else None
    try:
        for (e, _, _), (count, bad, problem) in (pool.imap(_run, units) if pool else map(_run, units)):
            settled += count
            if progress:
                progress(settled, total, job["envs"][e][1] or 0)
            if bad >= 0:
                failure = (e, bad, problem)
                break
    finally:
        if pool:
            pool.terminate()
    cex = counterexample(job, *failure) if failure else None
    assumption = "" if ref.fn is None else (
        f"the torch function is, like {cand.name}, a polynomial of degree <= {job['degree']} in the compared "
        "values on each region (it is evaluated, not analyzed)")
    plan: SizePlan = job["plan"]
    return ProofResult(program.name, max_n, settled, failure is None, cex, round(time.perf_counter() - t0, 3),
                       plan.channel is not None, cand.to_dict(), ref.to_dict(), plan.describe(max_n),
                       "rational" if job["exact"] else "float64", assumption)


def counterexample(job: dict[str, Any], e: int, bad: int, problem: str = "") -> Counterexample:
    """Concrete compared values in the failing ordering, and features, on which the two sides differ."""
    env, n, given = job["envs"][e]
    layout: Layout = job["layouts"][n]
    P = len(layout.positions)
    levels = weak_orderings(P)[bad].astype(np.int64)
    scale = 2.0 ** math.ceil(math.log2(levels.max(initial=0) + 2))  # dyadic values in (0, 1): exact in every dtype
    scores = [(levels + 1) / scale, (2 * levels + 1) / (2 * scale), (levels + 1) ** 2 / scale**2]
    linear = job["linear"]
    shapes = {name: layout.shapes[name] for name in linear}
    count = sum(math.prod(s) for s in shapes.values())
    patterns = [np.arange(1.0, count + 1), 2.0 ** np.arange(count), np.arange(1.0, count + 1) % 3 + 1]
    plan: SizePlan = job["plan"]
    first_sizes = [s for s in env if s is plan.token or s.name in given]
    sizes = {s.name: env[s] for s in first_sizes + sorted(set(env) - set(first_sizes), key=lambda s: s.name)}
    first = None
    for s, flat in itertools.product(scores, patterns):
        extras = (np.arange(len(layout.extras)) + 1.0) / scale
        inputs = layout.scores(s[None], extras[None])
        at = 0
        for name in linear:
            inputs[name] = flat[at:at + math.prod(shapes[name])].reshape((1, *shapes[name]))
            at += math.prod(shapes[name])
        cex = Counterexample(n, sizes, levels.tolist(), s.tolist(),
                             {k: v[0].tolist() for k, v in inputs.items()}, problem=problem)
        first = first or cex
        try:
            want, got = _call("reference", inputs, given)[0], _call("candidate", inputs, given)[0]
        except InputError as err:
            cex.problem = f"evaluation failed: {err}"
            return cex
        if want.shape != got.shape:
            cex.problem = f"output shapes differ: reference {list(want.shape)}, candidate {list(got.shape)}"
        if not want.ndim or not got.ndim:
            want, got = want.reshape(1), got.reshape(1)
        common = min(len(want), len(got))
        differ = _differ(want[:common], got[:common], job["reference"].fn is not None)
        cex.rows = [{"row": r, "expected": _plain(want[r]) if r < len(want) else None,
                     "got": _plain(got[r]) if r < len(got) else None} for r in range(max(len(want), len(got)))
                    if r >= common or differ[r]]
        if cex.rows:
            return cex
    assert first is not None
    first.problem = first.problem or "the sides differ as polynomials but agree on every candidate input tried"
    return first


def _plain(a: Any) -> Any:
    return np.asarray(a, dtype=np.float64).tolist()

