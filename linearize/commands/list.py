from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from ..programs import BUILTIN
    width = max(len(n) for n in BUILTIN)
    for name, (_, _, text) in BUILTIN.items():
        print(f"{name:<{width}}  {text}")
    return 0
