"""The forms a program can be evaluated in, shared by `eval`, `show` and `check`."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
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


def add_size_arguments(parser: Any) -> None:
    """--k | --keep-rate and --size, the sizes of `eval` and `bounds` (read back by commands.eval.given_sizes)."""
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--k", type=int, help="the number of tokens kept, 1 <= k <= N")
    size.add_argument("--keep-rate", type=float, metavar="R",
                      help="k from a keep rate, as the program's official code computes it: ceil(R * N) for EViT "
                           "and Top-K, int(R * N) (a floor) for DynamicViT")
    parser.add_argument("--size", action="append", default=[], type=size_arg, metavar="NAME=VALUE",
                        help="any other size the program takes, e.g. --size r=4 for POMT (repeat for more)")


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


def load(spec: str) -> Any:
    """A `module:attr` object: a Program, a function returning one (called), or another callable (returned)."""
    from . import UsageError
    module, _, attr = spec.partition(":")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # a user's module in the current directory, as `python -m` would find it
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"cannot load {spec!r}: {e}") from None
    if callable(obj) and not isinstance(obj, Program):
        try:
            params = inspect.signature(obj).parameters.values()
        except (TypeError, ValueError):
            params = []
        if not any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                   for p in params):
            made = obj()
            if isinstance(made, Program):
                return made
    return obj


def resolve_reference(spec: str, prefer: str) -> tuple[Any, str, str]:
    """(reference, its name, its form) for a name or `module:attr`. `check` prefers a torch reference of that name
    (prefer="function"), `prove` a program (prefer="program"); `module:attr` is a Program, a function returning
    one, or a torch function taking the inputs by name and the given sizes."""
    from ..programs import BUILTIN, get
    from . import UsageError
    if ":" in spec:
        obj = load(spec)
        if isinstance(obj, Program):
            return obj, spec, "original form" if not _linearized(obj) else "as written"
        if callable(obj):
            return obj, spec, "torch function"
        raise UsageError(f"{spec!r} is a {type(obj).__name__}: a reference is a Program or a function")
    if prefer == "function" and spec in _references():
        return _references()[spec], spec, f"torch reference, linearize.reference.{spec}"
    if spec in BUILTIN:
        prog = get(spec)
        return prog, spec, "original form" if not _linearized(prog) else "as written"
    if spec in _references():
        return _references()[spec]["stable"], spec, f"torch reference, linearize.reference.{spec}_stable"
    raise UsageError(f"no reference named {spec!r}: built-in programs are {', '.join(BUILTIN)}; "
                     "or name your own as module:function")


def _references() -> dict[str, Any]:
    from ..verify.check import references
    return references()


def _linearized(prog: Program) -> bool:
    from ..ir.form import is_linearized
    return is_linearized(prog)
