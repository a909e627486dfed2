"""Planned evaluation: a program at concrete sizes becomes a fixed list of vectorized steps, built once.

`Planner` walks the program once per concrete size environment (with the batch size and dtype). Every node
gets a `Meta`, its static layout -- a leading batch axis (B, or 1 for a value that does not depend on the
inputs), one axis per free index variable, then the node's own shape -- and a step computing it from its
operands. A node is first offered to the strategies (strategies.py), which recognize contractions and
comparison counts and plan them without their generic intermediates; a node no strategy takes is planned
generically (planops.py), computing what the generic evaluator (generic.py) computes. Steps whose operands are
all known while planning (index arrays, masks, constants) are computed then, once.

The result is a `Plan` (plan.py), which runs the steps and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..ir import Affine, Node, Op, Sym
from .backends import Backend
from .generic import affine_array, check_index_range, sort_axes, widest_range
from .plan import Meta, Plan, Step, reshaper

# a strategy's or the generic planner's answer for a node: the operands to plan first, then the builder
Choice = tuple[list[Node], Callable[["Planner"], int]]
Strategy = Callable[["Planner", Node], "Choice | None"]


class Planner:
    """Builds the Plan of one root at concrete sizes: `Planner(...).plan(root)`."""

    def __init__(self, backend: Backend, env: Mapping[Sym, int], batch: int, dtype: Any,
                 strategies: Sequence[tuple[str, Strategy]], generic: Callable[[Node], Choice]):
        """`strategies` are tried in order on each node (strategies.py); `generic` plans a node none takes
        (planops.py). They are passed in because they build on this class."""
        self.xp, self.env, self.batch, self.dtype = backend, dict(env), batch, dtype
        self.strategies, self.generic = strategies, generic
        self.slots: dict[Node, int] = {}
        self.metas: list[Meta] = []
        self.home: list[int] = []  # the runtime slot holding each slot's array (itself, or the one it aliases)
        self.consts: dict[int, Any] = {}
        self.inputs: dict[str, int] = {}
        self.steps: list[Step] = []
        self.strategy: dict[Node, str] = {}
        self.internal = 0
        self._extents: dict[Sym, tuple[int, int]] = {}
        self._affines: dict[Affine, tuple[Any, tuple[Sym, ...]]] = {}
        self._values: dict[Node, int] = {}
        self.orders: dict[int, int] = {}  # a stable rank's runtime slot -> the slot of the sort it inverts
        self.views: dict[int, tuple[int, tuple]] = {}  # a view's runtime slot -> (the array it views, the key)
        self.flags: dict[int, int] = {}  # a 0/1 float slot -> the boolean slot it was converted from
        self.tails: dict[int, tuple[Callable[..., Any], tuple[int, ...]]] = {}  # see emit
        self.reshapes: dict[int, tuple[int, ...]] = {}  # a slot made by `reshape` -> its shape
        self._current: tuple[Node | None, str] = (None, "generic")

    # --- static facts at these sizes -----------------------------------------------------------------
    def extent(self, v: Sym) -> tuple[int, int]:
        """The widest [lo, hi) a variable takes over its outer variables' ranges."""
        if v not in self._extents:
            self._extents[v] = widest_range(v, self.env)
        return self._extents[v]

    def size(self, v: Sym) -> int:
        lo, hi = self.extent(v)
        return hi - lo

    def own(self, n: Node) -> tuple[int, ...]:
        return tuple(d.value(self.env) for d in n.shape)

    def layout(self, n: Node, batch: int, kind: str = "float") -> Meta:
        """The layout the evaluator gives a node: its free variables' axes, then its own shape."""
        axes = sort_axes(n.free)
        return Meta(axes, tuple(self.size(a) for a in axes), self.own(n), batch, kind)

    def affine(self, a: Affine) -> tuple[Any, tuple[Sym, ...]]:
        """An index expression as an int64 array (1, *one axis per variable), computed once."""
        if a not in self._affines:
            self._affines[a] = affine_array(self.xp, self.env, a, self.extent)
        return self._affines[a]

    def check_range(self, e: Affine, n: int, where: Node) -> None:
        check_index_range(self.env, e, n, where)

    # --- slots and steps -------------------------------------------------------------------------------
    def new(self, meta: Meta) -> int:
        self.metas.append(meta)
        self.home.append(len(self.home))
        return len(self.metas) - 1

    def alias(self, s: int, meta: Meta) -> int:
        """A slot holding the same array as `s`, laid out as `meta` says (a layout change with no data change)."""
        self.metas.append(meta)
        self.home.append(self.home[s])
        t = len(self.metas) - 1
        if s in self.consts:
            self.consts[t] = self.consts[s]
        return t

    def constant(self, value: Any, meta: Meta) -> int:
        s = self.new(meta)
        self.consts[s] = value
        return s

    def shaped(self, ins: list[int], shapes: list[tuple[int, ...]]) -> tuple[list[int], list[Callable | None]]:
        """The operands laid out as `shapes`: a constant is reshaped now, once; the others get a reshape to apply."""
        out, fns = [], []
        for s, shape in zip(ins, shapes):
            m = self.metas[s]
            if m.shape == shape or s not in self.consts:
                out.append(s)
                fns.append(reshaper(m.shape, shape))
            else:
                out.append(self.constant(self.consts[s].reshape(shape), Meta((), (), shape[1:], shape[0], m.kind,
                                                                              m.finite)))
                fns.append(None)
        return out, fns

    def emit(self, fn: Callable[..., Any], ins: list[int], meta: Meta,
             tail: tuple[Callable[..., Any], tuple[int, ...]] | None = None) -> int:
        """A step computing a new slot from `ins`; computed now if every operand is already known.

        `tail` = (inner, shape) says that fn is inner's result, of that shape, reshaped to meta's: a reshape
        of this slot then replaces fn's own (`reshape`).
        """
        if all(i in self.consts for i in ins):
            return self.constant(fn(*(self.consts[i] for i in ins)), meta)
        s = self.new(meta)
        node, strategy = self._current
        self.steps.append(Step(fn, tuple(self.home[i] for i in ins), s, node, strategy))
        if tail is not None:
            self.tails[s] = tail
        return s

    def reshape(self, s: int, meta: Meta) -> int:
        """s's array reshaped to meta's shape (same elements, same order)."""
        shape = meta.shape
        out = self.emit(lambda a: a.reshape(shape), [s], meta)
        self.reshapes[out] = shape
        return out

    def _fold_reshapes(self, steps: list[Step], out: int) -> list[Step]:
        """A reshape of a value nothing else uses, made by a step ending in a reshape: that step reshapes once.

        At B=1 each torch call costs microseconds; this is how a sum stacked into a unit axis (the fused
        token) comes out of its matrix product already in shape.
        """
        uses: dict[int, int] = {out: 1}
        for st in steps:
            for i in st.ins:
                uses[i] = uses.get(i, 0) + 1
        made = {st.out: k for k, st in enumerate(steps)}
        kept: list[Step | None] = list(steps)
        for k, st in enumerate(steps):
            shape, src = self.reshapes.get(st.out), st.ins[0]
            if shape is None or src not in self.tails or uses.get(src) != 1 or src not in made:
                continue
            inner, natural = self.tails[src]
            fn = inner if natural == shape else (lambda *a, f=inner, t=shape: f(*a).reshape(t))
            at = made[src]
            kept[at], kept[k] = replace(steps[at], fn=fn, out=st.out), None
            made[st.out], self.tails[st.out] = at, (inner, natural)
        return [st for st in kept if st is not None]

    def note(self, elements: int) -> None:
        """Record an array a step builds inside itself, for `Plan.largest`."""
        self.internal = max(self.internal, elements)

    def value(self, n: Node) -> int:
        """A node's slot as data: index expressions are cast to the evaluation's float dtype."""
        s = self.slots[n]
        if n.dtype != "int" or n.op is not Op.AFFINE:
            return s
        if n not in self._values:
            m = self.metas[s]
            self._values[n] = self.constant(self.xp.to_dtype(self.consts[s], self.dtype),
                                            replace(m, kind="float"))
        return self._values[n]

    # --- planning --------------------------------------------------------------------------------------
    def choose(self, n: Node) -> tuple[str, Choice]:
        for name, match in self.strategies:
            hit = match(self, n)
            if hit is not None:
                return name, hit
        return "generic", self.generic(n)

    def plan(self, root: Node) -> Plan:
        chosen: dict[Node, tuple[str, Choice]] = {}
        order: list[Node] = []
        stack: list[tuple[Node, bool]] = [(root, False)]
        while stack:  # depth first, operands before users, without recursion
            n, expanded = stack.pop()
            if expanded:
                order.append(n)
                continue
            if n in chosen:
                continue
            chosen[n] = self.choose(n)
            stack.append((n, True))
            stack.extend((s, False) for s in reversed(chosen[n][1][0]) if s not in chosen)
        for n in order:
            if n in self.slots:
                continue
            name, (_, build) = chosen[n]
            self._current = (n, name)
            self.slots[n] = build(self)
            self.strategy[n] = "constant" if self.slots[n] in self.consts else name
        out = self.home[self.slots[root]]
        needed, steps = {out}, []
        for step in reversed(self.steps):  # drop steps nothing uses (views taken directly from their source)
            if step.out in needed:
                steps.append(step)
                needed.update(step.ins)
        steps = self._fold_reshapes(steps[::-1], out)
        return Plan(steps, self.metas, self.consts, self.inputs, out, self.strategy, self.internal,
                    self.xp.broadcast_to, self.batch)
