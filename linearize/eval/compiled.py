"""compile(): a program bound to a backend, planned once per size environment and called many times.

The first call at new sizes (with a new batch size or dtype) plans the program (planner.py): a fixed list of
vectorized steps, with the patterns of the strategy table (strategies.py) recognized and the generic steps
(generic.py, the one semantics) for the rest. Later calls at the same sizes check the inputs and run those steps.

`strategy` chooses the kernels: "oblivious" (the default) runs only operations whose sequence and memory accesses
do not depend on the values (elementwise arithmetic and comparisons, reductions, matrix products, static views,
reshapes, concatenation) on a linearized program; "sort" lets the strategies sort, gather and scatter instead
(data-dependent, and faster where N is large); "generic" runs the generic steps alone, the reference semantics
(`planned=False` and `fast=False` are its older names).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..ir import Sym
from ..ir.program import REQUIREMENTS, InputError, Program
from ..ir.reads import named_reads, read_views
from .backends import get_backend
from .generic import generic_step
from .plan import Plan
from .planner import MODES, Planner
from .strategies import STRATEGIES

__all__ = ["SMALL_CALL", "Compiled", "compile", "on_threads"]

# Input elements below which threads="auto" runs a torch call on one thread: at these sizes waking and joining
# a second thread costs more than it saves, and far more on a busy host (docs/performance.md, "Threads").
SMALL_CALL = 1 << 23
# an input's name, a function taking the view of it the program reads (None: all of it), that view as text
Read = tuple[str, Callable[[Any], Any] | None, str]


def on_threads(n: int, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) with torch on n intra-op threads, restored after (torch's setting is global to the process)."""
    import torch
    before = torch.get_num_threads()
    if before == n:
        return fn(*args)
    torch.set_num_threads(n)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(before)


def _mode(strategy: str, planned: bool, fast: bool) -> str:
    if strategy not in MODES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(MODES)}")
    if not (planned and fast):  # the older names of strategy="generic"
        if strategy not in ("generic", "oblivious"):
            raise ValueError(f"strategy={strategy!r} contradicts planned=False / fast=False (strategy='generic')")
        return "generic"
    return strategy


def _normable_rows(a: Any) -> bool:
    """Every row's sum of squares, as the program computes the L2 norm, is finite and nonzero (it over- or
    underflows for rows the norm would divide badly)."""
    with np.errstate(over="ignore", under="ignore"):  # numpy warns where it overflows: that is the test
        squares = (a * a).sum(-1)
        return bool(((squares > 0) & (squares < math.inf)).all())


# REQUIREMENTS (ir/program.py) on a batch of values, numpy or torch: whether the condition holds everywhere
_HOLDS: dict[str, Any] = {"positive": lambda a: bool((a > 0).all()), "normable_rows": _normable_rows}


class Compiled:
    """A program bound to a backend: call it with the inputs and sizes by name, f(x=..., attn=..., k=...).

    The first call at a new size environment (sizes, batch size, dtype) plans the program (planner.py); later
    calls at the same sizes run the plan's steps and nothing else. `strategy` is "oblivious" (the default),
    "sort" or "generic" (see the module's docstring); `planned=False` and `fast=False` both mean "generic".
    """

    def __init__(self, program: Program, backend: str = "numpy", *, strategy: str = "oblivious",
                 planned: bool = True, fast: bool = True, cache_size: int = 32, threads: int | str | None = "auto"):
        if not (threads in ("auto", None) or (type(threads) is int and threads >= 1)):
            raise ValueError(f"threads must be 'auto', None or a positive int, got {threads!r}")
        self.program = program
        self.backend = get_backend(backend)
        self.threads = threads if self.backend.name == "torch" else None  # numpy: its BLAS decides
        self._threads: dict[tuple, int | None] = {}
        self.strategy, self.cache_size = _mode(strategy, planned, fast), cache_size
        self._plans: dict[tuple, Plan] = {}
        self._inputs = tuple((n.arg[0], len(n.arg[1]), n.arg[1]) for n in program.inputs)
        self._given = program.given_sizes
        self._allowed = frozenset(program.input_names) | frozenset(self._given)
        self._requires = dict(program.requires)  # the program's conditions on values (POMT: attn > 0)

    def _check(self, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], tuple]:
        """The inputs as this backend's arrays, the given sizes, and the plan cache key; raises on bad input."""
        p, xp = self.program, self.backend
        if not self._allowed.issuperset(kwargs):
            unknown = set(kwargs) - self._allowed
            raise InputError(f"{p.name} takes {', '.join(p.input_names + p.given_sizes)}; "
                             f"unexpected {', '.join(sorted(unknown))}")
        arrays: dict[str, Any] = {}
        shapes, batch, dtype = [], None, None
        convert, is_float = xp.convert, xp.is_float
        for name, rank, shape in self._inputs:  # plain loops and locals: this runs on every call
            if name not in kwargs:
                raise InputError(f"missing input array {name!r}")
            try:
                a = convert(kwargs[name])
            except ValueError as e:
                raise InputError(f"{name} {e}") from None
            if a.ndim != rank + 1:
                dims = ", ".join(["B", *(str(d) for d in shape)])
                raise InputError(f"{name} must have rank {len(shape) + 1} ([{dims}]), got rank {a.ndim}")
            if not is_float(a):
                raise InputError(f"{name} must be a floating-point array, got {a.dtype}")
            sh = a.shape
            if batch is None:
                batch, dtype = sh[0], a.dtype
            elif sh[0] != batch or a.dtype != dtype:
                seen = [*arrays.items(), (name, a)]
                raise InputError(f"batch sizes disagree: {', '.join(f'{k} has {b.shape[0]}' for k, b in seen)}"
                                 if sh[0] != batch else
                                 f"dtypes disagree: {', '.join(f'{k} is {b.dtype}' for k, b in seen)}")
            arrays[name] = a
            shapes.append(sh)
        given = {}
        for s in self._given:
            if s in kwargs:
                v = given[s] = kwargs[s]
                if type(v) is not int:
                    try:
                        integral = not isinstance(v, bool | str | bytes) and float(v).is_integer()
                    except (TypeError, ValueError):
                        integral = False
                    if not integral:
                        raise InputError(f"size {s} must be an integer, got {v!r}")
        key = (tuple(shapes), tuple([int(v) for v in given.values()]), dtype)
        return arrays, given, key

    def _values(self, arrays: dict[str, Any], reads: tuple[Read, ...]) -> None:
        """What the program reads of the inputs is finite (one host read: a finite total proves every entry), and
        the program's own conditions on values hold (POMT: attn > 0)."""
        xp = self.backend
        views = [arrays[name] if view is None else view(arrays[name]) for name, view, _ in reads]
        if views and not xp.sums_finite(views):
            for (name, _, where), view in zip(reads, views):  # only a bad (or overflowing) total looks at each
                if not xp.isfinite_all(view):
                    raise InputError(f"{name} contains NaN or infinite values"
                                     + (f" in {name}{where}, which the program reads" if where else ""))
        for name, condition in self._requires.items():
            if not _HOLDS[condition](arrays[name]):
                raise InputError(f"{name} {REQUIREMENTS[condition]}")

    def _reads(self, env: Mapping[Sym, int], arrays: dict[str, Any]) -> tuple[frozenset, tuple[Read, ...]]:
        """(the views of inputs read, each input's (name, viewer or None, where) to test): ir/reads.py, at these
        sizes."""
        views = read_views(self.program.active_roots(env), self.program.inputs, env)
        tests = tuple((name, None if key is None else self.backend.viewer(key, tuple(arrays[name].shape)), where)
                      for name, key, where in named_reads(views, env))
        return frozenset(v for found in views.values() for v, _ in found), tests

    def prepare(self, kwargs: Mapping[str, Any]) -> tuple[dict[Sym, int], dict[str, Any], Any]:
        """Check the inputs and sizes; return the sizes by symbol, the arrays and their dtype."""
        arrays, given, _ = self._check(kwargs)
        env = self.program.bind_sizes({k: tuple(a.shape[1:]) for k, a in arrays.items()}, given, batched=True)
        self.program.check_reductions(env)
        self._values(arrays, self._reads(env, arrays)[1])
        return env, arrays, next(iter(arrays.values())).dtype

    def plan(self, **kwargs: Any) -> Plan:
        """The plan these inputs run with (made now if it is new): its steps, strategies and largest array."""
        return self._plan(*self._check(kwargs))

    def _plan(self, arrays: dict[str, Any], given: dict[str, Any], key: tuple) -> Plan:
        plan = self._plans.get(key)
        if plan is None:  # new sizes: bind them (which checks them), then plan
            env = self.program.bind_sizes({k: tuple(a.shape[1:]) for k, a in arrays.items()}, given, batched=True)
            self.program.check_reductions(env)
            first = next(iter(arrays.values()))
            checked, tests = self._reads(env, arrays)
            plan = Planner(self.backend, env, first.shape[0], first.dtype, STRATEGIES, generic_step,
                           self.strategy, checked).plan(self.program.active_root(env))
            plan.reads = tests
            if len(self._plans) >= self.cache_size:
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = plan
        return plan

    def thread_count(self, key: tuple) -> int | None:
        """torch threads for a call at these sizes (None: leave torch's setting); see `compile`."""
        if self.threads != "auto":
            return self.threads
        n = self._threads.get(key)
        if n is None and key not in self._threads:
            if len(self._threads) >= self.cache_size:
                self._threads.clear()
            elements = sum(math.prod(shape) for shape in key[0])
            n = self._threads[key] = 1 if elements < SMALL_CALL else None
        return n

    def _checked(self, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], Plan, tuple]:
        """The arrays, the plan for their sizes (made now if new) and its key, every input check passed."""
        arrays, given, key = self._check(kwargs)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(arrays, given, key)
        self._values(arrays, plan.reads)
        return arrays, plan, key

    def validate(self, **kwargs: Any) -> None:
        """Everything a call checks (shapes, dtypes, sizes, finiteness of what the program reads, conditions on
        values), without computing: raises InputError on bad input."""
        self._checked(kwargs)

    def __call__(self, **kwargs: Any) -> Any:
        arrays, plan, key = self._checked(kwargs)
        n = self.thread_count(key) if self.threads is not None else None
        # the plan gives its output the batch axis
        return plan.run(arrays) if n is None else on_threads(n, plan.run, arrays)


def compile(program: Program, backend: str = "numpy", *, strategy: str = "oblivious",  # noqa: A001 - public name
            planned: bool = True, fast: bool = True, threads: int | str | None = "auto") -> Compiled:
    """Plan a program for a backend ("numpy" or "torch"); returns f(**inputs, **sizes) -> array, or a tuple of
    arrays in the program's order for a program with several outputs (`x, size = f(x=..., size=..., r=...)`).

    strategy: "oblivious" (default; data-oblivious operations only, for a linearized program), "sort"
    (sorts, gathers and scatters where a pattern allows: data-dependent) or "generic" (the generic steps alone,
    the reference semantics). planned=False and fast=False are aliases of strategy="generic".

    threads (torch only): "auto" runs a call whose inputs hold fewer than SMALL_CALL (2^23) elements on one
    thread and larger ones on torch's setting; an int runs every call on that many threads; None leaves torch's
    setting alone. The count is set around each call and restored after (torch.set_num_threads is global).
    """
    return Compiled(program, backend, strategy=strategy, planned=planned, fast=fast, threads=threads)
