"""Shape rules, one per op (the op table, ops.py, names each op's): `rule(src, arg, what) -> (shape, dtype)`.

A rule raises IRError naming the node and the mismatch; `what()` renders the node being built, for the message
(rendered only on error: printing every node as it is built would cost more than building it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .affine import Affine, IRError, Shape, Sym, bound, provably_negative
from .opcodes import Op

Node = Any  # a node (nodes.py builds nodes with these rules, so this module cannot import it)
What = Callable[[], str]
ShapeRule = Callable[[tuple[Node, ...], Any, What], tuple[Shape, str]]
ONE = Affine((), 1)


def _fmt(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def check_index_range(e: Affine, dim: Affine, where: str) -> None:
    lo, hi = bound(e, upper=False), bound(e, upper=True)
    if provably_negative(lo) or provably_negative(dim - 1 - hi):
        raise IRError(f"index {e} (from {lo} to {hi}) is out of range [0, {dim}) in {where}")


# --- leaves ------------------------------------------------------------------------------------------------
def input_shape(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    return arg[1], "float"


def const_shape(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    return (), ("int" if isinstance(arg, int) else "float")


def affine_shape(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    return (), "int"


# --- elementwise ---------------------------------------------------------------------------------------------
def broadcast(src: tuple[Node, ...], what: What) -> Shape:
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
            raise IRError(f"shapes {_fmt(a)} and {_fmt(b)} do not broadcast in {what()}")
    return tuple(reversed(out))


def integer_arithmetic(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    """+, -, *: integer when both operands are."""
    return broadcast(src, what), ("int" if all(s.dtype == "int" for s in src) else "float")


def division(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    return broadcast(src, what), "float"


def same_shape(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    return src[0].shape, src[0].dtype


def to_float(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    """An elementwise function whose values are floats (exp), whatever its operand's."""
    return src[0].shape, "float"


def step(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    return src[0].shape, "float"


# --- structure ------------------------------------------------------------------------------------------------
def index_shape(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    x, e = src
    if e.op is not Op.AFFINE:
        raise IRError(f"index must be affine in sizes and index variables in {what()}; "
                      "use gather() for data-dependent indices")
    if not 0 <= arg < len(x.shape):
        raise IRError(f"too many indices: axis {arg} of a tensor of rank {len(x.shape)} in {what()}")
    check_index_range(e.arg, x.shape[arg], what())
    return x.shape[:arg] + x.shape[arg + 1:], x.dtype


def slice_shape(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    (x,), (axis, start, stop) = src, arg
    if not 0 <= axis < len(x.shape):
        raise IRError(f"slice axis {axis} out of range for a tensor of rank {len(x.shape)}: {what()}")
    if start.vars or stop.vars:
        raise IRError(f"slice bounds must not depend on index variables: {start}:{stop} in {what()}")
    dim = x.shape[axis]
    if provably_negative(start) or provably_negative(stop - start) or provably_negative(dim - stop):
        raise IRError(f"slice {start}:{stop} out of range for axis {axis} of size {dim} in {what()}")
    return x.shape[:axis] + (stop - start,) + x.shape[axis + 1:], x.dtype


def cat_shape(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    if not src:
        raise IRError("cat needs at least one tensor")
    first = src[0].shape
    for s in src[1:]:
        if len(s.shape) != len(first) or any(a != b for i, (a, b) in enumerate(zip(first, s.shape)) if i != arg):
            raise IRError(f"cat along axis {arg}: shape {_fmt(s.shape)} does not match {_fmt(first)} in {what()}")
    if not 0 <= arg < len(first):
        raise IRError(f"cat axis {arg} out of range for tensors of rank {len(first)}")
    total = first[arg]
    for s in src[1:]:
        total = total + s.shape[arg]
    return first[:arg] + (total,) + first[arg + 1:], src[0].dtype


def _var(name: str, arg: Any) -> Sym:
    if not isinstance(arg, Sym) or arg.kind != "var":
        raise IRError(f"{name} needs an index variable, got {arg!r}")
    return arg


def sum_shape(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    _var("sum", arg)
    return src[0].shape, src[0].dtype


def stack_shape(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    var = _var("stack", arg)
    if var.lo.vars or var.hi.vars:
        raise IRError(f"stack over {var.name} in [{var.lo}, {var.hi}): a stacked range must not depend on "
                      "other index variables")
    return (var.hi - var.lo,) + src[0].shape, src[0].dtype


def def_shape(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    if src[0].free:
        names = ", ".join(sorted(v.name for v in src[0].free))
        raise IRError(f"definition {arg} uses unbound index variable(s) {names}")
    return src[0].shape, src[0].dtype


def reduce_axis(name: str) -> ShapeRule:
    """A reduction over axis `arg`, to a float."""
    def rule(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
        x = src[0]
        if not 0 <= arg < len(x.shape):
            raise IRError(f"{name} axis {arg} out of range for a tensor of rank {len(x.shape)}: {what()}")
        return x.shape[:arg] + x.shape[arg + 1:], "float"
    return rule


# --- selection: the data-dependent ops the rewrites remove ----------------------------------------------------
def _closed(name: str, src: tuple[Node, ...], what: What) -> None:
    for s in src:
        if s.free and s.op is not Op.AFFINE:
            raise IRError(f"{name} needs operands that do not depend on index variables: {what()}")


def _key(name: str, key: Node, what: What) -> None:
    if len(key.shape) != 1 or key.dtype != "float":
        raise IRError(f"{name} key must be a 1-D data vector, got shape {_fmt(key.shape)}: {what()}")


def keyed(name: str, dtype: str) -> ShapeRule:
    """An op of one key vector giving one value per key (argsort: indices; rank_of: counts, used in arithmetic)."""
    def rule(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
        _closed(name, src, what)
        _key(name, src[0], what)
        return src[0].shape, dtype
    return rule


def _rows_by_key(name: str, src: tuple[Node, ...], what: What) -> None:
    _closed(name, src, what)
    x, key = src[0], src[1]
    _key(name, key, what)
    if not x.shape or x.shape[0] != key.shape[0]:
        raise IRError(f"{name}: X has shape {_fmt(x.shape)} but key has {_fmt(key.shape)}; "
                      f"their leading sizes must agree: {what()}")


def sort_by_key_shape(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    _rows_by_key("sort_by_key", src, what)
    return src[0].shape, src[0].dtype


def kth_shape(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    _rows_by_key("kth", src, what)
    e = src[2]
    if e.op is not Op.AFFINE:
        raise IRError(f"kth rank must be an index expression: {what()}")
    check_index_range(e.arg, src[1].shape[0], what())
    return src[0].shape[1:], src[0].dtype


def topk_shape(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    _closed("topk", src, what)
    _key("topk", src[0], what)
    n = src[0].shape[0]
    if arg.vars:
        raise IRError(f"topk size {arg} must not depend on index variables")
    if provably_negative(arg) or provably_negative(n - arg):
        raise IRError(f"topk size {arg} out of range [0, {n}] in {what()}")
    return (arg,), "int"


def _index_vector(name: str, idx: Node, what: What) -> None:
    if idx.dtype != "int" or len(idx.shape) != 1:
        raise IRError(f"{name} needs a 1-D integer index tensor, got shape {_fmt(idx.shape)}: {what()}")


def gather_shape(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    _closed("gather", src, what)
    x, idx = src
    _index_vector("gather", idx, what)
    if not x.shape:
        raise IRError(f"cannot gather from a scalar: {what()}")
    return idx.shape + x.shape[1:], x.dtype


def complement_shape(src: tuple[Node, ...], arg: Any, what: What) -> tuple[Shape, str]:
    _closed("complement", src, what)
    idx = src[0]
    _index_vector("complement", idx, what)
    if provably_negative(arg - idx.shape[0]):
        raise IRError(f"complement in [0, {arg}) of {idx.shape[0]} indices: more indices than the range holds")
    return (arg - idx.shape[0],), "int"
