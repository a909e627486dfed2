"""The equivalence checker: draw sizes and inputs with hypothesis, evaluate both sides, shrink a failure.

    result = check(linearize(evit).result, "evit")     # a Program, a callable, or a reference name
    result.ok, result.examples, result.counterexample, result.seconds

Inputs are the pruning family's: x [B, N+1, C], attn [B, H, N+1, N+1] and k, 1 <= k <= N (k == N included).
Scores (the head-mean CLS attention) are dyadic, so that every implementation computes their mean exactly
alike and equal scores stay equal: see docs/checker.md. torch is imported only when a side needs it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from random import Random
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample
from hypothesis.extra import numpy as hnp

from ..ir.program import Program

__all__ = ["GRID", "MAX_SIZES", "TIE_UNITS", "TOLERANCES", "CheckResult", "Counterexample", "RowDiff", "check",
           "instances"]

MAX_SIZES = {"B": 3, "N": 11, "C": 4, "H": 3}  # N + 1 <= 12 tokens; N < 16 keeps continuous scores distinct
GRID = 2**12  # every score and attention value drawn is a multiple of 1/4096: sums over heads are exact
TIE_UNITS = (0, GRID // 8, GRID // 4, GRID // 2)  # tie-forcing draws: scores from a few values, 0, 1/8, 1/4, 1/2
KINDS = ("continuous", "ties", "equal")  # equal: every score of a batch item is the same
TOLERANCES: dict[str, tuple[float, float]] = {"float32": (1e-5, 1e-5), "float64": (1e-12, 1e-12)}  # rtol, atol

Side = Program | Callable[..., Any] | Mapping[str, Callable[..., Any]] | str


@dataclass
class RowDiff:
    batch: int
    row: int
    expected: list[float]
    got: list[float]


@dataclass
class Counterexample:
    sizes: dict[str, int]  # B, N, C, H, k
    draw: str  # continuous | ties | equal
    reference: str  # which reference ran: official, stable, program, callable
    scores: list[list[float]]  # [B][N]: the head-mean CLS attention of tokens 1..N
    x: list[Any]
    attn: list[Any]
    rows: list[RowDiff] = field(default_factory=list)  # the output rows that differ
    problem: str = ""  # a shape mismatch or the candidate's error, when there is no row to compare

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def row_names(self) -> list[str]:
        """What the expected output's rows are, when it has the EViT/Top-K layout: CLS, ranks 0..k-1, fused."""
        k, n = self.sizes["k"], self.sizes["N"]
        if k == n:
            return ["CLS"] + [f"token {t}" for t in range(1, n + 1)]
        return ["CLS"] + [f"rank {r}" for r in range(k)] + ["fused token"]

    def __str__(self) -> str:
        s = self.sizes
        ref = f"the {self.reference} reference" if self.reference in ("official", "stable") else f"a {self.reference}"
        lines = [f"sizes: B = {s['B']}, N = {s['N']}, C = {s['C']}, H = {s['H']}, k = {s['k']}"
                 f"   ({self.draw} draw; expected values from {ref})"]
        for b in range(s["B"]):
            tag = f"[{b}]" if s["B"] > 1 else ""
            exact = ", ".join(str(Fraction(v).limit_denominator(1 << 30)) for v in self.scores[b])
            lines.append(f"scores{tag} (tokens 1..N): [{exact}]")
            lines.append(f"x{tag} (row 0 is CLS): {_fmt(self.x[b])}")
        if self.problem:
            lines.append(self.problem)
        for d in self.rows:
            where = f"batch {d.batch}, row {d.row}" if s["B"] > 1 else f"row {d.row}"
            where += f" ({self.row_names[d.row]})" if d.row < len(self.row_names) else ""
            lines.append(f"{where}: expected {_fmt(d.expected)}  got {_fmt(d.got)}")
        return "\n".join(lines)


@dataclass
class CheckResult:
    ok: bool
    examples: int  # examples run before the first failure (or in all, when none failed)
    counterexample: Counterexample | None
    seconds: float

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        ce = self.counterexample
        return {"ok": self.ok, "examples": self.examples, "counterexample": ce.to_dict() if ce else None,
                "seconds": round(self.seconds, 3)}


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(e) for e in v) + "]"
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _dtype_name(dtype: Any) -> str:
    name = str(dtype).replace("torch.", "") if type(dtype).__module__.startswith("torch") else np.dtype(dtype).name
    if name not in TOLERANCES:
        raise ValueError(f"check compares float32 or float64, got {name}")
    return name


@functools.cache
def _batch(kind: str, n: int, c: int) -> st.SearchStrategy[list[tuple[Any, Any]]]:
    """B batch items, each (scores [N] in units of 1/GRID, x [N + 1, C]); cached, as building strategies costs."""
    which = st.integers(0, len(TIE_UNITS) - 1)
    if kind == "continuous":  # distinct: token t's score is 16 * base + (N - 1 - t), N < 16
        base = hnp.arrays(np.int64, n, elements=st.integers(0, GRID // 16 - 1), fill=st.nothing())
        scores = base.map(lambda a: a * 16 + np.arange(n)[::-1])
    elif kind == "ties":
        scores = hnp.arrays(np.int64, n, elements=which, fill=st.nothing()).map(lambda a: np.array(TIE_UNITS)[a])
    else:
        scores = which.map(lambda u: np.full(n, TIE_UNITS[u]))
    x = hnp.arrays(np.float64, (n + 1, c), elements=st.floats(-2, 2))  # cheaper than width=32 draws
    return st.lists(st.tuples(scores, x), min_size=1, max_size=MAX_SIZES["B"])


@st.composite
def instances(draw: Callable[..., Any], ties: bool = True, dtype: Any = np.float32) -> dict[str, Any]:
    """One draw: {kind, x [B, N+1, C], attn [B, H, N+1, N+1], k}; shrinks towards small sizes.

    Each head's CLS row is the drawn score plus an offset, and a token's offsets sum to zero over the heads:
    every value is a multiple of 1/GRID, so the head mean is exactly the drawn score in any implementation.
    """
    kind = draw(st.sampled_from(KINDS if ties else KINDS[:1]))
    n, c = draw(st.integers(1, MAX_SIZES["N"])), draw(st.integers(1, MAX_SIZES["C"]))
    h, k = draw(st.integers(1, MAX_SIZES["H"])), draw(st.integers(1, n))
    items = draw(_batch(kind, n, c))
    scores, xs = (np.stack(parts) for parts in zip(*items))
    b = len(items)
    # the heads' offsets (up to `spread`, which shrinks to 0: equal heads) and the rest of attn, which scores
    # nothing, come from one drawn seed, to keep draws cheap
    spread = draw(st.integers(0, GRID // 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    offsets = np.zeros((b, h, n), np.int64)
    offsets[:, :-1] = rng.integers(-spread, spread + 1, (b, h - 1, n))
    offsets[:, -1] = -offsets[:, :-1].sum(axis=1)
    attn = rng.integers(0, GRID, (b, h, n + 1, n + 1))
    attn[:, :, 0, 1:] = scores[:, None, :] + offsets
    return {"kind": kind, "x": xs.astype(dtype), "attn": (attn / GRID).astype(dtype), "k": k}


class _Side:
    """One side of the comparison, called on numpy inputs, returning a numpy array."""

    def __init__(self, side: Side, backend: str):
        from ..eval.compiled import compile
        self.variants: dict[str, Callable[..., Any]] = {}
        self.compiled = None
        if isinstance(side, str):
            from .reference import REFERENCES
            if side not in REFERENCES:
                raise ValueError(f"no torch reference named {side!r}; references: {', '.join(REFERENCES)}")
            side = REFERENCES[side]
        if isinstance(side, Program):
            # generic steps only: the heaviside/delta sums evaluated as written, not through the planner's
            # sort-based strategies, so a check never compares a sort with a sort
            self.compiled, self.backend = compile(side, backend, fast=False), backend
            missing = {"x", "attn"} - set(side.input_names) or set(side.input_names) - {"x", "attn"}
            if missing or side.given_sizes != ("k",):
                raise ValueError(f"check draws x, attn and k; {side.name} takes "
                                 f"{', '.join(side.input_names + side.given_sizes)}")
        elif isinstance(side, Mapping):
            if not {"official", "stable"} <= set(side):
                raise ValueError("a reference mapping needs 'official' and 'stable' entries")
            self.variants = dict(side)
        elif callable(side):
            self.variants = {"callable": side}
        else:
            raise TypeError(f"cannot check a {type(side).__name__}: pass a Program, a callable or a reference name")

    def variant(self, tied: bool) -> str:
        if self.compiled is not None:
            return "program"
        if "callable" in self.variants:
            return "callable"
        return "stable" if tied else "official"

    def __call__(self, x: np.ndarray, attn: np.ndarray, k: int, tied: bool) -> np.ndarray:
        if self.compiled is not None and self.backend == "numpy":
            return np.asarray(self.compiled(x=x, attn=attn, k=k))
        import torch
        tx, ta = torch.from_numpy(x), torch.from_numpy(attn)
        if self.compiled is not None:
            out = self.compiled(x=tx, attn=ta, k=k)
        else:
            out = self.variants[self.variant(tied)](tx, ta, k)
        return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


def _scores(attn: np.ndarray) -> np.ndarray:
    return attn[:, :, 0, 1:].mean(axis=1)


def _tied(inst: Mapping[str, Any]) -> bool:
    return inst["kind"] != "continuous"


def _compare(want: np.ndarray, got: np.ndarray, inst: Mapping[str, Any]) -> tuple[list[RowDiff], str]:
    """The rows that differ beyond the dtype's tolerance, or the problem (a shape) when rows can't be compared."""
    if got.shape != want.shape:
        return [], f"output shape {list(got.shape)}, expected {list(want.shape)}"
    rtol, atol = TOLERANCES[_dtype_name(inst["x"].dtype)]  # the dtype drawn, whatever a callable returns
    # atol scales with the largest fused sum the inputs allow: sum_i |score_i| * max |x|
    x, scores = inst["x"].astype(np.float64), _scores(inst["attn"].astype(np.float64))
    scale = max(1.0, float(np.max(np.abs(scores).sum(axis=1) * np.abs(x).max(axis=(1, 2)))))
    close = np.isclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol * scale)
    bad = np.argwhere(~close.reshape(close.shape[0], close.shape[1], -1).all(axis=2))
    return [RowDiff(int(b), int(r), want[b, r].tolist(), got[b, r].tolist()) for b, r in bad], ""


def check(candidate: Side, reference: Side, *, examples: int = 300, ties: bool = True, seed: int | None = None,
          dtype: Any = np.float32, backend: str = "numpy",
          progress: Callable[[int, int, bool], None] | None = None) -> CheckResult:
    """Property-test candidate == reference on `examples` draws; a failure is shrunk to a minimal counterexample.

    Each side is an IR Program (run with linearize.compile on `backend`), a callable f(x, attn, k) taking torch
    tensors (like linearize.reference.evit), or a torch reference by name ("evit") or as {"official": f,
    "stable": g}: tied scores are compared with the stable variant, distinct ones with the official code.
    ties=False draws continuous scores only. seed=None is deterministic (hypothesis' derandomize); a seed
    explores other draws, reproducibly. progress(examples_run, examples, shrinking) is called after each draw
    (shrinking: a counterexample was found and is being made smaller).
    """
    if backend not in ("numpy", "torch"):
        raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")
    if examples < 1:
        raise ValueError(f"examples must be >= 1, got {examples}")
    dtype = np.dtype(_dtype_name(dtype))
    t0 = time.perf_counter()
    cand, ref = _Side(candidate, backend), _Side(reference, backend)
    ran, failed = 0, False

    def differs(inst: dict[str, Any]) -> bool:
        nonlocal ran, failed
        ran += 0 if failed else 1
        found = _fails(cand, ref, inst)
        failed = failed or found
        if progress is not None:
            progress(ran, examples, failed)
        return found

    # from hypothesis' default profile, so that a test suite's profile does not change what a seed reproduces
    config = settings(settings.get_profile("default"), database=None, max_examples=examples, deadline=None,
                      derandomize=seed is None, suppress_health_check=list(HealthCheck),
                      phases=[Phase.generate, Phase.shrink])
    try:
        inst = find(instances(ties, dtype), differs, settings=config,
                    random=None if seed is None else Random(seed))
    except NoSuchExample:
        return CheckResult(True, ran, None, time.perf_counter() - t0)
    rows, problem = _diff(cand, ref, inst)
    x, attn, k = inst["x"], inst["attn"], inst["k"]
    b, n1, c = x.shape
    ce = Counterexample({"B": b, "N": n1 - 1, "C": c, "H": attn.shape[1], "k": k}, inst["kind"],
                        ref.variant(_tied(inst)), _scores(attn).tolist(), x.tolist(), attn.tolist(), rows, problem)
    return CheckResult(False, ran, ce, time.perf_counter() - t0)


def _diff(cand: _Side, ref: _Side, inst: Mapping[str, Any]) -> tuple[list[RowDiff], str]:
    x, attn, k, tied = inst["x"], inst["attn"], inst["k"], _tied(inst)
    want = ref(x, attn, k, tied)
    try:
        got = cand(x, attn, k, tied)
    except Exception as e:  # the candidate failing where the reference answers is a counterexample too
        return [], f"the candidate raised {type(e).__name__}: {e}"
    return _compare(want, got, inst)


def _fails(cand: _Side, ref: _Side, inst: Mapping[str, Any]) -> bool:
    rows, problem = _diff(cand, ref, inst)
    return bool(rows or problem)
