"""`linearize prove PROGRAM`: settle the equivalence with the reference exactly, every ordering of the compared
scores and every size up to --max-n tokens."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .forms import PIPELINE_HELP, PIPELINE_NAMES, pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="a built-in program name or module:attr (a program not in linearized form "
                                        "is linearized first)")
    parser.add_argument("--reference", default=None, metavar="NAME|MODULE:ATTR",
                        help="what to prove it equal to: a program by name, or module:attr (a Program, or a torch "
                             "function taking the inputs by name and the sizes); default: the program's declared "
                             "reference (meta['reference']), else its own original form")
    parser.add_argument("--against", choices=("reference", "original"), default="reference",
                        help="prove against the reference (default) or the program's own original form")
    parser.add_argument("--max-n", type=int, default=6, help="settle every token count n <= N (default 6)")
    parser.add_argument("--json", action="store_true", help="one JSON object: program, candidate, reference, "
                                                            "max_n, regions, ok, counterexample, seconds, ... (and "
                                                            "no progress bar)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--pipeline", choices=PIPELINE_NAMES, default="default", help=PIPELINE_HELP)
    parser.add_argument("--channels", type=int, default=1,
                        help="channels to settle when a program is not channel-generic (default 1)")
    parser.add_argument("--size", action="append", default=[], metavar="NAME=VALUE",
                        help="fix a size the proof does not enumerate (default 1; repeatable)")


def _sizes(specs: list[str]) -> dict[str, int]:
    from . import UsageError
    out = {}
    for spec in specs:
        name, _, value = spec.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise UsageError(f"--size takes NAME=VALUE with an integer value, got {spec!r}") from None
        if out[name.strip()] < 0:
            raise UsageError(f"--size {spec}: sizes are >= 0")
    return out


def run(args: argparse.Namespace) -> int:
    from ..verify.prove import ProveError, prove
    from . import UsageError
    from .check import sides
    from .progress import Bar, wanted

    if not 1 <= args.max_n <= 9:
        raise UsageError(f"--max-n must be between 1 and 9, got {args.max_n}")
    if args.jobs < 1 or args.channels < 1:
        raise UsageError(f"--jobs and --channels must be >= 1, got {args.jobs} and {args.channels}")
    passes = pipeline(args.pipeline)
    sizes = _sizes(args.size)
    prog, reference, _, ref = sides(args, "program")
    note = _compared_note(args, prog, reference, ref)
    if note:  # the declared torch reference computes the compared scores itself: the original form holds them
        reference, ref = prog, {"name": prog.name, "form": "original form"}
    try:
        with Bar(wanted(args), 0, "region") as bar:
            result = prove(prog, reference, max_n=args.max_n, pipeline=passes, jobs=args.jobs,
                           channels=args.channels, sizes=sizes, reference_name=ref["name"],
                           progress=lambda done, total, n: bar.update(done, total, f"n = {n}"))
    except ProveError as e:
        raise UsageError(str(e)) from None
    c = f"{result.candidate['name']} ({result.candidate['form']})"
    r = f"{result.reference['name']} ({result.reference['form']})"
    if args.json:
        print(json.dumps({**result.to_dict(), **({"note": note} if note else {})}, indent=2))
    elif result.ok:
        sizes_text = ", ".join(f"{k}: {v}" for k, v in result.sizes.items())
        exact = "rational arithmetic" if result.exact == "rational" else "float64 on small integers"
        print(f"{result.program}: proved for n <= {result.max_n}: {c} equals {r} on {result.regions:,} regions "
              f"(weak orderings of the compared scores, and sizes), features symbolic, exact ({exact}), in "
              f"{result.seconds:.1f} s")
        print(f"  sizes: {sizes_text}")
        if result.assumption:
            print(f"  assuming {result.assumption}")
        if note:
            print(f"  {note}")
    else:
        settled = f"{result.regions:,} region{'' if result.regions == 1 else 's'}"
        print(f"{result.program}: refuted: {c} differs from {r}; after {settled} settled, the first failing one:")
        print(result.counterexample)
    return 0 if result.ok else 1


def _compared_note(args: argparse.Namespace, prog: Any, reference: Any, ref: dict[str, str]) -> str | None:
    """Why the proof compares with the original form, when the program compares a definition of its own (POMT's
    metric) and declares a torch reference, which computes that definition itself and so cannot be cut there."""
    from ..ir.form import is_linearized
    from ..ir.program import Program
    from ..verify.cut import compared_definition
    name = compared_definition(prog)
    if args.reference or name is None or isinstance(reference, Program) or is_linearized(prog):
        return None
    return (f"against its original form: the declared reference {ref['name']} ({ref['form']}) computes {name!r} "
            f"itself, and the proof takes {name!r}, one node of both forms, as the compared scores; "
            f"`linearize check {prog.name}` compares with {ref['name']}")
