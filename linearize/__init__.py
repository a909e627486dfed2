"""linearize: rewrite the token selection of ViT pruning methods into heaviside/delta sums, and check it.

Importing the package does not import torch or sympy; the parts that need them import them when used.
"""

from __future__ import annotations

from . import programs
from .eval.compiled import Compiled, compile
from .ir.build import (
    argsort,
    cat,
    complement,
    const,
    define,
    delta,
    gather,
    heaviside,
    index,
    kth_largest,
    kth_smallest,
    mean,
    rank_of,
    size,
    sizes,
    sort_by_key,
    stack_over,
    sum_over,
    tensor,
    topk,
)
from .ir.nodes import Affine, IRError, Node, Op, Sym
from .ir.program import InputError, Program, keep_rate_to_k, program
from .rewrite import Derivation, LinearizeError, linearize

__all__ = [
                    "Affine",
                    "Compiled",
                    "Derivation",
                    "IRError",
                    "InputError",
                    "LinearizeError",
                    "Node",
                    "Op",
                    "Program",
                    "Sym",
                    "argsort",
                    "cat",
                    "compile",
                    "complement",
                    "const",
                    "define",
                    "delta",
                    "gather",
                    "heaviside",
                    "index",
                    "keep_rate_to_k",
                    "kth_largest",
                    "kth_smallest",
                    "linearize",
                    "mean",
                    "program",
                    "programs",
                    "rank_of",
                    "size",
                    "sizes",
                    "sort_by_key",
                    "stack_over",
                    "sum_over",
                    "tensor",
                    "topk",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """`to_sympy`, `check` and `bounds` are loaded on first use, so that `import linearize` imports neither sympy
    nor hypothesis (nor torch)."""
    if name == "to_sympy":
        from .show.sympy_bridge import to_sympy
        return to_sympy
    if name == "check":
        from .verify.check import check
        return check
    if name == "bounds":
        from .verify.bounds import bounds
        return bounds
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
