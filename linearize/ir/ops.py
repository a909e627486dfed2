"""The op table: every IR op declared once, with every fact the rest of the system needs about it.

Each layer reads its facet here and supplies the machinery the facet calls into: the notation printer
(ir/printing.py) gives `text` a printer, the LaTeX printer and the SymPy converter (show/) give `latex` and
`sympy` theirs, the evaluators (eval/) call `impl` with a backend namespace, the linearized-form predicate and the
prover read `degree` and `order`, the cost model calls `cost` with its counter. Nothing here imports those layers.
A facet that is missing for an op's kind is a test failure (tests/test_ops.py), never a silent default.

Kinds: `leaf` (input, constant, index expression), `structure` (indexing, slicing, concatenation, sums and
comprehensions over index variables, named definitions: the calculus every layer implements itself),
`arithmetic`, `step` (heaviside, delta), `reduction`, and `selection`: the data-dependent ops that the rewrite
rules must remove (a linearized program has none; `impl` evaluates them for the original forms).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import shapes as S
from .opcodes import Op

# precedence in the text notation and LaTeX: a sum binds loosest, then products, then negation, then atoms
ADD, MUL, NEG, ATOM = 1, 2, 3, 4
KINDS = ("leaf", "structure", "arithmetic", "step", "reduction", "selection")

Rule = Callable[..., Any]


@dataclass(frozen=True)
class OpSpec:
    name: str  # in the notation and in messages
    kind: str  # one of KINDS
    doc: str  # what it computes, in one line
    arity: int | None  # operands; None for any number (cat)
    shape: S.ShapeRule  # (src, arg, what) -> (shape, dtype); raises IRError naming the node
    text: Rule  # (printer, node) -> (text, precedence)
    latex: Rule  # (latex printer, node) -> (latex, precedence, open)
    sympy: Rule  # (converter, node, indices, env) -> the SymPy element at those indices
    degree: Rule  # (node, operand degrees, feature names) -> polynomial degree in the features (inf: not linear)
    integral: Rule  # (node, operands integral) -> whether every value is an integer (a count, an index)
    cost: Rule | None  # (counter, node, points) -> {count name: amount}; None: not counted (a selection)
    # evaluation on any backend `xp` (eval/backends.py): arithmetic and steps (xp, *arrays), reductions
    # (xp, x, axis[, length: the axis length as an array of the dtype]), selections (xp, node, env, *operands)
    impl: Rule | None = None
    order: str | None = None  # "compare": reads only the weak ordering of `keys`; "move": moves rows by such an order
    keys: tuple[int, ...] = ()  # the operands read for their order only
    binds: bool = False  # arg is an index variable this node binds (sum, stack)
    axis: Rule | None = None  # (node) -> the operand axis it indexes, slices, joins or reduces


# --- shared facets ---------------------------------------------------------------------------------------
def free(c: Any, n: Any, each: Any) -> dict[str, Any]:
    return {}  # index arithmetic, layout and moves cost nothing: they are known before any data is


def widest(n: Any, d: list[float], features: frozenset[str]) -> float:
    return max(d, default=0.0)


def first(n: Any, d: list[float], features: frozenset[str]) -> float:
    return d[0]


def flat(n: Any, d: list[float], features: frozenset[str]) -> float:
    """A comparison or an order: a polynomial of degree 0 only when no feature reaches it."""
    return math.inf if any(d) else 0.0


def moved(n: Any, d: list[float], features: frozenset[str]) -> float:
    """Rows moved by an order: linear in the rows, not polynomial in the order's operands."""
    return math.inf if any(d[1:]) else d[0]


def of_operands(n: Any, integral: list[bool]) -> bool:
    return all(integral)


def never(n: Any, integral: list[bool]) -> bool:
    return False


def always(n: Any, integral: list[bool]) -> bool:
    return True


def _count_additions(c: Any, n: Any, each: Any) -> dict[str, Any]:
    # a difference read only by comparisons is part of each comparison
    return {} if c.only_compared(n) else {"additions": each}


def _rows(xp: Any, X: Any, idx: Any) -> Any:
    """X[b, idx[b, m]] for every batch b: X (B, n, *rest), idx (B, m) -> (B, m, *rest)."""
    return xp.take_along(X, idx.reshape(idx.shape + (1,) * (X.ndim - 2)), 1)


def _complement(xp: Any, n: Any, env: Any, idx: Any) -> Any:
    total = n.arg.value(env)
    # sort a 0/1 "selected" flag stably: the unselected indices come first, in ascending order
    selected = (xp.arange(0, total).reshape(1, 1, total) == idx[:, :, None]).sum(1)
    return xp.argsort(selected, False)[:, : total - idx.shape[1]]


def _kth(xp: Any, n: Any, env: Any, X: Any, key: Any, ranks: Any) -> Any:
    """The rows of stable rank `ranks` (a flat int array): (B, len(ranks), *rest)."""
    return _rows(xp, X, xp.argsort(key, n.arg)[:, ranks])


def _call(name: str) -> Rule:
    return lambda p, n: p.call(name, n)


def _sorting(name: str, latex: str) -> dict[str, Rule]:
    """Facets shared by the ops that read a key's stable order (argsort, sort_by_key, rank_of)."""
    return {"text": lambda p, n: p.call(name, n, "descending=True" if n.arg else None),
            "latex": lambda p, n: p.call(latex, n, descending=n.arg),
            "sympy": lambda c, n, idx, env: c.function(name + ("_desc" if n.arg else ""), n, idx, env)}


def _selection(name: str, doc: str, arity: int, shape: S.ShapeRule, impl: Rule, order: str, keys: tuple[int, ...],
               degree: Rule = flat, integral: Rule = always, **notation: Rule) -> OpSpec:
    notation.setdefault("text", _call(name))
    notation.setdefault("latex", lambda p, n: p.call(name, n))
    notation.setdefault("sympy", lambda c, n, idx, env: c.function(name, n, idx, env))
    return OpSpec(name, "selection", doc, arity, shape, notation["text"], notation["latex"], notation["sympy"],
                  degree, integral, None, impl, order, keys)


def _arithmetic(name: str, symbol: str, prec: int, doc: str, fn: Rule, shape: S.ShapeRule, degree: Rule,
                cost: Rule, integral: Rule = of_operands) -> OpSpec:
    return OpSpec(name, "arithmetic", doc, 2, shape, lambda p, n: p.binary(n, symbol, prec),
                  lambda p, n: p.binary(n), lambda c, n, idx, env: c.binary(n, idx, env, fn), degree, integral, cost,
                  lambda xp, a, b: fn(a, b))


OPS: dict[Op, OpSpec] = {
    # --- leaves
    Op.INPUT: OpSpec("input", "leaf", "a program input; arg: (name, shape)", 0, S.input_shape,
                     lambda p, n: (n.arg[0], ATOM), lambda p, n: (p.name(n), ATOM, False),
                     lambda c, n, idx, env: c.input_ref(n, idx),
                     lambda n, d, features: 1.0 if n.arg[0] in features else 0.0, never, free),
    Op.CONST: OpSpec("const", "leaf", "a number; arg: the value", 0, S.const_shape,
                     lambda p, n: p.number(n), lambda p, n: p.number(n), lambda c, n, idx, env: c.number(n.arg),
                     widest, lambda n, s: float(n.arg).is_integer(), free),
    Op.AFFINE: OpSpec("affine", "leaf", "an index expression: sizes and index variables; arg: an Affine", 0,
                      S.affine_shape, lambda p, n: p.affine(n), lambda p, n: p.affine(n),
                      lambda c, n, idx, env: c.affine(n.arg, env), widest, always, free),
    # --- arithmetic
    Op.ADD: _arithmetic("add", "+", ADD, "a + b, broadcast", lambda a, b: a + b, S.integer_arithmetic, widest,
                        _count_additions),
    Op.SUB: _arithmetic("sub", "-", ADD, "a - b, broadcast", lambda a, b: a - b, S.integer_arithmetic, widest,
                        _count_additions),
    Op.MUL: _arithmetic("mul", "*", MUL, "a * b, broadcast", lambda a, b: a * b, S.integer_arithmetic,
                        lambda n, d, f: d[0] + d[1], lambda c, n, each: {"multiplications": each}),
    Op.DIV: _arithmetic("div", "/", MUL, "a / b, broadcast; a float", lambda a, b: a / b, S.division,
                        lambda n, d, f: math.inf if d[1] else d[0], lambda c, n, each: {"multiplications": each},
                        never),
    Op.NEG: OpSpec("neg", "arithmetic", "-a", 1, S.same_shape, lambda p, n: p.negation(n),
                   lambda p, n: p.negation(n), lambda c, n, idx, env: -c.elem(n.src[0], idx, env), first,
                   of_operands, free, lambda xp, a: -a),
    # softmax's numerator (POMT); neither linear nor a comparison, so a feature must never reach it
    Op.EXP: OpSpec("exp", "arithmetic", "e ** a, elementwise", 1, S.to_float, _call("exp"),
                   lambda p, n: p.unary(r"\exp", n), lambda c, n, idx, env: c.sp.exp(c.elem(n.src[0], idx, env)),
                   lambda n, d, features: math.inf if d[0] else 0.0, never,
                   lambda c, n, each: {"exponentials": each}, lambda xp, a: xp.exp(a)),
    # --- steps
    Op.HEAVISIDE: OpSpec("heaviside", "step", "1 if x > 0 else 0 (strict: heaviside(0) = 0)", 1, S.step,
                         _call("heaviside"), lambda p, n: p.unary(r"\theta", n),
                         lambda c, n, idx, env: c.sp.Heaviside(c.elem(n.src[0], idx, env), 0), flat, always,
                         lambda c, n, each: {c.comparison_kind(n): each}, lambda xp, x: xp.flag(x > 0, x),
                         "compare", (0,)),
    Op.DELTA: OpSpec("delta", "step", "1 if x == 0 else 0", 1, S.step, _call("delta"),
                     lambda p, n: p.unary(r"\delta", n), lambda c, n, idx, env: c.delta(n, idx, env), flat, always,
                     lambda c, n, each: {c.comparison_kind(n): each}, lambda xp, x: xp.flag(x == 0, x),
                     "compare", (0,)),
    # --- structure
    Op.INDEX: OpSpec("index", "structure", "x[..., e, ...] for an index expression e; arg: the axis", 2,
                     S.index_shape, lambda p, n: p.items(n), lambda p, n: p.items(n),
                     lambda c, n, idx, env: c.index(n, idx, env), first, of_operands, free, axis=lambda n: n.arg),
    Op.SLICE: OpSpec("slice", "structure", "x[..., a:b, ...]; arg: (axis, a, b)", 1, S.slice_shape,
                     lambda p, n: p.items(n), lambda p, n: p.items(n),
                     lambda c, n, idx, env: c.slice(n, idx, env), first, of_operands, free,
                     axis=lambda n: n.arg[0]),
    Op.CAT: OpSpec("cat", "structure", "concatenation along an axis; arg: the axis", None, S.cat_shape,
                   lambda p, n: p.cat(n), lambda p, n: p.cat(n), lambda c, n, idx, env: c.cat(n, idx, env),
                   widest, of_operands, free, axis=lambda n: n.arg),
    Op.SUM: OpSpec("sum", "structure", "sum<lo <= v < hi>(body); arg: v", 1, S.sum_shape,
                   lambda p, n: p.sum(n), lambda p, n: p.sum(n), lambda c, n, idx, env: c.sum(n, idx, env),
                   first, of_operands, lambda c, n, each: {"additions": c.sum_additions(n)}, binds=True),
    Op.STACK: OpSpec("stack", "structure", "[body for v in range(lo, hi)] as a new leading axis; arg: v", 1,
                     S.stack_shape, lambda p, n: p.stack(n), lambda p, n: p.stack(n),
                     lambda c, n, idx, env: c.stack(n, idx, env), first, of_operands, free, binds=True),
    Op.DEF: OpSpec("def", "structure", "a named definition, computed once and shared; arg: the name", 1, S.def_shape,
                   lambda p, n: (p.name_of(n), ATOM), lambda p, n: (p.name(n), ATOM, False),
                   lambda c, n, idx, env: c.define_ref(n, idx), first, of_operands, free),
    # --- reductions
    Op.MEAN: OpSpec("mean", "reduction", "the mean along an axis; arg: the axis", 1, S.reduce_axis("mean"),
                    lambda p, n: p.call("mean", n, f"axis={n.arg}"), lambda p, n: p.reduction(n, "mean"),
                    lambda c, n, idx, env: c.reduce("mean", n, idx, env), first, never,
                    lambda c, n, each: {"additions": each * (c.length(n) - 1), "multiplications": each},
                    lambda xp, x, axis, length=None: xp.mean(x, axis, length), axis=lambda n: n.arg),
    # a value, not a selection: which element is largest is never used, so nothing data-dependent is left
    Op.AMAX: OpSpec("amax", "reduction", "the largest value along an axis; arg: the axis", 1, S.reduce_axis("amax"),
                    lambda p, n: p.call("amax", n, f"axis={n.arg}"), lambda p, n: p.reduction(n, "max"),
                    lambda c, n, idx, env: c.reduce("max", n, idx, env),
                    flat,  # piecewise linear: linear in a feature only where the order of its values is fixed
                    of_operands, lambda c, n, each: {"comparisons": each * (c.length(n) - 1)},
                    lambda xp, x, axis, length=None: xp.amax(x, axis), axis=lambda n: n.arg),
    # --- selections: data-dependent, removed by the rewrite rules
    Op.ARGSORT: _selection("argsort", "the indices of a stable sort of key; arg: descending", 1,
                           S.keyed("argsort", "int"), lambda xp, n, env, key: xp.argsort(key, n.arg), "compare", (0,),
                           **_sorting("argsort", "argsort")),
    Op.RANK: _selection("rank_of", "each key's 0-based stable rank, a permutation; arg: descending", 1,
                        S.keyed("rank_of", "float"),
                        # the rank of token i is its position in the stable order: the inverse permutation
                        lambda xp, n, env, key: xp.to_dtype(xp.argsort(xp.argsort(key, n.arg), False), key.dtype),
                        "compare", (0,), **_sorting("rank_of", r"rank\_of")),
    Op.SORT_BY_KEY: _selection("sort_by_key", "the rows of X in the stable order of key; arg: descending", 2,
                               S.sort_by_key_shape,
                               lambda xp, n, env, X, key: _rows(xp, X, xp.argsort(key, n.arg)), "move", (1,),
                               moved, of_operands, **_sorting("sort_by_key", r"sort\_by\_key")),
    Op.TOPK: _selection("topk", "indices of the k largest keys, largest first, ties to the lower index; arg: k", 1,
                        S.topk_shape, lambda xp, n, env, key: xp.argsort(key, True)[:, :n.arg.value(env)],
                        "compare", (0,), text=lambda p, n: p.call("topk", n, str(n.arg)),
                        latex=lambda p, n: p.call("topk", n, extra=n.arg),
                        sympy=lambda c, n, idx, env: c.function("topk", n, idx, env, extra=n.arg)),
    Op.GATHER: _selection("gather", "X[idx] along the leading axis, for data-dependent indices", 2, S.gather_shape,
                          lambda xp, n, env, X, idx: _rows(xp, X, idx), "move", (1,), moved, of_operands),
    Op.COMPLEMENT: _selection("complement", "the indices in range(n) not in idx, ascending; arg: n", 1,
                              S.complement_shape, _complement, "compare", (0,),
                              text=lambda p, n: p.call("complement", n, str(n.arg)),
                              latex=lambda p, n: p.call("complement", n, extra=n.arg),
                              sympy=lambda c, n, idx, env: c.function("complement", n, idx, env, extra=n.arg)),
    Op.KTH: _selection("kth", "the row of X whose key has stable rank r; arg: descending", 3, S.kth_shape, _kth,
                       "move", (1,), moved, of_operands,
                       text=lambda p, n: p.call("kth_largest" if n.arg else "kth_smallest", n),
                       latex=lambda p, n: p.call(r"kth\_largest" if n.arg else r"kth\_smallest", n),
                       sympy=lambda c, n, idx, env: c.function("kth_largest" if n.arg else "kth_smallest", n, idx,
                                                               env)),
}

SELECTIONS = frozenset(op for op, s in OPS.items() if s.kind == "selection")
