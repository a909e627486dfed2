"""linearize: rewrite the token selection of ViT pruning methods into heaviside/delta sums, and check it.

Importing the package does not import torch or sympy; the parts that need them import them when used.
"""

from __future__ import annotations

from . import programs
from .eval.compiled import Compiled, compile
from .ir import Affine, IRError, Node, Op, Sym
from .ir.build import (
    amax,
    argmax,
    argsort,
    cat,
    complement,
    const,
    define,
    delta,
    exp,
    gather,
    heaviside,
    index,
    kth_largest,
    kth_smallest,
    mean,
    rank_of,
    scatter_add,
    size,
    sizes,
    sort_by_key,
    sort_indices,
    sqrt,
    stack_over,
    sum_over,
    tensor,
    topk,
)
from .ir.program import LATEX, InputError, Program, keep_rate_to_k, program
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
    "amax",
    "argmax",
    "argsort",
    "cat",
    "compile",
    "complement",
    "const",
    "define",
    "delta",
    "exp",
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
    "scatter_add",
    "size",
    "sizes",
    "sort_by_key",
    "sort_indices",
    "sqrt",
    "stack_over",
    "sum_over",
    "tensor",
    "to_module",
    "topk",
]
__version__ = "0.1.0"


def to_module(program: Program, **options: object) -> object:
    """The program as a torch.nn.Module made only of data-oblivious operations, at static sizes:
    to_module(programs.get("evit"), N=196, k=138, C=768, H=12). A program with data-dependent ops (topk, gather,
    ...) is linearized first with the default pipeline. See `linearize.export.to_module` for the options;
    torch is imported on the first call, not by `import linearize`."""
    from .export.module import to_module as export_module
    from .ir.ops import SELECTIONS
    dependent = any(n.op in SELECTIONS for r in program.roots() for n in r.toposort())
    return export_module(linearize(program).result if dependent else program, **options)  # type: ignore[arg-type]


def _latex(kind: str) -> object:
    """The LaTeX renderer of programs, derivations and steps (show/latex.py), loaded when Jupyter first asks: the
    IR and the rewrite engine declare the hook, the package (the top layer) fills it."""
    def render(obj: object) -> str:
        from .show import latex
        renderers = {"program": latex.program_latex, "derivation": latex.derivation_latex, "step": latex.step_latex}
        return renderers[kind](obj)
    return render


LATEX.update({kind: _latex(kind) for kind in ("program", "derivation", "step")})


def __getattr__(name: str) -> object:
    """`to_sympy`, `check`, `bounds` and `timm` are loaded on first use, so that `import linearize` imports neither
    sympy nor hypothesis (nor torch)."""
    if name == "timm":
        import importlib
        return importlib.import_module(".timm", __name__)
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
