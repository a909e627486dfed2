"""The op table: every op has every facet its kind needs, and each facet does what it says on a sample node of the
op, checked against independent oracles (numpy written here, the SymPy bridge, torch)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import linearize as L
from linearize.eval import generic
from linearize.ir import OPS, Node, Op
from linearize.ir.form import degree
from linearize.ir.ops import KINDS
from linearize.show.latex import LatexPrinter
from linearize.show.sympy_bridge import to_sympy
from linearize.verify.cost import cost

N, C, k = L.sizes("N C k")
x, key = L.tensor("x", N, C), L.tensor("key", N)
i, j = L.index("i", N), L.index("j", N)
idx = L.topk(key, k)

# one node of each op, built as a user would, and its value on one instance by an oracle written here
SAMPLES: dict[Op, Node] = {
    Op.INPUT: x, Op.CONST: L.const(2.5) * key, Op.AFFINE: L.stack_over(i, i + 0.0 * key[i]),
    Op.ADD: x + key[0], Op.SUB: x - key[1], Op.MUL: x * 3.0, Op.DIV: x / 4.0, Op.NEG: -x, Op.EXP: L.exp(x - key[0]),
    Op.HEAVISIDE: L.heaviside(key - key[0]), Op.DELTA: L.delta(key - key[0]),
    Op.INDEX: x[1], Op.SLICE: x[1:], Op.CAT: L.cat(x, x[0:1]), Op.SUM: L.sum_over(j, x[j]),
    Op.STACK: L.stack_over(i, key[i] * 2.0), Op.DEF: L.define("twice", key * 2.0), Op.MEAN: L.mean(x, axis=1),
    Op.AMAX: L.amax(x, axis=0),
    Op.ARGSORT: L.gather(x, L.argsort(key, descending=True)), Op.SORT_BY_KEY: L.sort_by_key(x, key),
    Op.TOPK: L.gather(x, idx), Op.GATHER: L.gather(x, L.complement(idx, N)),
    Op.COMPLEMENT: L.gather(key, L.complement(idx, N)), Op.KTH: L.kth_largest(x, key, 1),
    Op.RANK: L.rank_of(key, descending=True),
}


def oracle(op: Op, xv: np.ndarray, kv: np.ndarray, kk: int) -> np.ndarray:
    desc = sorted(range(len(kv)), key=lambda t: (-kv[t], t))  # stable descending
    asc = sorted(range(len(kv)), key=lambda t: (kv[t], t))
    rest = sorted(set(range(len(kv))) - set(desc[:kk]))
    return {
        Op.INPUT: xv, Op.CONST: 2.5 * kv, Op.AFFINE: np.arange(len(kv), dtype=float), Op.ADD: xv + kv[0],
        Op.SUB: xv - kv[1], Op.MUL: xv * 3, Op.DIV: xv / 4, Op.NEG: -xv, Op.EXP: np.exp(xv - kv[0]),
        Op.HEAVISIDE: (kv > kv[0]) * 1.0,
        Op.DELTA: (kv == kv[0]) * 1.0, Op.INDEX: xv[1], Op.SLICE: xv[1:], Op.CAT: np.concatenate([xv, xv[:1]]),
        Op.SUM: xv.sum(0), Op.STACK: kv * 2, Op.DEF: kv * 2, Op.MEAN: xv.mean(1), Op.AMAX: xv.max(0),
        Op.ARGSORT: xv[desc],
        Op.SORT_BY_KEY: xv[asc], Op.TOPK: xv[desc[:kk]], Op.GATHER: xv[rest], Op.COMPLEMENT: kv[rest],
        Op.KTH: xv[desc[1]], Op.RANK: np.argsort(desc).astype(float),
    }[op]


def test_every_op_has_a_sample():
    assert set(SAMPLES) == set(Op), "a new op needs a sample node and an oracle here"
    assert all(any(n.op is op for n in SAMPLES[op].toposort()) for op in Op)


@pytest.mark.parametrize("op", list(Op), ids=lambda op: op.name)
def test_every_op_has_the_facets_its_kind_needs(op):
    s = OPS[op]
    assert s.kind in KINDS and s.name and s.doc
    assert all(callable(f) for f in (s.shape, s.text, s.latex, s.sympy, s.degree, s.integral))
    assert (s.cost is None) == (s.kind == "selection"), "a selection is never counted; everything else is"
    if s.kind in ("arithmetic", "step", "reduction", "selection"):
        assert callable(s.impl), f"{s.name} needs an implementation"
    if s.kind in ("step", "selection"):
        assert s.order in ("compare", "move") and s.keys, f"{s.name} reads an order: say which operands"
    if s.kind == "reduction":
        assert s.axis is not None
    assert s.binds == (op in (Op.SUM, Op.STACK))


def test_each_layer_core_takes_exactly_the_structural_ops():
    """Leaves and structure are the generic semantics' own calculus (one evaluator: the planner's generic steps);
    every other op is evaluated from its facet."""
    core = {op for op, s in OPS.items() if s.kind in ("leaf", "structure")}
    assert set(generic._GENERIC) == core


@pytest.mark.parametrize("op", list(Op), ids=lambda op: op.name)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_each_op_evaluates_as_its_oracle_says(op, backend):
    rng = np.random.default_rng(op.value)
    n, c, kk = 5, 3, 2
    xv, kv = rng.normal(size=(2, n, c)), rng.choice([0.0, 0.5, 1.0], size=(2, n))  # keys with ties
    node = SAMPLES[op]
    ins = [t for t in (x, key) if any(m is t for m in node.toposort())]
    prog = L.program(op.name.lower(), ins, node, sizes={k: (1, N)})
    args = {"x": xv, "key": kv}
    for planned in (True, False):
        got = L.compile(prog, backend, planned=planned)(**{t.arg[0]: args[t.arg[0]] for t in ins}, k=kk)
        for b in range(2):
            want = oracle(op, xv[b], kv[b], kk)
            np.testing.assert_allclose(np.asarray(got)[b], np.broadcast_to(want, np.asarray(got)[b].shape),
                                       rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op", [op for op in Op if OPS[op].kind != "selection"], ids=lambda op: op.name)
def test_sympy_facet_agrees_with_the_oracle(op):
    """The SymPy translation is an independent evaluator: it must give the oracle's values too."""
    rng = np.random.default_rng(op.value)
    xv, kv = rng.normal(size=(4, 2)), rng.choice([0.0, 0.5, 1.0], size=4)
    got = to_sympy(SAMPLES[op]).evaluate({"x": xv, "key": kv, "k": 2})
    np.testing.assert_allclose(got, np.broadcast_to(oracle(op, xv, kv, 2), got.shape), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op", list(Op), ids=lambda op: op.name)
def test_text_and_latex_name_the_op(op):
    n = next(m for m in SAMPLES[op].toposort() if m.op is op)
    text, latex = L.ir.show(n), LatexPrinter().show(n)
    assert text and latex
    if OPS[op].kind == "selection":  # printed as a call of its name
        assert text.startswith(OPS[op].name.replace("kth", "kth_largest")), text


def test_degree_facets():
    assert degree(SAMPLES[Op.MUL], ["x"]) == 1 and degree(x * x, ["x"]) == 2
    assert degree(L.heaviside(key - key[0]), ["key"]) == math.inf
    assert degree(x / key[0], ["x"]) == 1 and degree(key[0] / x, ["x"]) == math.inf
    assert degree(L.gather(x, idx), ["x"]) == 1 and degree(L.gather(x, idx), ["key"]) == math.inf
    assert degree(L.mean(x, axis=1), ["x"]) == 1
    assert degree(L.exp(key), ["x"]) == 0 and degree(L.exp(x), ["x"]) == math.inf


def test_cost_facets_count_what_the_docs_say():
    """sum<j < N>(x[j] * 3 + key[j]): N*C multiplications, N*C additions for the +, (N - 1)*C for the sum; and a
    difference that only a comparison reads is part of the comparison."""
    p = L.program("c", [x, key], L.sum_over(j, x[j] * 3.0 + key[j]), sizes={k: (1, N)})
    counts = cost(p).at(N=5, C=3, k=1)
    assert counts["multiplications"] == 5 * 3 and counts["additions"] == 5 * 3 + 4 * 3
    q = L.program("d", [key], L.stack_over(i, L.sum_over(j, L.heaviside(key[j] - key[i]))), sizes={k: (1, N)})
    counts = cost(q).at(N=5, k=1)
    assert counts["comparisons"] == 25 and counts["additions"] == 5 * 4 and counts["multiplications"] == 0
    e = L.program("e", [key], L.sum_over(j, L.exp(key[j])), sizes={k: (1, N)})  # a softmax's denominator
    counts = cost(e).at(N=5, k=1)
    assert counts["exponentials"] == 5 and counts["additions"] == 4 and counts["comparisons"] == 0
    with pytest.raises(Exception, match="not linearized"):
        cost(L.program("s", [x, key], SAMPLES[Op.TOPK], sizes={k: (1, N)}))
