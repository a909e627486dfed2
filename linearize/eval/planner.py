"""The planner: a program at concrete sizes becomes a fixed list of vectorized steps, built once.

`Planner` walks the program once per concrete size environment (with the batch size and dtype). Every node
gets a `Meta`, its static layout -- a leading batch axis (B, or 1 for a value that does not depend on the
inputs), one axis per free index variable, then the node's own shape -- and a step computing it from its
operands. A node is first offered to the strategies it was given (the table in strategies.py), which plan a
recognized pattern without its generic intermediates; a node no strategy takes gets its generic step (the
builder it was given: generic.py, the one semantics every strategy must reproduce). Steps whose operands are
all known while planning (index arrays, masks, constants) are computed then, once.

The result is a `Plan` (plan.py), which runs the steps and nothing else. The planner imports neither the
generic steps nor the strategies: compiled.py hands them in, so no import cycle runs through here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from ..ir import Affine, InputError, Node, Op, Sym, bound, show
from .backends import Backend
from .plan import Meta, Plan, Step, reshaper

# a strategy's or the generic step's answer for a node: the operands to plan first, then the builder
Choice = tuple[list[Node], Callable[["Planner"], int]]
MODES = ("oblivious", "sort", "generic")


class Strategy(Protocol):
    name: str

    def match(self, P: Planner, n: Node) -> Choice | None: ...


# --- index expressions at concrete sizes ----------------------------------------------------------------
def sort_axes(axes: Iterable[Sym]) -> tuple[Sym, ...]:
    """Index variables in the order their axes are laid out."""
    return tuple(sorted(set(axes), key=Sym.sort_key))


def widest_range(v: Sym, env: Mapping[Sym, int]) -> tuple[int, int]:
    """The widest [lo, hi) a variable takes over its outer variables' ranges."""
    lo = bound(v.lo, upper=False).value(env)
    hi = bound(v.hi, upper=True).value(env)
    return lo, max(lo, hi)


def affine_array(xp: Backend, env: Mapping[Sym, int], a: Affine,
                 extent: Callable[[Sym], tuple[int, int]]) -> tuple[Any, tuple[Sym, ...]]:
    """An index expression as an int64 array of shape (1, *one axis per variable), and those variables."""
    axes = sort_axes(a.vars)
    out: Any = xp.asarray(a.const + sum(c * env[s] for s, c in a.terms if s.kind == "size"),
                          xp.int_dtype).reshape((1,) + (1,) * len(axes))
    for pos, v in enumerate(axes):
        lo, hi = extent(v)
        shape = [1] * (1 + len(axes))
        shape[1 + pos] = hi - lo
        out = out + xp.arange(lo, hi).reshape(tuple(shape)) * a.coeff(v)
    return out, axes


class Planner:
    """Builds the Plan of one root at concrete sizes: `Planner(...).plan(root)`."""

    def __init__(self, backend: Backend, env: Mapping[Sym, int], batch: int, dtype: Any,
                 strategies: Sequence[Strategy], generic: Callable[[Node], Choice], mode: str = "oblivious",
                 checked: frozenset[Node] | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown strategy {mode!r}; choose one of {', '.join(MODES)}")
        self.xp, self.env, self.batch, self.dtype = backend, dict(env), batch, dtype
        self.mode = mode
        # the inputs and views of inputs the call checks finite (ir/reads.py); None: every input, whole
        self.checked = checked
        self.oblivious = mode != "sort"  # kernels whose operations do not depend on the values
        self.strategies = tuple(strategies) if mode != "generic" else ()
        self.generic = generic
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

    def is_checked(self, n: Node) -> bool:
        """Is this input, or view of an input, checked finite by the call (so finite for certain)?"""
        return n in self.checked if self.checked is not None else n.op is Op.INPUT

    def layout(self, n: Node, batch: int, kind: str = "float") -> Meta:
        """The layout the generic steps give a node: its free variables' axes, then its own shape."""
        axes = sort_axes(n.free)
        return Meta(axes, tuple(self.size(a) for a in axes), self.own(n), batch, kind)

    def affine(self, a: Affine) -> tuple[Any, tuple[Sym, ...]]:
        """An index expression as an int64 array (1, *one axis per variable), computed once."""
        if a not in self._affines:
            self._affines[a] = affine_array(self.xp, self.env, a, self.extent)
        return self._affines[a]

    def check_range(self, e: Affine, n: int, where: Node) -> None:
        """An InputError unless every value of e lies in [0, n)."""
        lo, hi = bound(e, upper=False).value(self.env), bound(e, upper=True).value(self.env)
        if lo < 0 or hi >= n:
            sizes = ", ".join(f"{s.name} = {v}" for s, v in sorted(self.env.items(), key=lambda t: t[0].name))
            raise InputError(f"index {e} takes values {lo}..{hi}, outside [0, {n}), in `{show(where)}` ({sizes})")

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
                batch, own = (shape[0], shape[1:]) if shape else (1, ())  # a contraction's operand may be 0-d
                out.append(self.constant(self.consts[s].reshape(shape), Meta((), (), own, batch, m.kind, m.finite)))
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

    def _fold_reshapes(self, steps: list[Step], outs: tuple[int, ...]) -> list[Step]:
        """A reshape of a value nothing else uses, made by a step ending in a reshape: that step reshapes once.

        At B=1 each torch call costs microseconds; this is how a sum stacked into a unit axis (the fused
        token) comes out of its matrix product already in shape.
        """
        uses: dict[int, int] = dict.fromkeys(outs, 1)
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
        for strategy in self.strategies:
            hit = strategy.match(self, n)
            if hit is not None:
                return strategy.name, hit
        return "generic", self.generic(n)

    def plan(self, root: Node | tuple[Node, ...]) -> Plan:
        """The plan computing root, or a tuple of roots (a program's several outputs) sharing their steps."""
        roots = root if isinstance(root, tuple) else (root,)
        chosen: dict[Node, tuple[str, Choice]] = {}
        order: list[Node] = []
        stack: list[tuple[Node, bool]] = [(r, False) for r in reversed(roots)]
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
        outs = tuple(self.home[self.slots[r]] for r in roots)
        out = outs if isinstance(root, tuple) else outs[0]
        needed, steps = set(outs), []
        for step in reversed(self.steps):  # drop steps nothing uses (views taken directly from their source)
            if step.out in needed:
                steps.append(step)
                needed.update(step.ins)
        steps = self._fold_reshapes(steps[::-1], outs)
        return Plan(steps, self.metas, self.consts, self.inputs, out, self.strategy, self.internal,
                    self.xp.broadcast_to, self.batch, self.mode)
