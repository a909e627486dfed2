"""The Python builder: write a pruning program close to the hand derivation's pseudo-code.

    N, C, k = sizes("N C k")
    X = tensor("X", N + 1, C)
    i, j = index("i", N), index("j", N)
    num_greater = define("num_greater", i, sum_over(j, heaviside(key[j] - key[i])))
"""

from __future__ import annotations

from .affine import Affine, IRError, Sym
from .nodes import Node, affine, node
from .opcodes import Op
from .printing import show

Operand = Node | int | float


def lift(x: Operand) -> Node:
    """Python ints become index expressions, floats constants."""
    if isinstance(x, Node):
        return x
    if isinstance(x, bool):
        raise IRError(f"booleans are not values in the IR: {x!r}")
    if isinstance(x, int):
        return affine(x)
    if isinstance(x, float):
        return node(Op.CONST, (), x)
    raise IRError(f"cannot use {x!r} ({type(x).__name__}) in a program")


def as_affine(x: Operand | Affine) -> Affine:
    if isinstance(x, Affine):
        return x
    n = lift(x)
    if n.op is not Op.AFFINE:
        raise IRError(f"expected an index expression (affine in sizes and index variables), got `{show(n)}`")
    return n.arg


def _arith(op: Op, a: Operand, b: Operand) -> Node:
    a, b = lift(a), lift(b)
    if a.op is Op.AFFINE and b.op is Op.AFFINE:
        # integer index arithmetic stays in canonical affine form
        if op is Op.ADD:
            return affine(a.arg + b.arg)
        if op is Op.SUB:
            return affine(a.arg - b.arg)
        if op is Op.MUL and (a.arg.is_const or b.arg.is_const):
            c, e = (a.arg, b.arg) if a.arg.is_const else (b.arg, a.arg)
            return affine(e.scale(c.const))
    return node(op, (a, b))


def _neg(a: Node) -> Node:
    return affine(-a.arg) if a.op is Op.AFFINE else node(Op.NEG, (a,))


def _getitem(x: Node, key: object) -> Node:
    items = key if isinstance(key, tuple) else (key,)
    if items and items[0] is None:
        return stack_over(_fresh_unit(), _getitem(x, items[1:]) if len(items) > 1 else x)
    axis = 0
    out = x
    for item in items:
        if axis >= len(out.shape):
                raise IRError(f"too many indices {key!r} for `{show(x)}` of rank {len(x.shape)}")
        if isinstance(item, slice):
            if item.step not in (None, 1):
                raise IRError(f"slices with a step are not supported: {item}")
            start = as_affine(0 if item.start is None else item.start)
            stop = out.shape[axis] if item.stop is None else as_affine(item.stop)
            for bound in (start, stop):
                if bound.is_const and bound.const < 0:
                    raise IRError(f"negative slice bounds are not supported: {item}")
            if not (start == Affine() and stop == out.shape[axis]):
                out = node(Op.SLICE, (out,), (axis, start, stop))
            axis += 1
        elif item is None:
            raise IRError("a new axis (None) is only supported first: x[None]")
        else:
            e = as_affine(item)
            if e.is_const and e.const < 0:
                raise IRError(f"negative indices are not supported: {item}")
            out = node(Op.INDEX, (out, affine(e)), axis)
    return out


def _fresh_unit() -> Sym:
    return Sym("_", "var", Affine(), Affine((), 1))


for _name, _op in (("add", Op.ADD), ("sub", Op.SUB), ("mul", Op.MUL), ("truediv", Op.DIV)):
    setattr(Node, f"__{_name}__", lambda a, b, _op=_op: _arith(_op, a, b))
    setattr(Node, f"__r{_name}__", lambda a, b, _op=_op: _arith(_op, b, a))
Node.__neg__ = _neg  # type: ignore[method-assign]
Node.__getitem__ = _getitem  # type: ignore[attr-defined]
Node.mean = lambda self, axis=0: mean(self, axis)  # type: ignore[attr-defined]


def size(name: str) -> Node:
    """A size symbol such as N, C, H or k."""
    return affine(Sym(name, "size"))


def sizes(names: str) -> tuple[Node, ...]:
    """Several size symbols at once: N, C, H, k = sizes("N C H k")."""
    return tuple(size(n) for n in names.split())


def index(name: str, start: Operand, stop: Operand | None = None) -> Node:
    """An index variable over range(stop) or range(start, stop); bounds may use outer variables."""
    lo, hi = (Affine(), as_affine(start)) if stop is None else (as_affine(start), as_affine(stop))
    return affine(Sym(name, "var", lo, hi))


def _var(i: Node) -> Sym:
    a = as_affine(i)
    if len(a.terms) != 1 or a.const or a.terms[0][1] != 1 or a.terms[0][0].kind != "var":
        raise IRError(f"expected an index variable made by index(), got `{a}`")
    return a.terms[0][0]


def tensor(name: str, *shape: Operand) -> Node:
    """A program input of the given symbolic shape."""
    return node(Op.INPUT, (), (name, tuple(as_affine(d) for d in shape)))


def const(value: float) -> Node:
    """A number as a node (plain Python numbers in arithmetic become constants by themselves)."""
    return node(Op.CONST, (), float(value))


def heaviside(x: Operand) -> Node:
    """1 if x > 0 else 0: strict, heaviside(0) = 0."""
    return node(Op.HEAVISIDE, (lift(x),))


def delta(x: Operand) -> Node:
    """1 if x == 0 else 0."""
    return node(Op.DELTA, (lift(x),))


def sum_over(i: Node, body: Operand) -> Node:
    """sum<i>(body): the sum of body over the index variable's range."""
    body, var = lift(body), _var(i)
    if var not in body.free:  # almost always a typo, like sum<j>(key[i]) for sum<j>(key[j])
        raise IRError(f"sum over {var.name} of `{show(body)}`, which does not use {var.name}")
    return node(Op.SUM, (body,), var)


def stack_over(r: Node | Sym, body: Operand) -> Node:
    """[body for r in range(...)]: a new leading axis indexed by r."""
    return node(Op.STACK, (lift(body),), r if isinstance(r, Sym) else _var(r))


def define(name: str, i_or_value: Operand, body: Operand | None = None) -> Node:
    """A named definition, computed once: define("s", value) or define("num_greater", i, body)."""
    value = lift(i_or_value) if body is None else stack_over(i_or_value, body)  # type: ignore[arg-type]
    return node(Op.DEF, (value,), name)


def cat(*parts: Node, axis: int = 0) -> Node:
    """Concatenation along an axis: cat(x[0:1], kept, fused[None]) stacks rows."""
    return node(Op.CAT, tuple(parts), axis)


def exp(x: Operand) -> Node:
    """e ** x, elementwise (a softmax is exp(s - amax(s)) / sum(exp(s - amax(s))))."""
    return node(Op.EXP, (lift(x),))


def mean(x: Node, axis: int = 0) -> Node:
    """The mean along an axis: mean(attn[:, 0, 1:], axis=0) is the head mean of the CLS attention."""
    return node(Op.MEAN, (x,), axis)


def amax(x: Node, axis: int = 0) -> Node:
    """The largest value along an axis (a value: which element is largest is not used)."""
    return node(Op.AMAX, (x,), axis)


def argsort(key: Node, descending: bool = False) -> Node:
    """Stable: among equal keys the lower index comes first."""
    return node(Op.ARGSORT, (key,), bool(descending))


def sort_by_key(X: Node, key: Node, descending: bool = False) -> Node:
    """The rows of X ordered by key, stably."""
    return node(Op.SORT_BY_KEY, (X, key), bool(descending))


def rank_of(key: Node, descending: bool = False) -> Node:
    """Each key's 0-based stable rank (ties: lower index first): a permutation of range(n)."""
    return node(Op.RANK, (key,), bool(descending))


def topk(key: Node, k: Operand) -> Node:
    """Indices of the k largest keys, largest first, ties to the lower index."""
    return node(Op.TOPK, (key,), as_affine(k))


def gather(X: Node, idx: Node) -> Node:
    """X[idx] along the leading axis, for a data-dependent integer index tensor."""
    return node(Op.GATHER, (X, idx))


def complement(idx: Node, n: Operand) -> Node:
    """The indices in range(n) not in idx, ascending (EViT's complement_idx)."""
    return node(Op.COMPLEMENT, (idx,), as_affine(n))


def sort_indices(idx: Node, n: Operand) -> Node:
    """idx sorted ascending (torch.sort(idx).values), for distinct indices in range(n): the indices not in the
    complement of idx, which complement lists ascending."""
    return complement(complement(idx, n), n)


def kth_largest(X: Node, key: Node, r: Operand) -> Node:
    """The row of X whose key has 0-based stable descending rank r."""
    return node(Op.KTH, (X, key, lift(r)), True)


def kth_smallest(X: Node, key: Node, r: Operand) -> Node:
    """The row of X whose key has 0-based stable ascending rank r."""
    return node(Op.KTH, (X, key, lift(r)), False)
