"""`linearize check PROGRAM`: property-test the linearized form against the torch reference (or the original)."""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="a built-in program name or module:attr")
    parser.add_argument("--against", choices=("reference", "original"), default="reference",
                        help="reference: the official torch code (its stable-sort variant on tied draws); "
                             "original: the program as written")
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
    if args.against != "reference":
        cmd += ["--against", args.against]
    if args.examples != 300:
        cmd += ["--examples", str(args.examples)]
    if args.seed is not None:
        cmd += ["--seed", str(args.seed)]
    if args.backend != "numpy":
        cmd += ["--backend", args.backend]
    return shlex.join(cmd)


def run(args: argparse.Namespace) -> int:
    from ..ir.form import is_linearized
    from ..programs import get
    from ..rewrite import linearize
    from ..verify.check import check
    from . import UsageError
    from .forms import reference_name
    from .progress import Bar, wanted

    if args.examples < 1:
        raise UsageError(f"--examples must be >= 1, got {args.examples}")
    prog = get(args.program)
    if set(prog.input_names) != {"x", "attn"} or prog.given_sizes != ("k",):
        raise UsageError(f"check draws x [N+1, C], attn [H, N+1, N+1] and k; {prog.name} takes "
                         f"{', '.join(prog.input_names + prog.given_sizes)}")
    candidate = prog if is_linearized(prog) else linearize(prog).result
    if args.against == "reference":
        ref = reference_name(prog)
        if ref is None:
            raise UsageError(f"program {prog.name!r} has no torch reference; "
                             f"try `linearize check {args.program} --against original`")
        reference: Any = ref
        against = f"reference ({ref})"
    elif candidate is prog:
        raise UsageError(f"{prog.name} is already in linearized form, so it is its own original; "
                         f"try `linearize check {args.program} --against reference`")
    else:
        reference, against = prog, "original"
    with Bar(wanted(args), args.examples, "example", prog.name) as bar:
        def progress(done: int, total: int, shrinking: bool) -> None:
            bar.update(done, desc=f"{prog.name}: shrinking a counterexample" if shrinking else prog.name)
        result = check(candidate, reference, examples=args.examples, seed=args.seed, backend=args.backend,
                       progress=progress)
    if args.json:
        print(json.dumps({"program": prog.name, "against": args.against, **result.to_dict()}))
        return 0 if result.ok else 1
    form = "program" if candidate is prog else "linearized form"
    if result.ok:
        print(f"{prog.name}: ok, {result.examples} examples, the {form} equals the {against} "
              f"({result.seconds:.1f} s)")
        return 0
    print(f"{prog.name}: counterexample after {result.examples} example(s): the {form} differs from the "
          f"{against} ({result.seconds:.1f} s)")
    for line in str(result.counterexample).splitlines():
        print("  " + line)
    print(f"reproduce: {reproduce(args)}")
    return 1
