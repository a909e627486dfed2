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


def reference_name(prog: Program) -> str | None:
    """The torch reference a program is compared with: its meta's "reference" (evit-seed -> evit), else its
    own name; None when there is no such reference."""
    from ..verify.reference import REFERENCES
    name = prog.meta.get("reference", prog.name) if prog.meta else prog.name
    return name if name in REFERENCES else None


def reference_fn(name: str, variant: str = "official") -> Callable[..., Any]:
    from ..verify.reference import REFERENCES
    from . import UsageError
    if name not in REFERENCES:
        raise UsageError(f"program {name!r} has no torch reference; references exist for {', '.join(REFERENCES)}")
    return REFERENCES[name][variant]
