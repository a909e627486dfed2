"""`linearize check PROGRAM`: property-test the linearized form against the program's reference (or its original)."""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="a built-in program name or module:attr")
    parser.add_argument("--reference", default=None, metavar="NAME|MODULE:FUNCTION",
                        help="what to compare with: a torch reference or program by name, or module:function (a "
                             "torch function taking the inputs by name and the sizes, or a Program); default: the "
                             "program's declared reference (meta['reference']), else the reference of its name")
    parser.add_argument("--against", choices=("reference", "original"), default="reference",
                        help="reference (default): --reference, else the declared or named reference (the "
                             "official torch code, its stable-sort variant on tied draws); original: the program's "
                             "own original form")
    parser.add_argument("--inputs", default=None, metavar="DATA.npz",
                        help="also check on your own arrays (batched, by input name; a given size such as k may be "
                             "stored too, else every value is checked), before the drawn examples")
    parser.add_argument("--examples", type=int, default=300, help="how many random inputs to draw")
    parser.add_argument("--seed", type=int, default=None,
                        help="a random seed S, to explore other draws reproducibly (default: hypothesis' fixed, "
                             "derandomized draws)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of text, and no progress bar")
    parser.add_argument("--backend", choices=("numpy", "torch"), default="numpy",
                        help="the backend that evaluates IR programs")


def reproduce(args: argparse.Namespace) -> str:
    cmd = ["linearize", "check", args.program]
    for flag, value, default in (("--reference", args.reference, None), ("--against", args.against, "reference"),
                                 ("--inputs", args.inputs, None), ("--examples", args.examples, 300),
                                 ("--seed", args.seed, None), ("--backend", args.backend, "numpy")):
        if value != default:
            cmd += [flag, str(value)]
    return shlex.join(cmd)


def sides(args: argparse.Namespace, prefer: str) -> tuple[Any, Any, dict[str, str], dict[str, str]]:
    """(program, reference, the candidate's {name, form}, the reference's) for check (prefer="function": a torch
    reference by name first) and prove (prefer="program"). The reference is --reference, else the declared one
    (meta["reference"]), else for check the torch reference of the program's name and for prove its original."""
    from ..ir.form import is_linearized
    from ..programs import get
    from . import UsageError
    from .forms import resolve_reference

    prog = get(args.program)
    linearized = is_linearized(prog)
    cand = {"name": prog.name, "form": "as written" if linearized else "linearized form"}
    declared = prog.meta.get("reference") if prog.meta else None
    if args.against == "original":
        if args.reference:
            raise UsageError("--against original compares with the program's own original form: drop --reference")
        if not linearized:
            return prog, prog, cand, {"name": prog.name, "form": "original form"}
        if not declared:
            raise UsageError(f"{prog.name} is already in linearized form and declares no original "
                             "(meta['reference']); give one with --reference")
        ref, name, form = resolve_reference(declared, "program")
        if form == "torch function":
            raise UsageError(f"{prog.name} declares a torch function as its reference, not an original form: "
                             "drop --against original")
    elif args.reference or declared:
        ref, name, form = resolve_reference(args.reference or declared, prefer)
    elif prefer == "program" and not linearized:
        return prog, prog, cand, {"name": prog.name, "form": "original form"}
    else:
        try:
            ref, name, form = resolve_reference(prog.name, prefer)
        except UsageError:
            raise UsageError(f"{prog.name} has no reference: name one with --reference NAME|module:function, "
                             f"or compare with its original form (--against original)") from None
        if prefer == "function" and form != "torch function" and not form.startswith("torch reference"):
            raise UsageError(f"{prog.name} has no torch reference: name one with --reference "
                             "NAME|module:function, or compare with its original form (--against original)")
    return prog, ref, cand, {"name": name, "form": form}


def run(args: argparse.Namespace) -> int:
    from ..ir.form import is_linearized
    from ..rewrite import linearize
    from ..verify.check import check
    from . import UsageError
    from .eval import load_npz
    from .progress import Bar, wanted

    if args.examples < 1:
        raise UsageError(f"--examples must be >= 1, got {args.examples}")
    prog, reference, cand, ref = sides(args, "function")
    candidate = prog if is_linearized(prog) else linearize(prog).result
    if reference is candidate or (hasattr(reference, "output") and reference.output is candidate.output
                                  and reference.early_returns == candidate.early_returns):
        raise UsageError(f"{prog.name}: the candidate and the reference are the same program")
    inputs = [load_npz(args.inputs)] if args.inputs else None
    try:
        with Bar(wanted(args), args.examples, "example", prog.name) as bar:
            def progress(done: int, total: int, shrinking: bool) -> None:
                bar.update(done, desc=f"{prog.name}: shrinking a counterexample" if shrinking else prog.name)
            result = check(candidate, reference, examples=args.examples, seed=args.seed, backend=args.backend,
                           program=prog, inputs=inputs, progress=progress)
    except ValueError as e:  # sides that take different inputs, a reference that is not one
        raise UsageError(str(e)) from None
    c, r = f"{cand['name']} ({cand['form']})", f"{ref['name']} ({ref['form']})"
    if args.json:
        data = result.to_dict()
        data.update(candidate=cand, reference=ref)
        print(json.dumps({"program": prog.name, "against": args.against, **data}))
        return 0 if result.ok else 1
    mine = f"your inputs ({result.inputs} set{'s' * (result.inputs != 1)}) and " if args.inputs else ""
    if result.ok:
        print(f"{prog.name}: ok, {mine}{result.examples} examples: {c} equals {r} ({result.seconds:.1f} s)")
        return 0
    where = "on your inputs" if result.counterexample.draw == "inputs" else \
        f"after {result.examples} example(s)"
    print(f"{prog.name}: counterexample {where}: {c} differs from {r} ({result.seconds:.1f} s)")
    for line in str(result.counterexample).splitlines():
        print("  " + line)
    print(f"reproduce: {reproduce(args)}")
    return 1
