"""Programs and nodes as JSON trees a program can read (`linearize derive --format json`; schema in docs/cli.md).

A node is {"op", "arg", "shape", "src": [...]}: "op" is the op table's name, "shape" the dimensions as text, "src"
the operands' trees. A named definition is a leaf {"op": "def", "arg": NAME, "ref": KEY, "shape"}; its value is the
tree in the table of definitions under KEY (NAME, or NAME_2, ... where two different definitions share a name). Index
arithmetic in "arg" is structured, so that a reader can rebuild every node:

- an index expression (Affine): {"affine": "N - k + 1", "const": 1, "terms": [[SYM, 1], [SYM, -1]]};
- a size: {"size": "N"}; an index variable: {"var": "i", "lo": AFFINE, "hi": AFFINE}, ranging over [lo, hi);
- a tuple: a list; numbers, booleans and names as themselves.
"""

from __future__ import annotations

from typing import Any

from .affine import Affine, Sym
from .nodes import Node
from .opcodes import Op
from .ops import OPS
from .printing import Printer
from .program import Program


def affine_tree(a: Affine) -> dict[str, Any]:
    return {"affine": str(a), "const": a.const, "terms": [[sym_tree(s), c] for s, c in a.terms]}


def sym_tree(s: Sym) -> dict[str, Any]:
    if s.kind == "size":
        return {"size": s.name}
    return {"var": s.name, "lo": affine_tree(s.lo), "hi": affine_tree(s.hi)}


def arg_tree(arg: Any) -> Any:
    if isinstance(arg, Affine):
        return affine_tree(arg)
    if isinstance(arg, Sym):
        return sym_tree(arg)
    if isinstance(arg, tuple):
        return [arg_tree(a) for a in arg]
    return arg  # a number, a flag, a name, or None


class Trees:
    """Encodes nodes, collecting the definitions they use in one table, named as the text notation names them."""

    def __init__(self) -> None:
        self.printer = Printer()
        self.definitions: dict[str, dict[str, Any]] = {}

    def node(self, n: Node) -> dict[str, Any]:
        done: dict[Node, dict[str, Any]] = {}
        for m in n.toposort():  # operands first, so the tree is built without recursion
            shape = [str(d) for d in m.shape]
            if m.op is Op.DEF:
                name = self.printer.name_of(m)
                if name not in self.definitions:
                    self.definitions[name] = done[m.src[0]]
                done[m] = {"op": OPS[m.op].name, "arg": m.arg, "ref": name, "shape": shape}
            else:
                done[m] = {"op": OPS[m.op].name, "arg": arg_tree(m.arg), "shape": shape,
                           "src": [done[s] for s in m.src]}
        return done[n]

    def program(self, p: Program) -> dict[str, Any]:
        return {
            "name": p.name,
            "inputs": [self.node(n) for n in p.inputs],
            "sizes": [{"size": c.size.name, "lo": affine_tree(c.lo), "hi": affine_tree(c.hi)} for c in p.constraints],
            "early_returns": [{"if": [affine_tree(e.lhs), affine_tree(e.rhs)], "value": self.node(e.value)}
                              for e in p.early_returns],
            "output": self.node(p.output),
            "text": str(p),
        }
