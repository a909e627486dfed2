"""A Program: named inputs, one output node, the sizes' ranges and size-level early returns."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .affine import Affine, IRError, Sym
from .build import as_affine
from .nodes import Node
from .opcodes import Op
from .printing import Printer, definitions, shorten, show_definition

# renderers for Jupyter, installed by the package (linearize/__init__.py) so that the IR does not import show/
LATEX: dict[str, Callable[[Any], str]] = {}


class InputError(ValueError):
    """Inputs or sizes that do not fit the program: the message names the problem."""


# what an input is to the checker and the prover (docs/checker.md, docs/prove.md):
#   feature -- token features the output is linear in once the comparisons are fixed (x); drawn freely
#   score   -- values the program compares (heaviside, delta, topk, rank, sorts read them); drawn with ties
#   value   -- other values that flow polynomially and are never compared (a value tensor); drawn freely
ROLES = ("feature", "score", "value")

# conditions a program may require of an input's values (Program.requires), checked with the inputs' finiteness
# before every evaluation, and honoured by the checker's draws
REQUIREMENTS: dict[str, str] = {
    "positive": "must be > 0 everywhere",  # POMT's attn: a softmax's values (its metric divides by their maximum)
}


@dataclass(frozen=True)
class Constraint:
    """lo <= size <= hi, checked before every evaluation."""

    size: Sym
    lo: Affine
    hi: Affine


RELATIONS = {"==": lambda a, b: a == b, "<=": lambda a, b: a <= b}


@dataclass(frozen=True)
class EarlyReturn:
    """if lhs == rhs: return value (or lhs <= rhs) -- a condition on sizes only, so it is not data-dependent."""

    lhs: Affine
    rhs: Affine
    value: Node
    relation: str = "=="  # "==" or "<="

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            raise IRError(f"an early return's condition is lhs == rhs or lhs <= rhs, got {self.relation!r}")

    def holds(self, env: Mapping[Sym, int]) -> bool:
        return RELATIONS[self.relation](self.lhs.value(dict(env)), self.rhs.value(dict(env)))

    @property
    def condition(self) -> str:
        return f"{self.lhs} {self.relation} {self.rhs}"


@dataclass(frozen=True)
class Program:
    """A program: named inputs, one output node, the sizes' ranges and size-level early returns. Build one with
    `program(...)`; print() shows it in the text notation, Jupyter renders it as LaTeX."""

    name: str
    inputs: tuple[Node, ...]
    output: Node
    constraints: tuple[Constraint, ...] = ()
    early_returns: tuple[EarlyReturn, ...] = ()
    features: tuple[str, ...] = ("x",)  # inputs the output must be linear in, once scores are fixed
    doc: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)
    roles: Mapping[str, str] = field(default_factory=dict, compare=False)  # input -> ROLES; see role()
    requires: tuple[tuple[str, str], ...] = ()  # (input, condition in REQUIREMENTS): POMT's attn > 0

    def __post_init__(self) -> None:
        names = [n.arg[0] for n in self.inputs]
        for n in self.inputs:
            if n.op is not Op.INPUT:
                raise IRError(f"program {self.name}: inputs must be tensor() nodes")
        if len(set(names)) != len(names):
            raise IRError(f"program {self.name}: duplicate input names {names}")
        for name, role in self.roles.items():
            if name not in names or role not in ROLES:
                raise IRError(f"program {self.name}: role {name!r}: {role!r} must name an input and be one of "
                              f"{', '.join(ROLES)}")
        for name, cond in self.requires:
            if name not in names or cond not in REQUIREMENTS:
                raise IRError(f"program {self.name}: requires ({name!r}, {cond!r}): name an input and one of "
                              f"{', '.join(REQUIREMENTS)}")
        for root in self.roots():
            if root.free:
                unbound = ", ".join(sorted(v.name for v in root.free))
                raise IRError(f"program {self.name}: unbound index variable(s) {unbound} in the output")
            for n in root.toposort():
                if n.op is Op.INPUT and n not in self.inputs:
                    raise IRError(f"program {self.name} uses tensor {n.arg[0]} that is not among its inputs")
        for e in self.early_returns:
            if e.value.shape and len(e.value.shape) != len(self.output.shape):
                raise IRError(f"program {self.name}: early return has rank {len(e.value.shape)}, "
                              f"the output rank {len(self.output.shape)}")
        derivable = {s for n in self.inputs for d in n.arg[1] for s in d.syms}
        for root in self.roots():
            for n in root.toposort():
                for s in _size_syms(n):
                    if s not in derivable and s not in {c.size for c in self.constraints}:
                        raise IRError(f"program {self.name}: size {s.name} is neither an input dimension "
                                      "nor given a range with sizes=")

    def roots(self) -> tuple[Node, ...]:
        return (self.output, *(e.value for e in self.early_returns))

    def with_output(self, output: Node, **changes: Any) -> Program:
        return replace(self, output=output, **changes)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(n.arg[0] for n in self.inputs)

    def role(self, name: str) -> str:
        """The input's role (ROLES): as declared in `roles`, else feature for the features (x), score otherwise."""
        return self.roles.get(name) or ("feature" if name in self.features else "score")

    @property
    def given_sizes(self) -> tuple[str, ...]:
        """Sizes the caller passes (like k), as opposed to those read off the input shapes."""
        derivable = {s for n in self.inputs for d in n.arg[1] for s in d.syms}
        return tuple(c.size.name for c in self.constraints if c.size not in derivable)

    def bind_sizes(self, shapes: Mapping[str, tuple[int, ...]], given: Mapping[str, int], *,
                   batched: bool = False) -> dict[Sym, int]:
        """Read sizes off the (unbatched) input shapes, check they agree, and check every range.

        batched=True: the caller's arrays have a leading batch axis, so messages count their axes from it
        (`attn axis 2`, of `attn [B, H, N + 1, N + 1]`)."""
        env: dict[Sym, int] = {}

        def where(name: str, axis: int) -> str:
            dims = next(n.arg[1] for n in self.inputs if n.arg[0] == name)
            shown = ", ".join(["B"] * batched + [str(d) for d in dims])
            return f"{name} axis {axis + batched} (of {name} [{shown}])"

        for c in self.constraints:
            if c.size.name in given:
                env[c.size] = int(given[c.size.name])
        pending = [(name, axis, d) for n in self.inputs for name in [n.arg[0]]
                   for axis, d in enumerate(n.arg[1])]
        for _ in range(len(pending) + 1):
            progress = False
            for name, axis, d in list(pending):
                actual = shapes[name][axis]
                unknown = [s for s in d.syms if s not in env]
                if not unknown:
                    expected = d.value(env)
                    if expected != actual:
                        raise InputError(f"shapes disagree: {where(name, axis)} has size {actual}, "
                                         f"expected {d} = {expected} from the other inputs")
                    pending.remove((name, axis, d))
                    progress = True
                elif len(unknown) == 1 and abs(d.coeff(unknown[0])) == 1:
                    s = unknown[0]
                    value = (actual - (d - Affine(((s, d.coeff(s)),))).value(env)) * d.coeff(s)
                    if value < 0:
                        raise InputError(f"{where(name, axis)} has size {actual}, too small for {d}")
                    env[s] = value
                    progress = True
            if not progress:
                break
        if pending:
            name, axis, d = pending[0]
            raise InputError(f"cannot determine size {d} of {where(name, axis)}")
        for c in self.constraints:
            if c.size not in env:
                raise InputError(f"size {c.size.name} is required (e.g. --{c.size.name} or {c.size.name}=...)")
            lo, hi, v = c.lo.value(env), c.hi.value(env), env[c.size]
            if not lo <= v <= hi:
                others = sorted({s for s in c.lo.syms | c.hi.syms if s != c.size}, key=Sym.sort_key)
                values = ", ".join(f"{s.name} = {env[s]}" for s in [c.size, *others])
                raise InputError(f"{c.size.name} out of range: need {c.lo} <= {c.size.name} <= {c.hi}, got {values}")
        return env

    def active_root(self, env: Mapping[Sym, int]) -> Node:
        for e in self.early_returns:
            if e.holds(env):
                return e.value
        return self.output

    def check_reductions(self, env: Mapping[Sym, int]) -> None:
        """An InputError for a mean or max over an empty axis (H = 0) at these sizes: it has no value. An empty sum
        is 0, and an empty batch or channel axis gives an empty result."""
        from .ops import OPS
        from .printing import show
        for n in self.active_root(env).toposort():
            spec = OPS[n.op]
            if spec.kind == "reduction" and n.src[0].shape[spec.axis(n)].value(dict(env)) == 0:
                sizes = ", ".join(f"{s.name} = {v}" for s, v in sorted(env.items(), key=lambda t: t[0].name))
                raise InputError(f"{spec.name} over an empty axis in `{show(n)}` ({sizes})")

    def signature(self) -> str:
        ins = ", ".join(f"{n.arg[0]}: [{', '.join(str(d) for d in n.arg[1])}]" for n in self.inputs)
        cons = ", ".join(f"{c.size.name}: {c.lo} <= {c.size.name} <= {c.hi}" for c in self.constraints)
        out = ", ".join(str(d) for d in self.output.shape)
        return f"def {self.name}({ins}{', ' + cons if cons else ''}) -> [{out}]:"

    def __str__(self) -> str:
        p = Printer()
        lines = [self.signature()]
        for e in self.early_returns:
            lines.append(f"    if {e.condition}: return {p.show(e.value)}")
        for d in definitions(self.output):
            lines.append("    " + show_definition(p, d))
        lines.append(f"    return {p.show(self.output)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        """The notation, as print() shows it, with long lines and long programs cut (str() is never cut)."""
        return shorten(str(self))

    def _repr_latex_(self) -> str:
        return LATEX["program"](self)


def _size_syms(n: Node) -> set[Sym]:
    found: set[Sym] = set()

    def visit(a: Any) -> None:
        if isinstance(a, Affine):
            for s in a.syms:
                if s.kind == "size":
                    found.add(s)
                else:
                    visit(s.lo)
                    visit(s.hi)
        elif isinstance(a, Sym):
            visit(Affine.of(a))
        elif isinstance(a, tuple):
            for x in a:
                visit(x)

    visit(n.arg)
    for d in n.shape:
        visit(d)
    return found


def program(name: str, inputs: list[Node] | tuple[Node, ...], output: Node, *,
            sizes: Mapping[Node, tuple[Any, Any]] | None = None,
            early_returns: list[tuple[Any, ...]] | None = None,
            features: tuple[str, ...] | None = None, doc: str = "", meta: Mapping[str, Any] | None = None,
            roles: Mapping[str, str] | None = None, requires: Mapping[str, str] | None = None) -> Program:
    """Build a Program; sizes={k: (1, N)} gives ranges, early_returns=[(k, N, x)] means `if k == N: return x` and
    [(N - 1 - r, "<=", 1, x)] `if N - 1 - r <= 1: return x` (the first that holds returns);
    meta={"reference": "topk"} names the reference a hand-written or renamed program answers to;
    roles={"x": "feature", "score": "score", "v": "value"} says what each input is (default: x is the feature,
    every other input a score); the features default to the inputs whose role is feature; requires={"attn":
    "positive"} checks a condition (REQUIREMENTS) on an input's values before every evaluation."""
    roles = dict(roles or {})
    if features is None:
        names = [n.arg[0] for n in inputs]
        features = tuple(n for n in names if roles.get(n, "feature" if n == "x" else "score") == "feature")
    cons = tuple(Constraint(as_affine(s).terms[0][0], as_affine(lo), as_affine(hi))
                 for s, (lo, hi) in (sizes or {}).items())
    early = tuple(_early_return(e) for e in early_returns or [])
    return Program(name, tuple(inputs), output, cons, early, features, doc, dict(meta or {}), roles,
                   tuple((requires or {}).items()))


def _early_return(e: tuple[Any, ...]) -> EarlyReturn:
    if len(e) == 3:
        return EarlyReturn(as_affine(e[0]), as_affine(e[1]), e[2])
    if len(e) == 4 and isinstance(e[1], str):
        return EarlyReturn(as_affine(e[0]), as_affine(e[2]), e[3], e[1])
    raise IRError(f"an early return is (lhs, rhs, value) or (lhs, relation, rhs, value), got {e!r}")


ROUNDINGS = ("ceil", "floor")  # a program's meta["keep_rate"] names its official conversion; EViT's is the default


def keep_rate_to_k(keep_rate: float, n: int, rounding: str = "ceil") -> int:
    """The official conversion of a keep rate into k: EViT's left_tokens = ceil(keep_rate * n) (n non-CLS tokens);
    rounding="floor" is DynamicViT's int(n * keep_rate), which keeps no token when n * keep_rate < 1 (an error)."""
    if rounding not in ROUNDINGS:
        raise InputError(f"keep rate rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")
    if math.isnan(keep_rate) or not 0 < keep_rate <= 1:
        raise InputError(f"keep rate must be in (0, 1], got {keep_rate}")
    if n < 1:
        raise InputError(f"n must be >= 1, got {n}")
    if rounding == "ceil":
        return math.ceil(keep_rate * n)
    k = int(n * keep_rate)
    if k < 1:
        raise InputError(f"keep rate {keep_rate} keeps no token of {n}: int({n} * {keep_rate}) = 0")
    return k
