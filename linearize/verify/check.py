"""The equivalence checker: draw sizes and inputs with hypothesis, evaluate both sides, shrink a failure.

    result = check(linearize(evit).result, "evit")     # a Program, a callable, or a reference name
    result.ok, result.examples, result.counterexample, result.seconds, result.candidate, result.reference

Inputs and sizes come from the program's signature (draws.py): score inputs are drawn with ties on the entries
the program compares, dyadic so that every implementation computes them alike (docs/checker.md). torch is
imported only when a side needs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from random import Random
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis.errors import NoSuchExample

from ..ir import Affine, Sym
from ..ir.program import InputError, Program
from .draws import GRID, KINDS, MAX_SIZES, TIE_UNITS, Model, draw_instance, evit_signature

__all__ = ["GRID", "KINDS", "MAX_SIZES", "TIE_UNITS", "TOLERANCES", "CheckResult", "Counterexample", "RowDiff",
           "check", "instances", "references"]

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
    sizes: dict[str, int]  # B and every size of the program (N, C, H, k, ...)
    draw: str  # continuous | ties | equal | inputs (the user's arrays)
    reference: str  # which reference ran: official, stable, program, callable
    scores: list[list[float]]  # [B][P]: the compared entries (for EViT the head-mean CLS attention of tokens 1..N)
    inputs: dict[str, Any]  # every input, batched, as nested lists
    rows: list[RowDiff] = field(default_factory=list)  # the output rows that differ
    problem: str = ""  # a shape mismatch or the candidate's error, when there is no row to compare

    @property
    def x(self) -> Any:
        return self.inputs.get("x")

    @property
    def attn(self) -> Any:
        return self.inputs.get("attn")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def row_names(self) -> list[str]:
        """What the expected output's rows are, when it has the EViT/Top-K layout: CLS, ranks 0..k-1, fused."""
        k, n = self.sizes.get("k"), self.sizes.get("N")
        if k is None or n is None:
            return []
        if k == n:
            return ["CLS"] + [f"token {t}" for t in range(1, n + 1)]
        return ["CLS"] + [f"rank {r}" for r in range(k)] + ["fused token"]

    def __str__(self) -> str:
        s = self.sizes
        ref = (f"the {self.reference} reference" if self.reference in ("official", "stable") else
               "your inputs" if self.draw == "inputs" else f"a {self.reference}")
        lines = [f"sizes: {', '.join(f'{k} = {v}' for k, v in s.items())}"
                 f"   ({self.draw} draw; expected values from {ref})" if self.draw != "inputs" else
                 f"sizes: {', '.join(f'{k} = {v}' for k, v in s.items())}   (your inputs)"]
        for b in range(s["B"]):
            tag = f"[{b}]" if s["B"] > 1 else ""
            exact = ", ".join(str(Fraction(v).limit_denominator(1 << 30)) for v in self.scores[b])
            lines.append(f"scores{tag} (the compared entries{', tokens 1..N' if 'attn' in self.inputs else ''}): "
                         f"[{exact}]")
            for name, v in self.inputs.items():
                if name not in ("attn",) and len(str(v[b])) < 600:
                    lines.append(f"{name}{tag}{' (row 0 is CLS)' if name == 'x' else ''}: {_fmt(v[b])}")
        if self.problem:
            lines.append(self.problem)
        names = self.row_names
        for d in self.rows:
            where = f"batch {d.batch}, row {d.row}" if s["B"] > 1 else f"row {d.row}"
            where += f" ({names[d.row]})" if d.row < len(names) else ""
            lines.append(f"{where}: expected {_fmt(d.expected)}  got {_fmt(d.got)}")
        return "\n".join(lines)


@dataclass
class CheckResult:
    ok: bool
    examples: int  # examples run before the first failure (or in all, when none failed)
    counterexample: Counterexample | None
    seconds: float
    candidate: str = ""  # what was checked, and against what
    reference: str = ""
    inputs: int = 0  # the user's input sets checked (before the drawn examples)

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        ce = self.counterexample
        return {"ok": self.ok, "examples": self.examples, "counterexample": ce.to_dict() if ce else None,
                "seconds": round(self.seconds, 3), "candidate": self.candidate, "reference": self.reference,
                "inputs": self.inputs}


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(e) for e in v) + "]"
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _dtype_name(dtype: Any) -> str:
    name = str(dtype).replace("torch.", "") if type(dtype).__module__.startswith("torch") else np.dtype(dtype).name
    if name not in TOLERANCES:
        raise ValueError(f"check compares float32 or float64, got {name}")
    return name


def signature_problem(fn: Callable[..., Any], program: Program) -> str:
    """Why a reference function cannot take the program's inputs by name and its given sizes; empty when it can."""
    import inspect
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return ""
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return ""
    wanted = [*program.input_names, *program.given_sizes]
    missing = [n for n in wanted if n not in params]
    extra = [n for n, p in params.items() if n not in wanted and p.default is p.empty
             and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if missing or extra:
        name = getattr(fn, "__name__", "the reference")
        return (f"{name}({', '.join(params)}) does not take {program.name}'s inputs and sizes by name "
                f"({', '.join(wanted)})")
    return ""


def references() -> dict[str, dict[str, Callable[..., Any]]]:
    """Every torch reference by name, {"official": f, "stable": g, ...} (EViT, Top-K, DynamicViT, POMT, ToMe)."""
    from . import reference as r
    # the per-image POMT a per-image program answers to: per_image on continuous draws, stable on ties
    per_image = {"pomt_per_image": {"official": r.pomt_per_image, "stable": r.pomt_stable}}
    return {**r.REFERENCES, **r.DYNAMICVIT_REFERENCES, **r.POMT_REFERENCES, **per_image, **r.TOME_REFERENCES}


def instances(ties: bool = True, dtype: Any = np.float32, program: Program | None = None) -> Any:
    """The hypothesis strategy of the checker's draws for a program (EViT's inputs by default)."""
    return draw_instance(Model([program or evit_signature()]), ties, dtype)


class _Side:
    """One side of the comparison, called on numpy inputs, returning a numpy array."""

    def __init__(self, side: Side, backend: str):
        from ..eval.compiled import compile
        self.variants: dict[str, Callable[..., Any]] = {}
        self.compiled, self.program, self.name = None, None, ""
        if isinstance(side, str):
            refs = references()
            if side not in refs:
                raise ValueError(f"no torch reference named {side!r}; references: {', '.join(refs)}")
            self.name = f"{side} (torch reference)"
            side = refs[side]
        if isinstance(side, Program):
            # generic steps only: the heaviside/delta sums evaluated as written, not through the planner's
            # sort-based strategies, so a check never compares a sort with a sort
            self.compiled, self.backend, self.program = compile(side, backend, fast=False), backend, side
            self.name = self.name or f"{side.name} (program)"
        elif isinstance(side, Mapping):
            if not {"official", "stable"} <= set(side):
                raise ValueError("a reference mapping needs 'official' and 'stable' entries")
            self.variants = dict(side)
            self.name = self.name or f"{getattr(side['official'], '__name__', 'reference')} (torch reference)"
        elif callable(side):
            self.variants = {"callable": side}
            self.name = f"{getattr(side, '__name__', 'function')} (function)"
        else:
            raise TypeError(f"cannot check a {type(side).__name__}: pass a Program, a callable or a reference name")

    def variant(self, tied: bool) -> str:
        if self.compiled is not None:
            return "program"
        if "callable" in self.variants:
            return "callable"
        return "stable" if tied else "official"

    def __call__(self, inputs: Mapping[str, np.ndarray], given: Mapping[str, int], tied: bool) -> np.ndarray:
        if self.compiled is not None and self.backend == "numpy":
            return np.asarray(self.compiled(**inputs, **given))
        import torch
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
        if self.compiled is not None:
            out = self.compiled(**tensors, **given)
        else:
            out = self.variants[self.variant(tied)](**tensors, **given)
        return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


def _compare(want: np.ndarray, got: np.ndarray, inst: Mapping[str, Any]) -> tuple[list[RowDiff], str]:
    """The rows that differ beyond the dtype's tolerance, or the problem (a shape) when rows can't be compared."""
    if got.shape != want.shape:
        return [], f"output shape {list(got.shape)}, expected {list(want.shape)}"
    if want.ndim < 2 or want.shape[0] == 0:
        bad = [] if np.allclose(got, want) else [(0, 0)]
        return [RowDiff(b, r, want.tolist(), got.tolist()) for b, r in bad], ""
    first = next(iter(inst["inputs"].values()))
    rtol, atol = TOLERANCES[_dtype_name(first.dtype)]  # the dtype drawn, whatever a callable returns
    # atol scales with the largest fused sum the inputs allow: sum_i |score_i| * max |feature|
    b = want.shape[0]
    scores = inst["scale"] if "scale" in inst else np.abs(np.asarray(inst["scores"], np.float64)).reshape(b, -1).sum(1)
    linear = [np.abs(v.astype(np.float64)).reshape(b, -1).max(axis=1, initial=0) for k, v in inst["inputs"].items()
              if k in inst.get("linear", ())]
    top = np.max(linear, axis=0) if linear else np.ones(b)
    scale = max(1.0, float(np.max(scores * top, initial=0)))
    close = np.isclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol * scale)
    bad = np.argwhere(~close.reshape(close.shape[0], close.shape[1], -1).all(axis=2))
    return [RowDiff(int(b), int(r), want[b, r].tolist(), got[b, r].tolist()) for b, r in bad], ""


def _diff(cand: _Side, ref: _Side, inst: Mapping[str, Any]) -> tuple[list[RowDiff], str]:
    tied = inst["kind"] != "continuous"
    try:
        want = ref(inst["inputs"], inst["given"], tied)
    except Exception as e:  # the reference must answer every valid input: it is not the candidate's fault
        if ref.program is not None and not isinstance(e, InputError):
            raise
        raise ValueError(f"the reference {ref.name} raised {type(e).__name__} on a valid input: {e}") from None
    try:
        got = cand(inst["inputs"], inst["given"], tied)
    except Exception as e:  # the candidate failing where the reference answers is a counterexample too
        if not isinstance(e, InputError | ValueError | IndexError | RuntimeError | TypeError):
            raise
        return [], f"the candidate raised {type(e).__name__}: {e}"
    return _compare(want, got, inst)


def check(candidate: Side, reference: Side, *, examples: int = 300, ties: bool = True, seed: int | None = None,
          dtype: Any = np.float32, backend: str = "numpy", program: Program | None = None,
          inputs: Iterable[Mapping[str, Any]] | None = None,
          progress: Callable[[int, int, bool], None] | None = None) -> CheckResult:
    """Property-test candidate == reference on `examples` draws; a failure is shrunk to a minimal counterexample.

    Each side is an IR Program (run with linearize.compile on `backend`), a callable taking the inputs as torch
    tensors by name and the given sizes (like linearize.reference.evit(x=..., attn=..., k=...)), or a torch
    reference by name ("evit") or as {"official": f, "stable": g}: tied scores are compared with the stable
    variant, distinct ones with the official code. The inputs and sizes drawn are the signature's of `program`,
    else of the first side that is a Program, else EViT's. `inputs` are the user's own input sets (batched arrays
    by name, and given sizes; a given size left out takes every value), checked before the draws. ties=False draws
    continuous scores only. seed=None is deterministic (hypothesis' derandomize); a seed explores other draws,
    reproducibly. progress(examples_run, examples, shrinking) is called after each draw (shrinking: a
    counterexample was found and is being made smaller).
    """
    if backend not in ("numpy", "torch"):
        raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")
    if examples < 1:
        raise ValueError(f"examples must be >= 1, got {examples}")
    dtype = np.dtype(_dtype_name(dtype))
    t0 = time.perf_counter()
    cand, ref = _Side(candidate, backend), _Side(reference, backend)
    programs = [p for p in (program, cand.program, ref.program) if p is not None] or [evit_signature()]
    from .sizes import signature
    if cand.program is not None and ref.program is not None and signature(cand.program) != signature(ref.program):
        raise ValueError(f"{cand.name} and {ref.name} take different inputs, sizes or roles: "
                         f"{cand.program.signature().rstrip(':')} against {ref.program.signature().rstrip(':')}")
    for side in (cand, ref):
        for fn in side.variants.values():
            problem = signature_problem(fn, programs[0])
            if problem:
                raise ValueError(problem)
    model = Model(programs)
    result = CheckResult(True, 0, None, 0.0, cand.name, ref.name)
    for inst in _user_instances(model, inputs or ()):
        result.inputs += 1
        rows, problem = _diff(cand, ref, inst)
        if rows or problem:
            result.ok, result.counterexample = False, _counterexample(model, inst, "stable", rows, problem)
            result.seconds = time.perf_counter() - t0
            return result
    ran, failed = 0, False

    def differs(inst: dict[str, Any]) -> bool:
        nonlocal ran, failed
        inst["linear"] = model.linear
        ran += 0 if failed else 1
        rows, problem = _diff(cand, ref, inst)
        failed = failed or bool(rows or problem)
        if progress is not None:
            progress(ran, examples, failed)
        return bool(rows or problem)

    # from hypothesis' default profile, so that a test suite's profile does not change what a seed reproduces
    config = settings(settings.get_profile("default"), database=None, max_examples=examples, deadline=None,
                      derandomize=seed is None, suppress_health_check=list(HealthCheck),
                      phases=[Phase.generate, Phase.shrink])
    try:
        inst = find(draw_instance(model, ties, dtype), differs, settings=config,
                    random=None if seed is None else Random(seed))
    except NoSuchExample:
        result.examples, result.seconds = ran, time.perf_counter() - t0
        return result
    rows, problem = _diff(cand, ref, inst)
    result.ok, result.examples = False, ran
    result.counterexample = _counterexample(model, inst, ref.variant(inst["kind"] != "continuous"), rows, problem)
    result.seconds = time.perf_counter() - t0
    return result


def _counterexample(model: Model, inst: Mapping[str, Any], variant: str, rows: list[RowDiff],
                    problem: str) -> Counterexample:
    return Counterexample(dict(inst["sizes"]), inst["kind"], variant, np.asarray(inst["scores"]).tolist(),
                          {k: np.asarray(v).tolist() for k, v in inst["inputs"].items()}, rows, problem)


def _user_instances(model: Model, sets: Iterable[Mapping[str, Any]] | Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    """The user's input sets as instances; a given size they leave out takes every value its range allows."""
    from ..eval.compiled import compile
    p = model.program
    for arrays in ([sets] if isinstance(sets, Mapping) else sets):
        inputs = {name: np.asarray(arrays[name]) for name in p.input_names if name in arrays}
        missing = [name for name in p.input_names if name not in inputs]
        if missing:
            raise InputError(f"the inputs have no array {', '.join(map(repr, missing))} (they hold "
                             f"{', '.join(arrays) or 'nothing'})")
        given = {s: int(np.asarray(arrays[s])) for s in p.given_sizes if s in arrays}
        compile(p).prepare({**inputs, **given}) if len(given) == len(p.given_sizes) else None  # checks them all
        # the sizes the shapes give (the ranges of the given ones are checked per value below)
        env = _shape_sizes(p, {k: v.shape[1:] for k, v in inputs.items()})
        choices: list[dict[str, Any]] = [{c.size: given[c.size.name] for c in p.constraints
                                          if c.size.name in given}]
        for c in p.constraints:
            if c.size.name in p.given_sizes and c.size.name not in given:
                choices = [{**g, c.size: v} for g in choices
                           for v in range(c.lo.value({**env, **g}), c.hi.value({**env, **g}) + 1)]
        b = next(iter(inputs.values())).shape[0]
        # the tolerance's scale: every score entry, divided by how many an average reads (a bound on the scores)
        per = np.prod([d for s, d in env.items() if s in model.averaged]) if model.averaged else 1
        scale = sum(np.abs(inputs[n].astype(np.float64)).reshape(b, -1).sum(axis=1) for n in model.scores) / per
        for g in choices:
            named = {s.name: v for s, v in g.items()}
            compile(p).prepare({**inputs, **named})  # k out of range, NaN, disagreeing shapes: an InputError
            sizes = {"B": b, **{s.name: v for s, v in env.items()}, **named}
            yield {"kind": "inputs", "sizes": sizes, "given": named, "inputs": inputs, "scores": np.zeros((b, 0)),
                   "scale": scale, "linear": model.linear}


def _shape_sizes(p: Program, shapes: Mapping[str, tuple[int, ...]]) -> dict[Sym, int]:
    """The sizes the input shapes give (N from x's N + 1 rows), without the ranges of the given ones."""
    env: dict[Sym, int] = {}
    for _ in range(len(p.inputs) + 1):
        for n in p.inputs:
            for d, actual in zip(n.arg[1], shapes[n.arg[0]]):
                unknown = [s for s in d.syms if s not in env]
                if len(unknown) == 1 and abs(d.coeff(unknown[0])) == 1:
                    s = unknown[0]
                    env[s] = (actual - (d - Affine(((s, d.coeff(s)),))).value(env)) * d.coeff(s)
    return env
