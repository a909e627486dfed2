"""Exact rational evaluation: the generic semantics (eval/generic.py) on numpy object arrays of Fractions.

prove uses it for programs that divide (by a size, or a mean over several entries) or hold constants float64
would round in a product: every value is then an exact rational, and `==` is the right comparison. It is slower
than float64 by about two orders of magnitude, so prove uses float64 whenever that is exact already.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import Any

import numpy as np

from ..eval.backends import NUMPY, Backend
from ..eval.generic import value
from ..ir import Op
from ..ir.program import Program


def _rational(v: Any) -> int | Fraction:
    # integers stay Python ints (their arithmetic is an order of magnitude faster than Fraction's); only a
    # division or a fractional constant makes a Fraction
    if isinstance(v, int | Fraction):
        return v
    f = float(v)
    return int(f) if f.is_integer() else Fraction(f)


_to_rational = np.frompyfunc(_rational, 1, 1)


def fractions(a: Any) -> np.ndarray:
    """An array of exact rationals (Python ints and Fractions): floats are read exactly, as dyadic rationals."""
    return np.asarray(_to_rational(np.asarray(a)), dtype=object)


def _exact(v: Any) -> Any:
    return v if isinstance(v, np.ndarray) and v.dtype == object else fractions(v)


_to_fraction = np.frompyfunc(Fraction, 1, 1)  # a numerator for a division: int / int would give a float


def _where(c: Any, a: Any, b: Any) -> Any:
    return np.where(c, _exact(a), _exact(b))


def _divide(xp: Any, a: Any, b: Any) -> Any:  # the op table's a / b on two Python ints would give a float
    return _to_fraction(_exact(a)) / _exact(b)


def _mean(a: Any, axis: int, d: Any = None) -> Any:
    return _to_fraction(np.add.reduce(a, axis, initial=0)) / (a.shape[axis] if d is None else d)


EXACT: Backend = replace(
    NUMPY,
    name="exact",
    flag=lambda mask, like: mask.astype(np.int64).astype(object),  # 0 and 1 as ints
    asarray=lambda v, dtype: fractions(v) if dtype is object else np.asarray(v, dtype=dtype),
    to_dtype=lambda a, dtype: fractions(a) if dtype is object else a.astype(dtype, copy=False),
    sum=lambda a, axis: np.add.reduce(a, axis, initial=0) if a.dtype == object else a.sum(axis=axis),
    mean=_mean,
    where=_where,
    overrides={Op.DIV: _divide},  # exactly
)


def evaluate(program: Program, inputs: dict[str, Any], given: dict[str, int]) -> np.ndarray:
    """The program's output [B, ...] as Fractions; inputs are batched arrays (floats or Fractions)."""
    arrays = {name: _exact(a) for name, a in inputs.items()}
    env = program.bind_sizes({name: a.shape[1:] for name, a in arrays.items()}, given)
    out = value(EXACT, env, arrays, object, program.active_root(env))
    batch = next(iter(arrays.values())).shape[0]
    return np.broadcast_to(out, (batch, *out.shape[1:])) if out.shape[0] != batch else out
