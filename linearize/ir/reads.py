"""What a program reads of each input, at concrete sizes: the input check tests only that for finiteness.

A value the program never reads cannot change its output, so a NaN there is no error: EViT reads
`attn[:, 0, 1:]`, 1/197 of the attention at ViT-B/16, and testing all of it cost a quarter of a call. An input
reaches its consumers through static views (a slice with fixed bounds, an index with a fixed position, chained);
each view some consumer reads as a value (anything but a further static view, or a returned value) is read whole.
An input read at a position that varies (`x[i + 1]` in a sum over i) or directly is read whole.

`compile`'s calls and `to_module`'s input check test these views. The plans rely on it: an input's value is
finite for certain only where it is read whole, and a read view is finite where it is read
(`Planner(checked=...)`); a strategy that touches more of an input than the program reads (the rows product
multiplies every row of x) asks for the input read whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .affine import IRError, Sym
from .nodes import Node
from .opcodes import Op

Key = tuple[Any, ...]  # a basic-indexing key of the batched array: (slice(None), int | slice per axis)


def _step(view: Node, env: Mapping[Sym, int], axes: list[int], entries: list[Any]) -> bool:
    """Apply the static view `view` to (axes, entries) in place; False when it is not static at these sizes."""
    try:
        if view.op is Op.SLICE:
            axis, a, b = view.arg[0], view.arg[1].value(env), view.arg[2].value(env)
            k = axes[axis]
            start, stop = entries[k].start, entries[k].stop
            if not 0 <= a <= b <= stop - start:
                return False  # out of range: the plan names it
            entries[k] = slice(start + a, start + b)
            return True
        if view.op is Op.INDEX and not view.src[1].free:
            axis, e = view.arg, view.src[1].arg.value(env)
            k = axes[axis]
            start, stop = entries[k].start, entries[k].stop
            if not 0 <= e < stop - start:
                return False
            entries[k] = start + e
            del axes[axis]
            return True
    except (IRError, KeyError, AttributeError, IndexError):  # an index variable, not a size: the position varies
        return False
    return False


def read_views(roots: Iterable[Node], inputs: Iterable[Node],
               env: Mapping[Sym, int]) -> dict[Node, list[tuple[Node, Key]]]:
    """For each input node, the views of it that the roots read, each with its key into the batched array;
    [(input, whole key)] when it is read whole, [] when it is not read."""
    roots = tuple(roots)
    users: dict[Node, list[Node]] = {}
    for n in {m for r in roots for m in r.toposort()}:
        for s in n.src:
            users.setdefault(s, []).append(n)
    out: dict[Node, list[tuple[Node, Key]]] = {}
    for x in inputs:
        shape = tuple(d.value(env) for d in x.arg[1]) if _static_shape(x, env) else None
        whole: Key = (slice(None),) * (1 + len(x.arg[1]))
        if shape is None:
            out[x] = [(x, whole)] if x in users or x in roots else []
            continue
        found: list[tuple[Node, Key]] = []
        todo: list[tuple[Node, list[int], list[Any]]] = [(x, list(range(len(shape))), [slice(0, d) for d in shape])]
        seen: set[Node] = set()
        while todo:
            v, axes, entries = todo.pop()
            if v in seen:
                continue
            seen.add(v)
            read = v in roots
            for u in users.get(v, []):
                if u.src[0] is v and u.op in (Op.SLICE, Op.INDEX):
                    a, e = list(axes), list(entries)
                    if _step(u, env, a, e):
                        todo.append((u, a, e))
                        continue
                read = True
            if read:
                found.append((v, (slice(None), *entries)))
        if any(v is x for v, _ in found) or sum(_size(k) for _, k in found) >= math.prod(shape):
            found = [(x, whole)] if found else []
        out[x] = found
    return out


def named_reads(views: dict[Node, list[tuple[Node, Key]]],
                env: Mapping[Sym, int]) -> tuple[tuple[str, Key | None, str], ...]:
    """read_views' result as (input name, key, the view as text) per view read; key None and text "" where the
    input is read whole."""
    def shape(x: Node) -> tuple[int, ...]:
        return tuple(d.value(env) for d in x.arg[1])
    return tuple((x.arg[0], None, "") if v is x else (x.arg[0], key, key_text(key, shape(x)))
                 for x, found in views.items() for v, key in found)


def _static_shape(x: Node, env: Mapping[Sym, int]) -> bool:
    try:
        return all(d.value(env) >= 0 for d in x.arg[1])
    except (IRError, KeyError, AttributeError):
        return False


def _size(key: Key) -> int:
    return math.prod(e.stop - e.start for e in key[1:] if isinstance(e, slice))


def key_text(key: Key, shape: tuple[int, ...]) -> str:
    """[:, :, 0, 1:] for (slice(None), slice(0, H), 0, slice(1, n)) of a [B, H, n, n] array, as it is indexed."""
    def one(e: Any, dim: int | None) -> str:
        if isinstance(e, int):
            return str(e)
        start = "" if not e.start else str(e.start)
        stop = "" if e.stop is None or e.stop == dim else str(e.stop)
        return f"{start}:{stop}"
    return "[" + ", ".join(one(e, d) for e, d in zip(key, (None, *shape))) + "]"
