"""The rewrite engine: rules, passes, substitution and the recorded Derivation.

A rule is a function from a node to its replacement, or None when it does not fire, with a one-line
statement of its mathematics. A pass is a named list of rules run to a fixed point; passes compose by
concatenating rule lists, and a pipeline is a list of passes. Every application is recorded as a Step.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from ..ir.nodes import Affine, IRError, Node, Op, Sym, affine, bound, node
from ..ir.printing import Printer, definitions, show, show_definition
from ..ir.program import Program


class LinearizeError(RuntimeError):
    """The pipeline's result is not in linearized form; the message lists what is left, `derivation` holds the
    steps that did apply (None when the pipeline itself failed)."""

    def __init__(self, message: str, derivation: Derivation | None = None):
        super().__init__(message)
        self.derivation = derivation


# --- proving facts about sizes ------------------------------------------------------------------
def nonneg(a: Affine, program: Program | None = None) -> bool:
    """True when a >= 0 is provable from sizes >= 1 and the program's size ranges (lo <= s <= hi).

    Index variables are first replaced by their extreme values; then each constrained size is replaced by
    the bound that makes `a` smallest, until only unconstrained sizes (each >= 1) remain.
    """
    a = bound(a, upper=False)
    ranges = {c.size: (c.lo, c.hi) for c in (program.constraints if program else ())}
    for _ in range(16):
        sym = next((s for s in a.syms if s in ranges), None)
        if sym is None:
            break
        lo, hi = ranges[sym]
        a = a.subs({sym: lo if a.coeff(sym) > 0 else hi})
    if any(s in ranges for s in a.syms):
        return False
    return all(c >= 0 for _, c in a.terms) and a.const + sum(c for _, c in a.terms) >= 0


# --- substitution -----------------------------------------------------------------------------
def replace_nodes(root: Node, mapping: Mapping[Node, Node]) -> Node:
    """root with every occurrence of each key node replaced by its value (ancestors rebuilt)."""
    if not mapping:
        return root
    out: dict[Node, Node] = {}
    for n in root.toposort():
        if n in mapping:
            out[n] = mapping[n]
        else:
            src = tuple(out[s] for s in n.src)
            out[n] = n if all(a is b for a, b in zip(src, n.src)) else node(n.op, src, n.arg)
    return out[root]


def _mentions(n: Node) -> frozenset[Sym]:
    """Index variables a node depends on, including those its free variables' ranges use."""
    seen: set[Sym] = set()
    todo = list(n.free)
    while todo:
        v = todo.pop()
        if v not in seen:
            seen.add(v)
            todo.extend(v.lo.vars | v.hi.vars)
    return frozenset(seen)


def substitute(root: Node, mapping: Mapping[Sym, Affine]) -> Node:
    """root with index variables replaced by affine expressions; bound variables are renamed where needed."""
    cache: dict[tuple[Node, tuple], Node] = {}

    def sub_sym(v: Sym, m: Mapping[Sym, Affine]) -> Sym:
        return Sym(v.name, v.kind, v.lo.subs(m), v.hi.subs(m))

    def go(n: Node, m: Mapping[Sym, Affine]) -> Node:
        if not (_mentions(n) & m.keys()):
            return n
        key = (n, tuple(sorted(((k.sort_key(), str(v)) for k, v in m.items()))))
        if key in cache:
            return cache[key]
        if n.op is Op.AFFINE:
            out = affine(n.arg.subs(m))
        elif n.op in (Op.SUM, Op.STACK):
            v: Sym = n.arg
            inner = {k: e for k, e in m.items() if k != v}
            captured = any(v.name == u.name for e in inner.values() for u in e.vars)
            new_v = sub_sym(v, inner)
            if captured:
                new_v = Sym(v.name + "'", "var", new_v.lo, new_v.hi)
            if new_v != v:
                inner[v] = Affine.of(new_v)
            out = node(n.op, (go(n.src[0], inner) if inner else n.src[0],), new_v)
        else:
            src = tuple(go(s, m) for s in n.src)
            out = n if all(a is b for a, b in zip(src, n.src)) else node(n.op, src, n.arg)
        cache[key] = out
        return out

    return go(root, dict(mapping))


def fresh(name: str, lo: Affine | int, hi: Affine | int, avoid: Iterable[Node]) -> Sym:
    """An index variable named `name` (primed as needed) that none of `avoid` already uses."""
    taken = {v.name for n in avoid for v in _mentions(n)}
    while name in taken:
        name += "'"
    return Sym(name, "var", Affine.of(lo), Affine.of(hi))


def factors(n: Node) -> list[Node]:
    """The factors of a product tree, in order."""
    return factors(n.src[0]) + factors(n.src[1]) if n.op is Op.MUL else [n]


def product(parts: list[Node]) -> Node:
    out = parts[0]
    for p in parts[1:]:
        out = node(Op.MUL, (out, p))
    return out


# --- rules, passes, derivations ------------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    program: Program

    def nonneg(self, a: Affine) -> bool:
        return nonneg(a, self.program)


RuleFn = Callable[[Node, Context], "Node | None"]


@dataclass(frozen=True)
class Rule:
    name: str
    fn: RuleFn
    math: str  # the rule as one line of mathematics, with its side condition

    def __call__(self, n: Node, ctx: Context) -> Node | None:
        return self.fn(n, ctx)


def rule(name: str, math: str) -> Callable[[RuleFn], Rule]:
    return lambda fn: Rule(name, fn, math)


@dataclass(frozen=True)
class Pass:
    name: str
    rules: tuple[Rule, ...]
    doc: str = ""

    def __add__(self, other: Pass) -> Pass:
        return Pass(f"{self.name}+{other.name}", self.rules + other.rules, self.doc)


@dataclass(frozen=True)
class Step:
    pass_name: str
    rule: str
    before: Node
    after: Node
    program: Program  # the whole program after this step

    def to_dict(self) -> dict[str, str]:
        p = Printer()
        before, after = p.show(self.before), p.show(self.after)
        if self.after.op is Op.DEF:  # a new definition: show what it is, not just its name
            known = set(definitions(self.before))
            after = "; ".join(show_definition(p, d) for d in definitions(self.after) if d not in known)
        return {"pass": self.pass_name, "rule": self.rule, "before": before, "after": after}

    def _repr_latex_(self) -> str:
        from ..show.latex import step_latex
        return step_latex(self)


@dataclass
class Derivation:
    """The chain of steps from a program to its rewritten form; `.result` is the final program."""

    source: Program
    steps: list[Step] = field(default_factory=list)
    passes: tuple[str, ...] = ()

    @property
    def result(self) -> Program:
        return self.steps[-1].program if self.steps else self.source

    def __str__(self) -> str:
        lines = [str(self.source), ""]
        for i, s in enumerate(self.steps, 1):
            d = s.to_dict()
            lines.append(f"{i:>3}. [{s.pass_name} / {s.rule}]")
            lines.append(f"       {d['before']}")
            lines.append(f"    => {d['after']}")
        lines += ["", str(self.result)]
        return "\n".join(lines)

    def to_json(self) -> dict:
        from ..ir.form import ops_present
        return {"program": self.source.name, "steps": [s.to_dict() for s in self.steps],
                "result": str(self.result), "ops": ops_present(self.result)}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def _repr_latex_(self) -> str:
        from ..show.sympy_bridge import derivation_latex
        return derivation_latex(self)

    @cached_property
    def rules_used(self) -> list[str]:
        return sorted({s.rule for s in self.steps})


def run_pass(program: Program, p: Pass, steps: list[Step], max_steps: int = 10_000) -> Program:
    """Apply the pass's rules, innermost nodes first, until none fires; record every application."""
    for _ in range(max_steps):
        ctx = Context(program)
        hit = None
        for root in program.roots():
            for n in root.toposort():
                for r in p.rules:
                    new = r(n, ctx)
                    if new is not None and new is not n:
                        hit = (r, n, new)
                        break
                if hit:
                    break
            if hit:
                break
        if hit is None:
            return program
        r, before, after = hit
        if after.shape != before.shape:
            raise IRError(f"rule {r.name} changed a shape: {show(before)} -> {show(after)}")
        program = apply(program, {before: after})
        steps.append(Step(p.name, r.name, before, after, program))
    raise LinearizeError(f"pass {p.name} did not reach a fixed point in {max_steps} steps")


def apply(program: Program, mapping: Mapping[Node, Node]) -> Program:
    from dataclasses import replace
    early = tuple(replace(e, value=replace_nodes(e.value, mapping)) for e in program.early_returns)
    return replace(program, output=replace_nodes(program.output, mapping), early_returns=early)


def run_pipeline(program: Program, pipeline: Iterable[Pass]) -> Derivation:
    passes = tuple(pipeline)
    d = Derivation(program, [], tuple(p.name for p in passes))
    current = program
    for p in passes:
        current = run_pass(current, p, d.steps)
    return d
