from __future__ import annotations

import argparse

from .forms import PROGRAM_FORMS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="a built-in program name or module:attr")
    parser.add_argument("--form", choices=PROGRAM_FORMS, default="original",
                        help="original: the program as written; linearized: the default pipeline's result")


def run(args: argparse.Namespace) -> int:
    from ..programs import get
    from .forms import program_in_form
    print(program_in_form(get(args.program), args.form))
    return 0
