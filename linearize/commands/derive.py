from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="a built-in program name or module:attr")
    parser.add_argument("--format", choices=("text", "json", "latex"), default="text")
    parser.add_argument("--pipeline", choices=("default", "seed"), default="default",
                        help="seed: the hand derivation's ranks without a tie-break (wrong on ties)")


def run(args: argparse.Namespace) -> int:
    from ..passes import DEFAULT_PIPELINE, SEED_PIPELINE
    from ..programs import get
    from ..rewrite import linearize
    d = linearize(get(args.program), DEFAULT_PIPELINE if args.pipeline == "default" else SEED_PIPELINE)
    if args.format == "json":
        print(d.dumps())
    elif args.format == "latex":
        from ..sympy_bridge import derivation_latex
        print(derivation_latex(d))
    else:
        print(d)
    return 0
