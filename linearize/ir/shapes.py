"""Shape inference: one checker per op, each raising IRError that names the node and the mismatch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .nodes import Affine, IRError, Node, Op, Shape, Sym, bound

ONE = Affine((), 1)


def _fmt(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _what(op: Op, src: tuple[Node, ...]) -> str:
    from .printing import show
    args = ", ".join(show(s) for s in src)
    return f"{op.name.lower()}({args if len(args) < 100 else args[:97] + '...'})"


def provably_negative(a: Affine) -> bool:
    """True when `a` < 0 for every assignment of sizes >= 1 (a sufficient test, never a false alarm)."""
    return a.const + sum(c for _, c in a.terms) < 0 and all(c <= 0 for _, c in a.terms)


def broadcast(op: Op, src: tuple[Node, ...]) -> Shape:
    a, b = src[0].shape, src[1].shape
    out: list[Affine] = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else ONE
        db = b[-i] if i <= len(b) else ONE
        if da == db or db == ONE:
            out.append(da)
        elif da == ONE:
            out.append(db)
        else:
            raise IRError(f"shapes {_fmt(a)} and {_fmt(b)} do not broadcast in {_what(op, src)}")
    return tuple(reversed(out))


def check_index_range(e: Affine, dim: Affine, where: str) -> None:
    lo, hi = bound(e, upper=False), bound(e, upper=True)
    if provably_negative(lo) or provably_negative(dim - 1 - hi):
        raise IRError(f"index {e} (from {lo} to {hi}) is out of range [0, {dim}) in {where}")


def _elementwise(op: Op, src: tuple[Node, ...], arg: Any) -> tuple[Shape, str]:
    dtype = "int" if all(s.dtype == "int" for s in src) and op is not Op.DIV else "float"
    return broadcast(op, src), dtype


def _unary(op: Op, src: tuple[Node, ...], arg: Any) -> tuple[Shape, str]:
    return src[0].shape, ("float" if op is not Op.NEG else src[0].dtype)


def _index(op: Op, src: tuple[Node, ...], arg: Any) -> tuple[Shape, str]:
    x, e = src
    if e.op is not Op.AFFINE:
        raise IRError(f"index must be affine in sizes and index variables in {_what(op, src)}; "
                      "use gather() for data-dependent indices")
    if not 0 <= arg < len(x.shape):
        raise IRError(f"too many indices: axis {arg} of a tensor of rank {len(x.shape)} in {_what(op, src)}")
    check_index_range(e.arg, x.shape[arg], _what(op, src))
    return x.shape[:arg] + x.shape[arg + 1:], x.dtype


def _slice(op: Op, src: tuple[Node, ...], arg: Any) -> tuple[Shape, str]:
    (x,), (axis, start, stop) = src, arg
    if not 0 <= axis < len(x.shape):
        raise IRError(f"slice axis {axis} out of range for a tensor of rank {len(x.shape)}: {_what(op, src)}")
    if start.vars or stop.vars:
        raise IRError(f"slice bounds must not depend on index variables: {start}:{stop} in {_what(op, src)}")
    dim = x.shape[axis]
    if provably_negative(start) or provably_negative(stop - start) or provably_negative(dim - stop):
        raise IRError(f"slice {start}:{stop} out of range for axis {axis} of size {dim} in {_what(op, src)}")
    return x.shape[:axis] + (stop - start,) + x.shape[axis + 1:], x.dtype


def _cat(op: Op, src: tuple[Node, ...], arg: Any) -> tuple[Shape, str]:
    if not src:
        raise IRError("cat needs at least one tensor")
    first = src[0].shape
    for s in src[1:]:
        if len(s.shape) != len(first) or any(a != b for i, (a, b) in enumerate(zip(first, s.shape)) if i != arg):
            raise IRError(f"cat along axis {arg}: shape {_fmt(s.shape)} does not match {_fmt(first)} "
                          f"in {_what(op, src)}")
    if not 0 <= arg < len(first):
        raise IRError(f"cat axis {arg} out of range for tensors of rank {len(first)}")
    total = first[arg]
    for s in src[1:]:
        total = total + s.shape[arg]
    return first[:arg] + (total,) + first[arg + 1:], src[0].dtype


def _binder(op: Op, src: tuple[Node, ...], arg: Any) -> tuple[Shape, str]:
    var: Sym = arg
    if not isinstance(var, Sym) or var.kind != "var":
        raise IRError(f"{op.name.lower()} needs an index variable, got {var!r}")
    if op is Op.SUM:
        return src[0].shape, src[0].dtype
    if var.lo.vars or var.hi.vars:
        raise IRError(f"stack over {var.name} in [{var.lo}, {var.hi}): a stacked range must not depend on "
                      "other index variables")
    return (var.hi - var.lo,) + src[0].shape, src[0].dtype


def _def(op: Op, src: tuple[Node, ...], arg: Any) -> tuple[Shape, str]:
    if src[0].free:
        names = ", ".join(sorted(v.name for v in src[0].free))
        raise IRError(f"definition {arg} uses unbound index variable(s) {names}")
    return src[0].shape, src[0].dtype


def _mean(op: Op, src: tuple[Node, ...], arg: Any) -> tuple[Shape, str]:
    x = src[0]
    if not 0 <= arg < len(x.shape):
        raise IRError(f"mean axis {arg} out of range for a tensor of rank {len(x.shape)}: {_what(op, src)}")
    return x.shape[:arg] + x.shape[arg + 1:], "float"


def _closed(op: Op, src: tuple[Node, ...]) -> None:
    for s in src:
        if s.free and s.op is not Op.AFFINE:
            raise IRError(f"{op.name.lower()} needs operands that do not depend on index variables: {_what(op, src)}")


def _key(op: Op, key: Node, src: tuple[Node, ...]) -> None:
    if len(key.shape) != 1 or key.dtype != "float":
        raise IRError(f"{op.name.lower()} key must be a 1-D data vector, got shape {_fmt(key.shape)}: {_what(op, src)}")


def _argsort(op: Op, src: tuple[Node, ...], arg: Any) -> tuple[Shape, str]:
    _closed(op, src)
    _key(op, src[0], src)
    return src[0].shape, "int"


def _rank(op: Op, src: tuple[Node, ...], arg: Any) -> tuple[Shape, str]:
    _closed(op, src)
    _key(op, src[0], src)
    return src[0].shape, "float"  # a count, used in arithmetic like num_greater


def _sort_by_key(op: Op, src: tuple[Node, ...], arg: Any) -> tuple[Shape, str]:
    _closed(op, src)
    x, key = src[0], src[1]
    _key(op, key, src)
    if not x.shape or x.shape[0] != key.shape[0]:
        raise IRError(f"sort_by_key: X has shape {_fmt(x.shape)} but key has {_fmt(key.shape)}; "
                      f"their leading sizes must agree: {_what(op, src)}")
    if op is Op.KTH:
        e = src[2]
        if e.op is not Op.AFFINE:
            raise IRError(f"kth rank must be an index expression: {_what(op, src)}")
        check_index_range(e.arg, key.shape[0], _what(op, src))
        return x.shape[1:], x.dtype
    return x.shape, x.dtype


def _topk(op: Op, src: tuple[Node, ...], arg: Any) -> tuple[Shape, str]:
    _closed(op, src)
    _key(op, src[0], src)
    n = src[0].shape[0]
    if arg.vars:
        raise IRError(f"topk size {arg} must not depend on index variables")
    if provably_negative(arg) or provably_negative(n - arg):
        raise IRError(f"topk size {arg} out of range [0, {n}] in {_what(op, src)}")
    return (arg,), "int"


def _gather(op: Op, src: tuple[Node, ...], arg: Any) -> tuple[Shape, str]:
    _closed(op, src)
    x, idx = src
    if idx.dtype != "int" or len(idx.shape) != 1:
        raise IRError(f"gather needs a 1-D integer index tensor, got shape {_fmt(idx.shape)}: {_what(op, src)}")
    if not x.shape:
        raise IRError(f"cannot gather from a scalar: {_what(op, src)}")
    return idx.shape + x.shape[1:], x.dtype


def _complement(op: Op, src: tuple[Node, ...], arg: Any) -> tuple[Shape, str]:
    _closed(op, src)
    idx = src[0]
    if idx.dtype != "int" or len(idx.shape) != 1:
        raise IRError(f"complement needs a 1-D integer index tensor, got shape {_fmt(idx.shape)}")
    if provably_negative(arg - idx.shape[0]):
        raise IRError(f"complement in [0, {arg}) of {idx.shape[0]} indices: more indices than the range holds")
    return (arg - idx.shape[0],), "int"


def _leaf(op: Op, src: tuple[Node, ...], arg: Any) -> tuple[Shape, str]:
    if op is Op.INPUT:
        return arg[1], "float"
    if op is Op.AFFINE:
        return (), "int"
    return (), ("int" if isinstance(arg, int) else "float")


RULES: dict[Op, Callable[[Op, tuple[Node, ...], Any], tuple[Shape, str]]] = {
    Op.INPUT: _leaf, Op.CONST: _leaf, Op.AFFINE: _leaf,
    **{op: _elementwise for op in (Op.ADD, Op.SUB, Op.MUL, Op.DIV)},
    **{op: _unary for op in (Op.NEG, Op.HEAVISIDE, Op.DELTA)},
    Op.INDEX: _index, Op.SLICE: _slice, Op.CAT: _cat, Op.SUM: _binder, Op.STACK: _binder,
    Op.DEF: _def, Op.MEAN: _mean, Op.ARGSORT: _argsort, Op.SORT_BY_KEY: _sort_by_key, Op.KTH: _sort_by_key,
    Op.RANK: _rank, Op.TOPK: _topk, Op.GATHER: _gather, Op.COMPLEMENT: _complement,
}


def infer(op: Op, src: tuple[Node, ...], arg: Any) -> tuple[Shape, str]:
    return RULES[op](op, src, arg)
