"""A plan: the steps that compute a program at one size environment, and the function that runs them.

A `Plan` is what `Planner` (planner.py) builds: every value has a `Meta`, its static layout -- a leading batch
axis (B, or 1 for a value that does not depend on the inputs), one axis per free index variable, then the
node's own shape -- and every step computes one slot from others. `Plan.run(arrays)` calls one generated
Python function that runs the steps over local variables and frees each slot after its last use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..ir import Node, Sym


@dataclass(frozen=True)
class Meta:
    """A value's static layout: shape (batch, *dims, *own), dims one per axis."""

    axes: tuple[Sym, ...]
    dims: tuple[int, ...]
    own: tuple[int, ...]
    batch: int
    kind: str = "float"  # "float", "int" for indices, "bool" for comparisons
    finite: bool = False  # no inf or NaN, for certain (inputs are checked; sums and products may overflow)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.batch, *self.dims, *self.own)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Step:
    fn: Callable[..., Any]
    ins: tuple[int, ...]
    out: int
    node: Node | None
    strategy: str


# --- composing a step's function while planning: no wrapper call where nothing needs doing (calls cost at B=1)
def reshaper(shape: tuple[int, ...], target: tuple[int, ...]) -> Callable[[Any], Any] | None:
    return None if shape == target else (lambda a: a.reshape(target))


def compose(*fns: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """The composition of the functions given (the first applied first), None if there are none."""
    live = [f for f in fns if f is not None]
    if len(live) <= 1:
        return live[0] if live else None
    first, rest = live[0], compose(*live[1:])
    assert rest is not None
    return lambda a: rest(first(a))


def chain(*fns: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """As compose, but the identity when there is nothing to apply."""
    return compose(*fns) or (lambda a: a)


def lift(op: Callable[[Any, Any], Any], fa: Callable[[Any], Any] | None,
         fb: Callable[[Any], Any] | None) -> Callable[[Any, Any], Any]:
    """op(fa(a), fb(b)), calling op itself where no operand needs a change."""
    if fa is None and fb is None:
        return op
    if fb is None:
        return lambda a, b: op(fa(a), b)
    if fa is None:
        return lambda a, b: op(a, fb(b))
    return lambda a, b: op(fa(a), fb(b))


@dataclass
class Plan:
    """The steps for one size environment; `strategies` names how each planned node is computed."""

    steps: list[Step]
    metas: list[Meta]
    consts: dict[int, Any]
    inputs: dict[str, int]
    out: int | tuple[int, ...]  # a tuple for a program's several outputs: run returns a tuple
    strategies: dict[Node, str]
    internal: int = 0  # elements of the largest array a step builds inside itself
    widen: Callable[[Any, tuple[int, ...]], Any] | None = None  # broadcasts a batch-1 output to `batch`
    batch: int = 1
    mode: str = "oblivious"  # the strategies it was planned with (Compiled's `strategy`)
    # (input name, viewer, where) per view of an input the program reads (ir/reads.py): what a call checks finite
    reads: tuple = ()
    _code: list[tuple[Callable[..., Any], tuple[int, ...], int, tuple[int, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        last: dict[int, int] = {}
        for pos, s in enumerate(self.steps):
            for i in s.ins:
                last[i] = pos
        keep = set(self.consts) | set(self.inputs.values()) | set(self.outs)
        dead: list[list[int]] = [[] for _ in self.steps]
        for slot, pos in last.items():
            if slot not in keep:
                dead[pos].append(slot)
        self._code = [(s.fn, s.ins, s.out, tuple(d)) for s, d in zip(self.steps, dead)]
        self._template = [self.consts.get(i) for i in range(len(self.metas))]
        self._fast = self._generate()

    def _generate(self) -> Callable[[Mapping[str, Any]], Any]:
        """The steps as one Python function over local variables: the least interpreter work per call."""
        def ref(i: int) -> str:
            return f"c{i}" if i in self.consts else f"s{i}"
        lines = ["def run(arrays):", *(f"    s{slot} = arrays[{name!r}]" for name, slot in self.inputs.items())]
        for k, (_, ins, out, dead) in enumerate(self._code):
            lines.append(f"    s{out} = f{k}({', '.join(ref(i) for i in ins)})")
            lines += [f"    del s{d}" for d in dead]
        results = []
        for out in self.outs:
            shape = self.metas[out].shape
            if shape[0] != self.batch and self.widen is not None:  # an output that does not depend on the inputs
                results.append(f"widen({ref(out)}, {(self.batch, *shape[1:])})")
            else:
                results.append(ref(out))
        lines.append(f"    return {'(' + ', '.join(results) + ',)' if isinstance(self.out, tuple) else results[0]}")
        namespace: dict[str, Any] = {f"f{k}": c[0] for k, c in enumerate(self._code)}
        namespace["widen"] = self.widen
        namespace.update({f"c{i}": v for i, v in self.consts.items()})
        exec("\n".join(lines), namespace)
        return namespace["run"]

    @property
    def outs(self) -> tuple[int, ...]:
        return self.out if isinstance(self.out, tuple) else (self.out,)

    @property
    def largest(self) -> int:
        """Elements in the largest intermediate: any step's output, or an array built inside a step."""
        return max([self.internal, *(self.metas[s.out].size for s in self.steps)])

    def strategy_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.strategies.values():
            out[s] = out.get(s, 0) + 1
        return out

    def run(self, arrays: Mapping[str, Any], check: bool = False) -> Any:
        """The output for these input arrays; check=True compares every step's shape with the plan's."""
        if not check:
            return self._fast(arrays)
        vals = list(self._template)
        for name, slot in self.inputs.items():
            vals[slot] = arrays[name]
        for fn, ins, out, dead in self._code:
            vals[out] = fn(*[vals[i] for i in ins])
            if vals[out] is not None and tuple(vals[out].shape) != self.metas[out].shape:
                raise AssertionError(f"planned {self.metas[out].shape}, got {tuple(vals[out].shape)} at slot {out}")
            for d in dead:
                vals[d] = None
        results = []
        for out in self.outs:
            shape = self.metas[out].shape
            wide = shape[0] != self.batch and self.widen is not None
            results.append(self.widen(vals[out], (self.batch, *shape[1:])) if wide else vals[out])
        return tuple(results) if isinstance(self.out, tuple) else results[0]
