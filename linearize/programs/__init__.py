"""The registry of built-in programs: `get("evit")`, or `get("package.module:attr")` for a user's own."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from ..ir.program import Program

# name -> (module, factory, one-line summary); modules are imported only when asked for
BUILTIN: dict[str, tuple[str, str, str]] = {
    "evit": ("linearize.programs.evit", "evit", "EViT: top-k tokens by CLS attention plus one fused token"),
    "topk": ("linearize.programs.topk", "topk_pruning", "Top-K: top-k tokens by CLS attention"),
    "pomt": ("linearize.programs.pomt", "pomt",
             "POMT: the N - 1 - r best tokens by max-over-heads attention and values, plus the mean of the rest"),
    "dynamicvit": ("linearize.programs.dynamicvit", "dynamicvit",
                   "DynamicViT: the k tokens with the largest predicted score, in descending score order"),
    "dynamicvit-ordered": ("linearize.programs.dynamicvit", "dynamicvit_ordered",
                           "DynamicViT with the k kept tokens in index order"),
    "evit-seed": ("linearize.programs.evit_seed", "evit_seed",
                  "the hand derivation: EViT's hand linearization published with its verification plans, "
                  "as written (the checker refutes it)"),
}


class UnknownProgram(LookupError):
    pass


def names() -> list[str]:
    """The built-in programs' names (`linearize list`)."""
    return list(BUILTIN)


def summary(name: str) -> str:
    return BUILTIN[name][2]


_cache: dict[str, Program] = {}


def get(name: str) -> Program:
    """A built-in program by name, or `module:attr` naming a Program or a function returning one."""
    if name in _cache:
        return _cache[name]
    if name in BUILTIN:
        module, attr, _ = BUILTIN[name]
    elif ":" in name:
        module, attr = name.split(":", 1)
    else:
        raise UnknownProgram(f"unknown program {name!r}; built-in programs: {', '.join(BUILTIN)} "
                             "(or name your own as module:attr)")
    if name not in BUILTIN and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # a user's module in the current directory, as `python -m` would find it
    try:
        obj: Program | Callable[[], Program] = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise UnknownProgram(f"cannot load program {name!r}: {e}") from None
    prog = obj() if callable(obj) and not isinstance(obj, Program) else obj
    if not isinstance(prog, Program):
        raise UnknownProgram(f"{name!r} is a {type(prog).__name__}, not a linearize Program")
    _cache[name] = prog
    return prog
