from __future__ import annotations

import argparse

from .forms import FORMS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="a built-in program name or module:attr")
    parser.add_argument("--form", choices=[f for f in FORMS if f != "reference"], default="original")


def run(args: argparse.Namespace) -> int:
    from ..programs import get
    from .forms import program_in_form
    print(program_in_form(get(args.program), args.form))
    return 0
