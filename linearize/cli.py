"""The `linearize` command line.

Each subcommand lives in linearize/commands/<name>.py with `add_arguments(parser)` and `run(args) -> int`; this
file only dispatches and turns errors into one line. Nothing here imports torch or sympy: a command imports
what it needs when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .commands import UsageError

DESCRIPTION = """\
linearize rewrites the token selection of Vision-Transformer pruning methods (EViT, Top-K), written with
torch.topk, sort and gather, into data-oblivious sums of heaviside/delta step functions; it records every
rewrite step, checks and proves the result against the official PyTorch code, evaluates it, and counts what
it costs under MPC/HE."""

EPILOG = """\
`linearize COMMAND --help` lists a command's options. Exit status: 0 success, 1 a counterexample
(check, prove), 2 bad input (one line on stderr), 3 a bug in linearize. More: docs/cli.md."""

# name -> one-line help; the module linearize.commands.<name> implements it
COMMANDS: dict[str, str] = {
    "list": "list the built-in programs",
    "show": "print a program in linearize's text notation",
    "eval": "evaluate a program on inputs from an .npz file",
    "derive": "run the rewrite passes and print the derivation",
    "check": "property-test a program's linearized form against its torch reference",
    "prove": "prove equivalence over every ordering of the scores, exactly",
    "cost": "count comparisons, rank tests, multiplications and additions, or the MPC cost (--model mpc)",
    "export": "write the linearized program as an ONNX model made only of data-oblivious ops",
    "bounds": "sound lower and upper bounds on the output over a box of inputs",
}


def _commands() -> dict[str, str]:
    here = os.path.join(os.path.dirname(__file__), "commands")
    return {name: text for name, text in COMMANDS.items() if os.path.exists(os.path.join(here, f"{name}.py"))}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage errors: one line, exit 2
        raise UsageError(f"{message} (see `{self.prog} --help`)")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written; every option's default appended to its help, unless the help states it or
    there is none to state (a flag that is off, an option that is unset unless given)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def version() -> str:
    """The installed distribution's version, else the package's own (a source checkout on sys.path)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version
    try:
        return dist_version("linearize")
    except PackageNotFoundError:
        from . import __version__
        return __version__


class _Version(argparse.Action):
    """--version, looked up only when asked for (importlib.metadata is not free at start-up)."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"{parser.prog} {version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="linearize", description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    parser.add_argument("--version", action=_Version, help="print linearize's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, title="commands")
    sub.required = True
    for name, text in _commands().items():
        p = sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)
        importlib.import_module(f"linearize.commands.{name}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .ir import IRError
    from .ir.program import InputError
    from .programs import UnknownProgram
    from .rewrite.engine import LinearizeError
    try:
        args = build_parser().parse_args(argv)
        return int(importlib.import_module(f"linearize.commands.{args.command}").run(args))
    except (UsageError, InputError, IRError, UnknownProgram, LinearizeError) as e:
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
