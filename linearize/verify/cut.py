"""Preparing a program whose compared quantities are computed, and one with several outputs, for check and prove.

ToMe compares cosine similarities, `scores = a @ b^T` of the normalized metric rows, not entries of an input. Its
program names that definition (`meta={"compared": "scores"}`); `cut` makes it an input of role score in both
sides of a proof -- sound when both sides hold the very same definition node, which is checked: the similarities
are then the same function of the metric on both sides, and the proof is over every weak ordering of them (the
norms and the product are arithmetic the rewrites never touch). `split_quotients` replaces an output `a / b` by the
two outputs `a`, `b` on both sides: equal numerators and denominators give equal quotients, and what is left is a
polynomial, which the prover settles. `joined` makes one array of several outputs, for comparing them row by row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..ir import Node, Op, node
from ..ir.algebra import replace_nodes
from ..ir.program import Program, map_output


def compared_definition(program: Program) -> str | None:
    """The name of the definition whose entries the program compares, when it declares one."""
    return program.meta.get("compared") if program.meta else None


def _definition(program: Program, name: str) -> Node | None:
    found = {n for r in program.roots() for n in r.toposort() if n.op is Op.DEF and n.arg == name}
    return found.pop() if len(found) == 1 else None


def cut(programs: Sequence[Program], name: str) -> list[Program] | str:
    """Each program with its definition `name` replaced by an input of that name (role score), and the inputs it
    no longer reads dropped; or why not (the sides do not hold one and the same definition)."""
    defs = [_definition(p, name) for p in programs]
    if any(d is None for d in defs) or any(d is not defs[0] for d in defs):
        return (f"the compared definition {name!r} is not one and the same node in every side: the similarities "
                "must be computed alike for a proof over their orderings")
    d = defs[0]
    scores = node(Op.INPUT, (), (name, d.shape))
    out = []
    for p in programs:
        output = map_output(p.output, lambda root: replace_nodes(root, {d: scores}))
        early = tuple(replace(e, value=map_output(e.value, lambda root: replace_nodes(root, {d: scores})))
                      for e in p.early_returns)
        used = {n for o in (output, *(e.value for e in early)) for r in (o if isinstance(o, tuple) else (o,))
                for n in r.toposort() if n.op is Op.INPUT}
        inputs = tuple(n for n in p.inputs if n in used) + (scores,)
        names = {i.arg[0] for i in inputs}
        roles = {k: v for k, v in dict(p.roles).items() if k in names}
        requires = tuple((k, c) for k, c in p.requires if k in names)
        meta = {k: v for k, v in dict(p.meta).items() if k != "compared"}
        out.append(replace(p, inputs=inputs, output=output, early_returns=early, roles={**roles, name: "score"},
                           requires=requires, meta=meta))
    return out


def split_quotients(programs: Sequence[Program]) -> list[Program]:
    """Every side with each output a / b replaced by the outputs a, b -- where every side's output there is a
    quotient; an early return's value in that place becomes (value, 1)."""
    if not all(isinstance(p.output, tuple) == isinstance(programs[0].output, tuple) for p in programs):
        return list(programs)
    width = len(programs[0].outputs)
    if any(len(p.outputs) != width for p in programs):
        return list(programs)
    split = [all(p.outputs[i].op is Op.DIV for p in programs) for i in range(width)]
    if not any(split):
        return list(programs)
    one = node(Op.CONST, (), 1.0)

    def parts(values: tuple[Node, ...]) -> tuple[Node, ...]:
        out: list[Node] = []
        for v, s in zip(values, split):
            out += ([v.src[0], v.src[1]] if v.op is Op.DIV else [v, one]) if s else [v]
        return tuple(out)
    return [replace(p, output=parts(p.outputs),
                    early_returns=tuple(replace(e, value=parts(e.values)) for e in p.early_returns))
            for p in programs]


def for_proof(programs: Sequence[Program]) -> list[Program] | str:
    """The sides as a proof takes them: cut at the compared definition a side declares (the reference's, for a
    hand-written candidate that reuses the original's metric), quotients split, and no conditions on values
    (size > 0): the proof shows the sides equal as polynomials, at every value, which its lattice points (zeros
    among them) need."""
    name = next((n for p in programs if (n := compared_definition(p)) is not None), None)  # either side's
    if name is not None:
        cut_sides = cut(programs, name)
        if isinstance(cut_sides, str):
            return cut_sides
        programs = cut_sides
    return [replace(p, requires=()) if p.requires else p for p in split_quotients(programs)]


def joined(out: Any) -> np.ndarray:
    """One numpy array of a program's output (an array, or a tuple of arrays or tensors): several outputs with the
    same rows side by side along the last axis ([B, rows, C] and [B, rows, 1] give [B, rows, C + 1]); otherwise
    each flattened to [B, -1, 1] and concatenated along the rows."""
    if not isinstance(out, tuple):
        return _numpy(out)
    parts = [_numpy(o) for o in out]
    b = parts[0].shape[0]
    if all(p.ndim >= 2 for p in parts) and len({p.shape[:2] for p in parts}) == 1:
        return np.concatenate([p.reshape(b, p.shape[1], -1) for p in parts], axis=2)
    return np.concatenate([np.broadcast_to(p, (b, *p.shape[1:])).reshape(b, -1, 1) for p in parts], axis=1)


def _numpy(a: Any) -> np.ndarray:
    if type(a).__module__.startswith("torch"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


__all__ = ["compared_definition", "cut", "for_proof", "joined", "split_quotients"]
