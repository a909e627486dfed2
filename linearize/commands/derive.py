from __future__ import annotations

import argparse

from .forms import PIPELINE_HELP, PIPELINE_NAMES, pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="a built-in program name or module:attr")
    parser.add_argument("--format", choices=("text", "json", "latex"), default="text",
                        help="text: linearize's notation; json: every step as a tree a program can read "
                             "(schema in docs/cli.md); latex: an aligned chain of equations")
    parser.add_argument("--pipeline", choices=PIPELINE_NAMES, default="default", help=PIPELINE_HELP)


def run(args: argparse.Namespace) -> int:
    from ..programs import get
    from ..rewrite import LinearizeError, linearize
    try:
        d = linearize(get(args.program), pipeline(args.pipeline))
    except LinearizeError as e:  # print the steps that applied, then the reason (exit 2)
        if e.derivation is not None and args.format == "text":
            print(e.derivation)
        elif e.derivation is not None and args.format == "json":
            print(e.derivation.dumps())
        raise
    if args.format == "json":
        print(d.dumps())
    elif args.format == "latex":
        from ..show.latex import derivation_latex
        print(derivation_latex(d))
    else:
        print(d)
    return 0
