"""What ToMe needed from the IR: sizes derived by floor division (T // 2), strided slices, programs with several
outputs, a clipped size range and conditions on input values -- each against an oracle written here."""

from __future__ import annotations

import numpy as np
import pytest

import linearize as L
from linearize.ir import Affine, IRError, Sym
from linearize.ir.affine import floordiv, provably_negative
from linearize.ir.algebra import nonneg
from linearize.ir.form import is_linearized
from linearize.show.latex import program_latex
from linearize.show.sympy_bridge import to_sympy
from linearize.verify.cost import cost

T, C, k = L.sizes("T C k")
t_sym = Sym("T", "size")
x = L.tensor("x", T, C)
key = L.tensor("key", T)


# --- sizes derived by floor division ------------------------------------------------------------------------
def test_floordiv_values_and_canonical_forms():
    t = Affine.of(t_sym)
    for d in (1, 2, 3, 5):
        for a in (t, t + 1, t - 1, t.scale(2) + 3, t.scale(3) - 4):
            q = floordiv(a, d)
            for v in range(1, 30):
                assert q.value({t_sym: v}) == a.value({t_sym: v}) // d, (str(a), d, v)
    assert floordiv(t - 1, 2) == floordiv(t + 1, 2) - 1  # one derived size for (T - 1)//2 and (T + 1)//2 - 1
    assert floordiv(t.scale(2) + 4, 2) == t + 2  # exact: no derived size
    assert floordiv(t, 2) + floordiv(t + 1, 2) == t  # Hermite: even and odd rows are all the rows
    assert sum((floordiv(t + j, 3) for j in range(3)), Affine()) == t
    assert floordiv(t, 2) + floordiv(t + 1, 2).scale(2) == t + floordiv(t + 1, 2)
    with pytest.raises(IRError, match="positive integer divisor"):
        floordiv(t, 0)
    with pytest.raises(IRError, match="index variable"):
        floordiv(Affine.of(Sym("i", "var", Affine(), t)), 2)


def test_bounds_on_derived_sizes_are_sound():
    """nonneg and provably_negative never claim what some T >= 1 contradicts (checked for T up to 60)."""
    t = Affine.of(t_sym)
    half, up, below = floordiv(t, 2), floordiv(t + 1, 2), floordiv(t - 1, 2)
    exprs = [half, up, below, half - 1, up - 1, below - 1, t - half.scale(2), t - up.scale(2), t - 1 - below.scale(2),
             t - half - up, half - up, up - half - 1, -half, -up, t - 2 - below, half.scale(3) - t, up - 2]
    for e in exprs:
        values = [e.value({t_sym: v}) for v in range(1, 61)]
        if nonneg(e):
            assert min(values) >= 0, str(e)
        if provably_negative(e):
            assert max(values) < 0, str(e)
    assert nonneg(up - 1) and nonneg(half) and nonneg(t - 1 - below.scale(2)) and not nonneg(half - 1)


# --- strided slices -------------------------------------------------------------------------------------------
STRIDED = {"::2": (x[::2], lambda a: a[::2]), "1::2": (x[1::2], lambda a: a[1::2]),
           "2::2": (x[2::2], lambda a: a[2::2]), "1:k:3": (x[1:k:3], None),
           ":,1::2": (x[:, 1::2], lambda a: a[:, 1::2]), "::3 then 1:": (x[::3][1:], lambda a: a[::3][1:])}


@pytest.mark.parametrize("name", list(STRIDED))
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_strided_slices_are_numpy_slices(name, backend):
    out, want = STRIDED[name]
    prog = L.program("s", [x], out, sizes={k: (1, T)})
    rng = np.random.default_rng(0)
    for t in range(1, 10):
        X = rng.normal(size=(2, t, 5))
        for kk in sorted({1, t}):
            w = X[:, 1:kk:3] if want is None else np.stack([want(b) for b in X])
            for planned in (True, False):
                got = np.asarray(L.compile(prog, backend, planned=planned)(x=X, k=kk))
                np.testing.assert_array_equal(got, w)
    if name in ("1::2", "::3 then 1:"):
        X = rng.normal(size=(7, 5))
        np.testing.assert_allclose(to_sympy(out).evaluate({"x": X, "k": 1}), want(X))


def test_strided_slice_errors():
    with pytest.raises(IRError, match="positive integer"):
        x[::-1]
    with pytest.raises(IRError, match="positive integer"):
        x[::0]


# --- several outputs -------------------------------------------------------------------------------------------
i, j = L.index("i", T), L.index("j", T)
greater = L.define("greater", i, L.sum_over(j, L.heaviside(key[j] - key[i])))  # shared by both outputs
two = L.program("two", [x, key], (L.gather(x, L.topk(key, k)), L.stack_over(i, greater[i] * 2.0)),
                sizes={k: (1, T)}, early_returns=[(k, T, (x, key * 0.0))])


def two_oracle(X, K, kk):
    n = K.shape[-1]
    if kk == n:
        return X, 0.0 * K
    order = np.stack([np.argsort(-row, kind="stable")[:kk] for row in K])
    return np.take_along_axis(X, order[:, :, None], 1), 2.0 * (K[:, None, :] > K[:, :, None]).sum(-1)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("planned", [True, False])
@pytest.mark.parametrize("form", ["original", "linearized"])
def test_compile_returns_the_outputs_in_order(form, planned, backend):
    prog = two if form == "original" else L.linearize(two).result
    rng = np.random.default_rng(1)
    f = L.compile(prog, backend, planned=planned)
    for n in (1, 3, 5):
        X, K = rng.normal(size=(3, n, 2)), rng.choice([0.0, 1.0, 2.0], size=(3, n))
        for kk in range(1, n + 1):
            got = f(x=X, key=K, k=kk)
            assert isinstance(got, tuple) and len(got) == 2
            for g, w in zip(got, two_oracle(X, K, kk)):
                np.testing.assert_allclose(np.asarray(g), w)


def test_several_outputs_print_linearize_and_cost():
    text = str(two)
    assert "-> ([k, C], [T]):" in text and "return (gather(x, topk(key, k)), [greater[i] * 2 for i in range(T)])" in \
        text and "if k == T: return (x, key * 0)" in text and text.count("greater[i < T] =") == 1
    d = L.linearize(two)
    assert isinstance(d.result.output, tuple) and is_linearized(d.result)
    assert r"\times \mathbb{R}^{T}" in program_latex(d.result)
    # the table `greater` (T^2 comparisons) is counted once, though both outputs read it
    both = L.program("both", [key], (L.stack_over(i, greater[i] * 2.0), L.stack_over(i, greater[i] * 3.0)))
    one = L.program("one", [key], L.stack_over(i, greater[i] * 2.0))
    assert cost(both).at(T=6) == {**cost(one).at(T=6), "multiplications": 12}
    assert cost(one).at(T=6)["comparisons"] == 36 and cost(one).at(T=6)["multiplications"] == 6


def test_several_outputs_errors():
    with pytest.raises(IRError, match="early return gives 1 value"):
        L.program("bad", [x, key], (x, key), early_returns=[(k, T, x)], sizes={k: (1, T)})
    with pytest.raises(IRError, match="non-empty tuple of nodes"):
        L.program("bad", [x], ())
    with pytest.raises(ValueError, match="2 outputs"):
        to_sympy(two)


# --- clipped ranges and conditions on values ------------------------------------------------------------------
def test_a_clipped_size_is_taken_at_its_top():
    clipped = L.program("c", [x], x[0:k], sizes={k: (1, T // 2)}, clip=(k,))
    plain = L.program("p", [x], x[0:k], sizes={k: (1, T // 2)})
    X = np.arange(14.0).reshape(1, 7, 2)
    assert np.asarray(L.compile(clipped)(x=X, k=100)).shape == (1, 3, 2)
    with pytest.raises(L.InputError, match=r"k out of range: need 1 <= k <= T//2, got k = 100, T//2 = 3"):
        L.compile(plain)(x=X, k=100)
    with pytest.raises(L.InputError, match="k out of range"):
        L.compile(clipped)(x=X, k=0)  # clipping is from above only
    with pytest.raises(IRError, match="clip names a size without a range"):
        L.program("c", [x], x, clip=(k,))


def test_requires_names_an_input_and_a_known_condition():
    with pytest.raises(IRError, match="requires"):
        L.program("q", [x], x, requires={"y": "positive"})
    with pytest.raises(IRError, match="requires"):
        L.program("q", [x], x, requires={"x": "even"})
    prog = L.program("q", [x], x * 2.0, requires={"x": "positive"})
    with pytest.raises(L.InputError, match="x must be > 0 everywhere"):
        L.compile(prog)(x=np.array([[[1.0], [-1.0]]]))
