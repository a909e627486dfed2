"""The forms a program can be evaluated in, shared by `eval`, `show` and `check`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..ir.program import Program

PROGRAM_FORMS = ("original", "linearized")  # forms that are IR programs
REFERENCE_FORMS = ("reference", "stable-reference")  # forms that are torch code (linearize.reference)
FORMS = PROGRAM_FORMS + REFERENCE_FORMS
FORMS_HELP = ("original: the program as written (topk, gather, ...); linearized: the default pipeline's result; "
              "reference: the official torch code, whose order of tied scores is torch.topk's; stable-reference: "
              "the same code with a stable sort (among equal scores the lower token index ranks first)")
# the keys of linearize.rewrite.PIPELINES, named here so that building the parser imports no passes
PIPELINE_NAMES = ("default", "shared", "seed")
PIPELINE_HELP = ("the rewrite passes: default; shared, one comparison per pair of keys; seed, ranks without a "
                 "tie-break as in the hand derivation published with EViT (wrong on ties, kept to show why)")


def size_arg(text: str) -> tuple[str, int]:
    """argparse type for --size NAME=VALUE."""
    import argparse
    name, eq, value = text.partition("=")
    if not eq or not name.isidentifier() or not value.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"must be NAME=INTEGER, e.g. r=4, got {text!r}")
    return name, int(value)


def size_syms(prog: Program) -> dict[str, Any]:
    """The program's sizes by name (those of its inputs' shapes and those it is given), as Syms."""
    syms = {s.name: s for n in prog.inputs for d in n.arg[1] for s in d.syms}
    return {**syms, **{c.size.name: c.size for c in prog.constraints}}


def pipeline(name: str) -> tuple:
    from ..rewrite.pipelines import PIPELINES
    return PIPELINES[name]


def program_in_form(prog: Program, form: str) -> Program:
    if form == "original":
        return prog
    if form == "linearized":
        from ..rewrite import linearize
        return linearize(prog).result
    raise ValueError(f"form {form!r} is not a program")


def _references() -> dict[str, dict[str, Callable[..., Any]]]:
    """Every torch reference by name: EViT's and Top-K's (x, attn, k), POMT's (x, attn, v, r), DynamicViT's
    (x, score, k); each takes the program's inputs, then its sizes, in the order of the program's signature."""
    from ..verify.reference import DYNAMICVIT_REFERENCES, POMT_REFERENCES, REFERENCES
    return {**REFERENCES, **POMT_REFERENCES, **DYNAMICVIT_REFERENCES}


def reference_name(prog: Program) -> str | None:
    """The torch reference a program is compared with: its meta's "reference" (evit-seed -> evit), else its
    own name; None when there is no such reference."""
    name = prog.meta.get("reference", prog.name) if prog.meta else prog.name
    return name if name in _references() else None


def reference_fn(name: str, variant: str = "official") -> Callable[..., Any]:
    from . import UsageError
    refs = _references()
    if name not in refs:
        raise UsageError(f"program {name!r} has no torch reference; references exist for {', '.join(refs)}")
    return refs[name][variant]
