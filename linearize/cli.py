"""The `linearize` command. Each subcommand lives in linearize/commands/<name>.py with
`add_arguments(parser)` and `run(args) -> int`; this file only dispatches and turns errors into one line.

Nothing here imports torch or sympy: a command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> one-line help; the module linearize.commands.<name> implements it
COMMANDS: dict[str, str] = {
    "list": "list the built-in programs",
    "show": "print a program in the seed's notation",
    "eval": "evaluate a program on inputs from an .npz file",
    "derive": "run the rewrite passes and print the derivation",
    "check": "property-test a program's linearized form against its torch reference",
    "prove": "prove equivalence over every ordering of the scores, exactly",
    "cost": "count comparisons, rank tests, multiplications and additions",
    "bounds": "sound lower and upper bounds on the output over a box of inputs",
}


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def _commands() -> dict[str, str]:
    here = os.path.join(os.path.dirname(__file__), "commands")
    return {name: text for name, text in COMMANDS.items() if os.path.exists(os.path.join(here, f"{name}.py"))}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage errors: one line, exit 2
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="linearize", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, text in _commands().items():
        p = sub.add_parser(name, help=text, description=text)
        importlib.import_module(f"linearize.commands.{name}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .ir.nodes import IRError
    from .ir.program import InputError
    from .programs import UnknownProgram
    try:
        args = build_parser().parse_args(argv)
        return int(importlib.import_module(f"linearize.commands.{args.command}").run(args))
    except (UsageError, InputError, IRError, UnknownProgram) as e:
        print(f"linearize: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("linearize: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`linearize ... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:  # a bug, not bad input: still one line unless asked for the traceback
        if os.environ.get("LINEARIZE_DEBUG"):
            raise
        print(f"linearize: internal error: {type(e).__name__}: {e} (set LINEARIZE_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
