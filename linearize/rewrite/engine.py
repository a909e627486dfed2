"""The rewrite engine: rules, passes, substitution and the recorded Derivation.

A rule is a function from a node to its replacement, or None when it does not fire, with a one-line
statement of its mathematics. A pass is a named list of rules run to a fixed point; passes compose by
concatenating rule lists, and a pipeline is a list of passes. Every application is recorded as a Step.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

from ..ir import Affine, IRError, Node, Op
from ..ir.algebra import nonneg, replace_nodes
from ..ir.form import ops_present
from ..ir.printing import Printer, definitions, shorten, show, show_definition
from ..ir.program import LATEX, Program
from ..ir.tree import Trees


class LinearizeError(RuntimeError):
    """The pipeline's result is not in linearized form; the message lists what is left, `derivation` holds the
    steps that did apply (None when the pipeline itself failed)."""

    def __init__(self, message: str, derivation: Derivation | None = None):
        super().__init__(message)
        self.derivation = derivation


# --- rules, passes, derivations ------------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    program: Program

    def nonneg(self, a: Affine) -> bool:
        return nonneg(a, self.program)

    @cached_property
    def sizes(self) -> frozenset[str]:
        """The names of the program's sizes, which a new index variable must not take."""
        dims = [d for n in self.program.inputs for d in n.arg[1]]
        return frozenset(s.name for d in dims for s in d.syms) | {c.size.name for c in self.program.constraints}


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


@dataclass(frozen=True)
class Step:
    """One rule application: the subterm `before` replaced by `after`, and the whole program after it. print()
    shows `[pass / rule] before => after`; Jupyter renders it as an equation."""

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

    def __str__(self) -> str:
        d = self.to_dict()
        return f"[{self.pass_name} / {self.rule}] {d['before']} => {d['after']}"

    def __repr__(self) -> str:
        """One line: the rule, and each side cut to `width` characters (str() is never cut)."""
        return self.line()

    def line(self, width: int = 60) -> str:
        d = self.to_dict()
        before, after = (shorten(d[side], width=width, lines=1) for side in ("before", "after"))
        return f"[{self.pass_name} / {self.rule}] {before} => {after}"

    def _repr_latex_(self) -> str:
        return LATEX["step"](self)


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

    def __repr__(self) -> str:
        """A summary for a REPL: the passes, one line per step, the result; print() shows everything."""
        shown = 12
        head = (f"Derivation of {self.source.name}: {len(self.steps)} step{'' if len(self.steps) == 1 else 's'} "
                f"({', '.join(self.passes)})")
        lines = [head] + [f"{i:>3}. {s.line(48)}" for i, s in enumerate(self.steps[:shown], 1)]
        if len(self.steps) > shown:
            lines.append(f"    ... ({len(self.steps) - shown} more steps)")
        return "\n".join([*lines, "result:", repr(self.result)])

    def to_json(self) -> dict:
        """The derivation as JSON trees a program can read, with the text forms (schema: docs/cli.md)."""
        trees = Trees()
        source = trees.program(self.source)
        steps = [{"pass": s.pass_name, "rule": s.rule, "before": trees.node(s.before), "after": trees.node(s.after),
                  "text": {k: v for k, v in s.to_dict().items() if k in ("before", "after")}} for s in self.steps]
        result = trees.program(self.result)
        return {"program": self.source.name, "passes": list(self.passes), "source": source, "steps": steps,
                "result": result, "definitions": trees.definitions, "ops": ops_present(self.result)}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def _repr_latex_(self) -> str:
        return LATEX["derivation"](self)

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
    early = tuple(replace(e, value=replace_nodes(e.value, mapping)) for e in program.early_returns)
    return replace(program, output=replace_nodes(program.output, mapping), early_returns=early)


def run_pipeline(program: Program, pipeline: Iterable[Pass]) -> Derivation:
    passes = tuple(pipeline)
    d = Derivation(program, [], tuple(p.name for p in passes))
    current = program
    for p in passes:
        current = run_pass(current, p, d.steps)
    return d
