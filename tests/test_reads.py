"""The input check tests what the program reads (linearize/ir/reads.py): a NaN the program never reads is no error
and changes nothing, one it reads is an error naming the view. The oracle is the official torch code (EViT's
selection reads attn[:, :, 0, 1:] only) and keys worked out by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import linearize as L
from linearize.ir.build import cat, define, index, sizes, sum_over, tensor
from linearize.ir.program import program
from linearize.ir.reads import key_text, read_views
from linearize.reference import _select

ALL = slice(None)


def reads(prog: L.Program, **env: int) -> dict[str, list[tuple]]:
    """{input name: [keys]} at these sizes, by name."""
    syms = {s.name: s for n in prog.inputs for d in n.arg[1] for s in d.syms} | \
        {c.size.name: c.size for c in prog.constraints}
    bound = {syms[k]: v for k, v in env.items()}
    found = read_views(prog.active_roots(bound), prog.inputs, bound)
    return {x.arg[0]: sorted((key for _, key in views), key=str) for x, views in found.items()}


def test_the_views_each_program_reads():
    evit = L.linearize(L.programs.get("evit")).result
    assert reads(evit, N=6, C=3, H=2, k=4) == {"x": [(ALL,) * 3], "attn": [(ALL, slice(0, 2), 0, slice(1, 7))]}
    assert reads(evit, N=6, C=3, H=2, k=6) == {"x": [(ALL,) * 3], "attn": []}  # k == N returns x: attn unread
    pomt = L.linearize(L.programs.get("pomt")).result
    assert reads(pomt, N=5, C=3, H=2, D=4, r=1) == {
        "x": [(ALL,) * 3], "attn": [(ALL, slice(0, 2), slice(1, 6), slice(1, 6))], "v": [(ALL,) * 4]}
    assert key_text((ALL, slice(0, 2), 0, slice(1, 7)), (2, 7, 7)) == "[:, :, 0, 1:]"
    assert key_text((ALL, slice(2, 4), 3), (5, 6)) == "[:, 2:4, 3]"


def test_views_are_read_whole_when_they_cover_it_or_move():
    N, C = sizes("N C")
    x = tensor("x", N + 1, C)
    two = program("two", [x], cat(x[0:1], x[2:4]))  # two disjoint views
    assert reads(two, N=5, C=3) == {"x": [(ALL, slice(0, 1), slice(0, 3)), (ALL, slice(2, 4), slice(0, 3))]}
    cover = program("cover", [x], cat(x[0:2], x[1:]))  # together they are as large as x: read whole
    assert reads(cover, N=5, C=3) == {"x": [(ALL,) * 3]}
    i = index("i", N)
    moving = program("moving", [x], define("s", sum_over(i, x[i + 1]))[None])  # a position that varies
    assert reads(moving, N=5, C=3) == {"x": [(ALL,) * 3]}
    nested = program("nested", [x], x[1:][2:3])  # views of views compose
    assert reads(nested, N=5, C=3) == {"x": [(ALL, slice(3, 4), slice(0, 3))]}


@pytest.mark.parametrize("backend,strategy", [("numpy", "oblivious"), ("torch", "oblivious"), ("torch", "sort"),
                                              ("numpy", "generic")])
def test_a_nan_evit_does_not_read_is_no_error_and_one_it_reads_is(backend, strategy):
    """Every entry of attn in turn: NaN where the program does not read changes nothing (the official code's
    output); NaN where it reads is an InputError naming the view read; inf in x anywhere is one too."""
    f = L.compile(L.linearize(L.programs.get("evit")).result, backend, strategy=strategy)
    g = torch.Generator().manual_seed(0)
    n, h, k = 4, 2, 2
    x, attn = torch.randn(2, n + 1, 6, generator=g, dtype=torch.float64), \
        torch.rand(2, h, n + 1, n + 1, generator=g, dtype=torch.float64)
    conv = (lambda t: t.numpy()) if backend == "numpy" else (lambda t: t)
    want = np.asarray(f(x=conv(x), attn=conv(attn), k=k))  # the clean call, which is the official code's output:
    official = _select(x, attn, k, stable=False, extra=True).numpy()
    np.testing.assert_array_equal(want[:, :-1], official[:, :-1])  # kept rows moved exactly
    np.testing.assert_allclose(want[:, -1], official[:, -1], rtol=1e-12)  # the fused token: a sum in another order
    for b, hh, q, j in itertools.product(range(2), range(h), range(n + 1), range(n + 1)):
        bad = attn.clone()
        bad[b, hh, q, j] = float("nan")
        if q == 0 and j >= 1:
            with pytest.raises(L.InputError, match=r"attn contains NaN or infinite values in attn\[:, :, 0, 1:\]"):
                f(x=conv(x), attn=conv(bad), k=k)
        else:
            np.testing.assert_array_equal(np.asarray(f(x=conv(x), attn=conv(bad), k=k)), want)
    for b, t, c in itertools.product(range(2), range(n + 1), (0, 5)):
        bad = x.clone()
        bad[b, t, c] = float("inf")
        with pytest.raises(L.InputError, match=r"^x contains NaN or infinite values$"):
            f(x=conv(bad), attn=conv(attn), k=k)


def test_the_module_checks_what_forward_reads():
    m = L.to_module(L.linearize(L.programs.get("evit")).result, N=4, k=2, C=6, H=2)
    g = torch.Generator().manual_seed(1)
    x, attn = torch.randn(3, 5, 6, generator=g), torch.rand(3, 2, 5, 5, generator=g)
    want = _select(x, attn, 2, stable=False, extra=True)
    bad = attn.clone()
    bad[:, :, 1:, :] = float("nan")  # every row but the CLS query's
    bad[:, :, 0, 0] = float("inf")
    torch.testing.assert_close(m(x, bad), want, rtol=1e-6, atol=1e-6)
    bad[2, 1, 0, 3] = float("nan")
    with pytest.raises(ValueError, match=r"attn contains NaN or infinite values in attn\[:, :, 0, 1:\]"):
        m(x, bad)
