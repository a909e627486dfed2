"""Property: for programs drawn at random (hypothesis), every plan gives the generic semantics' values.

The programs mix elementwise arithmetic, heaviside and delta of differences, sums over plain and ragged ranges,
comprehensions indexed again, rows read at affine indices (reversed and strided ones such as u[2M - i], u[2h + 1],
u[M - 1 - h]), means and concatenation, plus the shapes the strategies look for (comparison counts, stable ranks,
rows moved by a rank) so that those fire too. Inputs come from a few values, so ties and zero differences are common.
The oblivious plan and the sort plan (both kernel sizes) are compared with the generic steps (strategy="generic"),
on numpy and on torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import linearize as L
from linearize.eval import counting, scatter

M, C, k = L.sizes("M C k")
n = 2 * M + 1  # rows of the inputs: odd, so that 2h and 2h + 1 (h < M) and 2M - i (i < n) stay inside
U, V, X = L.tensor("u", n), L.tensor("v", n), L.tensor("X", n, C)
W = L.tensor("w", M)  # also says what M is (a size is read off a shape where it stands alone)
VALUES = [-1.0, -0.5, 0.0, 0.5, 1.0, 2.0]
_names = iter(f"t{t}" for t in range(10**9))


class Var:
    """An index variable and the kind of range it has, which says which affine indices stay inside [0, n)."""

    def __init__(self, kind: str, outer: Var | None = None):
        self.kind, self.outer = kind, outer
        name = next(_names)
        self.node = {"all": lambda: L.index(name, n), "half": lambda: L.index(name, M),
                     "k": lambda: L.index(name, k), "below": lambda: L.index(name, outer.node),
                     "from": lambda: L.index(name, outer.node, n)}[kind]()

    def indices(self) -> list:
        v = self.node
        if self.kind == "half":
            return [v, 2 * v, 2 * v + 1, 2 * M - 2 * v, M + v, M - 1 - v]
        if self.kind == "below":
            return [v, v + 1, self.outer.node - 1 - v]
        if self.kind == "from":
            return [v, 2 * M - v, v - self.outer.node]
        return [v, 2 * M - v]


def fresh(draw, scope: list[Var]) -> Var:
    outer = [w for w in scope if w.kind == "all"]
    kinds = ["all", "half", "k"] + (["below", "from"] if outer else [])
    kind = draw(st.sampled_from(kinds))
    return Var(kind, draw(st.sampled_from(outer)) if kind in ("below", "from") else None)


def at(draw, scope: list[Var]):
    """An affine index into [0, n): of a variable in scope, or a constant row."""
    if scope and draw(st.booleans()):
        return draw(st.sampled_from(draw(st.sampled_from(scope)).indices()))
    return draw(st.sampled_from([0, M, 2 * M]))


def scalar(draw, scope: list[Var], depth: int):
    kinds = ["read", "read", "const"] + (["neg", "arith", "arith", "step", "step", "sum", "stacked", "mean",
                                          "count"] if depth else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "read":
        halves = [w for w in scope if w.kind == "half"]
        if halves and draw(st.integers(0, 3)) == 0:
            return W[draw(st.sampled_from(halves)).node]
        return draw(st.sampled_from([U, V]))[at(draw, scope)]
    if kind == "const":
        return L.const(draw(st.sampled_from([0.5, 1.0, 2.0])))
    sub = lambda: scalar(draw, scope, depth - 1)
    if kind == "neg":
        return -sub()
    if kind == "arith":
        a, b, op = sub(), sub(), draw(st.sampled_from(["+", "-", "*", "/"]))
        return {"+": a + b, "-": a - b, "*": a * b, "/": a / (b * b + 1.0)}[op]
    if kind == "step":
        return draw(st.sampled_from([L.heaviside, L.delta]))(sub() - sub())
    if kind == "sum":
        v = fresh(draw, scope)
        body = scalar(draw, [*scope, v], depth - 1)
        if v.node.arg not in body.free:  # a sum must use its variable
            body = body * U[draw(st.sampled_from(v.indices()))]
        return L.sum_over(v.node, body)
    if kind == "stacked":  # a comprehension, indexed again
        v = Var("all")
        return L.stack_over(v.node, scalar(draw, [*scope, v], depth - 1))[at(draw, scope)]
    if kind == "mean":
        return L.mean(X[at(draw, scope)], axis=0)
    return count(draw, scope)


def count(draw, scope: list[Var]):
    """A comparison count or a stable rank of a key vector, read at an index: the strategies' shapes."""
    key_var = Var("all")
    key = L.stack_over(key_var.node, draw(st.sampled_from([U, V]))[draw(st.sampled_from(key_var.indices()))])
    i = Var("all")
    j, below = L.index(next(_names), n), L.index(next(_names), i.node)
    step = draw(st.sampled_from([L.heaviside, L.delta]))
    greater = L.sum_over(j, step(key[j] - key[i.node]) if draw(st.booleans()) else step(key[i.node] - key[j]))
    kind = draw(st.sampled_from(["count", "rank", "rank", "ties"]))
    if kind == "rank":
        greater = greater + L.sum_over(below, L.delta(key[below] - key[i.node]))
    elif kind == "ties":
        greater = L.sum_over(below, L.delta(key[below] - key[i.node]))
    return L.stack_over(i.node, greater)[at(draw, scope)]


def moved_rows(draw):
    """[sum<i>(delta(E[i] - target(r)) * Y[i]) for r]: rows moved to their counts' positions (the scatter shape)."""
    i, r = Var("all"), Var("k")
    E = count(draw, [i])
    target = draw(st.sampled_from([r.node, r.node + 1, 2 * M - r.node]))
    Y = X[draw(st.sampled_from(i.indices()))] * (scalar(draw, [i], 1) if draw(st.booleans()) else 1.0)
    return L.stack_over(r.node, L.sum_over(i.node, L.delta(E - target) * Y))


def weighted_sum(draw):
    """[sum<i>(w[i] * X[i + c])] in a unit axis (the fused-token shape), or a slice of X's rows."""
    if draw(st.booleans()):
        a = draw(st.sampled_from([0, 1, M]))
        return X[a:a + draw(st.sampled_from([1, M]))]
    i = Var(draw(st.sampled_from(["all", "half"])))
    w = scalar(draw, [i], 2) if draw(st.integers(0, 3)) else 1.0
    return L.sum_over(i.node, w * X[i.node + draw(st.sampled_from([0, M])) if i.kind == "half" else i.node])[None]


@st.composite
def programs(draw):
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.integers(0, 5))
        if kind == 0:
            parts.append(moved_rows(draw))
            continue
        if kind == 1:
            parts.append(weighted_sum(draw))
            continue
        v = fresh(draw, [])
        row = X[draw(st.sampled_from(v.indices()))] if draw(st.booleans()) else X[at(draw, [])]
        parts.append(L.stack_over(v.node, scalar(draw, [v], draw(st.integers(0, 3))) * row))
    out = parts[0] if len(parts) == 1 else L.cat(*parts)
    return L.program("drawn", [U, V, X, W], out, sizes={k: (1, n)})


@st.composite
def cases(draw):
    prog = draw(programs())
    b, m, c = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    kk = draw(st.integers(1, 2 * m + 1))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arrays = {"u": rng.choice(VALUES, (b, 2 * m + 1)), "v": rng.choice(VALUES, (b, 2 * m + 1)),
              "X": rng.choice(VALUES, (b, 2 * m + 1, c)), "w": rng.choice(VALUES, (b, m))}
    return prog, arrays, kk


def evaluate(prog, backend: str, strategy: str, arrays: dict, kk: int) -> np.ndarray:
    f = L.compile(prog, backend, strategy=strategy)
    conv = {name: torch.from_numpy(a) for name, a in arrays.items()} if backend == "torch" else arrays
    out = f(**conv, k=kk)
    return out.numpy() if backend == "torch" else out


@pytest.mark.parametrize("kernels", ["oblivious", "sort-small", "sort-large"])
def test_every_plan_gives_the_generic_semantics(kernels, monkeypatch):
    if kernels == "sort-large":
        monkeypatch.setattr(counting, "PAIRS_MAX", 0)
        monkeypatch.setattr(scatter, "ONEHOT_MAX", 0)
    strategy = kernels.split("-")[0]

    @given(cases())
    def prop(case):
        prog, arrays, kk = case
        want = evaluate(prog, "numpy", "generic", arrays, kk)
        np.testing.assert_allclose(evaluate(prog, "torch", "generic", arrays, kk), want, rtol=1e-9, atol=1e-9)
        for backend in ("numpy", "torch"):
            got = evaluate(prog, backend, strategy, arrays, kk)
            assert got.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=f"{backend}\n{prog}")
    prop()


def test_the_drawn_programs_reach_every_strategy():
    """The property above is only as good as its programs: over the draws, each strategy fires somewhere."""
    seen: set[str] = set()

    @given(cases())
    def prop(case):
        prog, arrays, kk = case
        seen.update(L.compile(prog, "numpy").plan(**arrays, k=kk).strategies.values())
    prop()
    assert {"rows", "scatter", "rank", "count", "contract", "compare", "generic"} <= seen, seen
