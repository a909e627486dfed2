"""The IR: interned nodes (op, sources, arg), the op table, shapes, the builder, programs and printing.

The bottom layer: it imports nothing else from linearize. Within it: affine <- opcodes <- shapes <- ops <- nodes
<- printing <- build <- program <- form, algebra.
"""

from __future__ import annotations

from .affine import Affine, IRError, Sym, bound
from .nodes import Node, affine, node
from .opcodes import Op
from .ops import OPS, OpSpec
from .printing import show
from .program import InputError, Program, program

__all__ = ["OPS", "Affine", "IRError", "InputError", "Node", "Op", "OpSpec", "Program", "Sym", "affine", "bound",
           "node", "program", "show"]
