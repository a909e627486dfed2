"""Costs: the formulas agree with counts taken by running the IR, one scalar point at a time, lazily (a table entry
is computed only when read) and once per point (memoized); the share pass is sound, ties included, and cuts the
comparisons of a stable ranking to N(N - 1)/2."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import linearize as L
from linearize.cli import main
from linearize.ir import Node, Op, Sym
from linearize.ir.build import index, rank_of, sizes, stack_over, sum_over, tensor
from linearize.ir.program import program
from linearize.programs import get
from linearize.reference import evit_stable
from linearize.rewrite import DEFAULT_PIPELINE, SEED_PIPELINE, SHARE, SHARED_PIPELINE, SIMPLIFY, STABLE_RANKS, run_pass
from linearize.verify.cost import COUNTS, cost


class Run:
    """Evaluate a program point by point, counting operations as they run."""

    def __init__(self, prog, values: dict[str, int], inputs: dict[str, np.ndarray]):
        self.sizes = {s: values[s.name] for n in prog.output.toposort() for s in _size_syms(n)}
        self.inputs, self.memo, self.counts = inputs, {}, Counter()
        self.users: dict[Node, list[Node]] = {}
        for n in prog.output.toposort():
            for s in n.src:
                self.users.setdefault(s, []).append(n)
        self.data = {n for n in prog.output.toposort() if n.op is Op.INPUT}
        for n in prog.output.toposort():
            if any(s in self.data for s in n.src):
                self.data.add(n)

    def int(self, a, env) -> int:
        return a.const + sum(c * (self.sizes[s] if s.kind == "size" else env[s]) for s, c in a.terms)

    def at(self, n: Node, env: dict, path: tuple = ()) -> Any:
        """n's value at leading indices `path`: tables are entered lazily, row by row."""
        if path and n.op is Op.DEF:
            return self.at(n.src[0], env, path)
        if path and n.op is Op.STACK:
            return self.at(n.src[0], {**env, n.arg: self.int(n.arg.lo, env) + path[0]}, path[1:])
        if n.op is Op.INDEX and n.arg == 0:
            return self.at(n.src[0], env, (self.int(n.src[1].arg, env), *path))
        return self.value(n, env)[path] if path else self.value(n, env)

    def value(self, n: Node, env: dict) -> Any:
        key = (n, tuple(env[v] for v in sorted(n.free, key=Sym.sort_key)))
        if key not in self.memo:
            self.memo[key] = self.compute(n, env)
        return self.memo[key]

    def compute(self, n: Node, env: dict) -> Any:
        src = lambda i: self.at(n.src[i], env)
        counted = n in self.data
        if n.op is Op.INPUT:
            return self.inputs[n.arg[0]]
        if n.op in (Op.CONST, Op.AFFINE):
            return np.float64(n.arg if n.op is Op.CONST else self.int(n.arg, env))
        if n.op in (Op.HEAVISIDE, Op.DELTA):
            a = src(0)
            # a rank test compares a count made of comparisons; a comparison compares data
            kind = "rank_tests" if any(m.op in (Op.HEAVISIDE, Op.DELTA) for m in n.src[0].toposort()) else "comparisons"
            self.counts[kind] += np.size(a) * counted
            return (a > 0 if n.op is Op.HEAVISIDE else a == 0) * 1.0
        if n.op in (Op.ADD, Op.SUB, Op.MUL, Op.DIV):
            a, b = src(0), src(1)
            out = {Op.ADD: np.add, Op.SUB: np.subtract, Op.MUL: np.multiply, Op.DIV: np.divide}[n.op](a, b)
            part_of_test = all(u.op in (Op.HEAVISIDE, Op.DELTA) for u in self.users[n])
            kind = "multiplications" if n.op in (Op.MUL, Op.DIV) else None if part_of_test else "additions"
            if kind:
                self.counts[kind] += np.size(out) * counted
            return out
        if n.op is Op.NEG:
            return -src(0)
        if n.op in (Op.SUM, Op.STACK):
            v = n.arg
            terms = [self.at(n.src[0], {**env, v: t}) for t in range(self.int(v.lo, env), self.int(v.hi, env))]
            if n.op is Op.STACK:
                return np.stack(terms)
            self.counts["additions"] += max(len(terms) - 1, 0) * np.size(terms[0] if terms else 0) * counted
            return sum(terms[1:], terms[0]) if terms else np.zeros([self.int(d, env) for d in n.shape])
        if n.op is Op.DEF:
            return src(0)
        if n.op is Op.SLICE:
            axis, a, b = n.arg
            return src(0)[(slice(None),) * axis + (slice(self.int(a, env), self.int(b, env)),)]
        if n.op is Op.INDEX:
            return np.take(src(0), self.int(n.src[1].arg, env), axis=n.arg)
        if n.op is Op.CAT:
            return np.concatenate([self.at(s, env) for s in n.src], axis=n.arg)
        if n.op is Op.MEAN:
            a = src(0)
            out = a.mean(axis=n.arg)
            self.counts["additions"] += (a.shape[n.arg] - 1) * np.size(out)
            self.counts["multiplications"] += np.size(out)
            return out
        if n.op is Op.AMAX:  # one comparison per value after the first
            a = src(0)
            out = a.max(axis=n.arg)
            self.counts["comparisons"] += (a.shape[n.arg] - 1) * np.size(out) * counted
            return out
        if n.op is Op.EXP:
            out = np.exp(src(0))
            self.counts["exponentials"] += np.size(out) * counted
            return out
        raise AssertionError(f"unexpected op {n.op}")


def _size_syms(n: Node) -> set[Sym]:
    from linearize.ir.program import _size_syms as syms
    return syms(n)


FORMS = {"evit": [DEFAULT_PIPELINE, SHARED_PIPELINE, SEED_PIPELINE], "topk": [DEFAULT_PIPELINE, SHARED_PIPELINE]}
CASES = [(name, i) for name, pipes in FORMS.items() for i in range(len(pipes))] + [("evit-seed", None)]


def form(name: str, i: int | None):
    return get(name) if i is None else L.linearize(get(name), FORMS[name][i]).result


METHODS = ["pomt", "dynamicvit", "dynamicvit-ordered"]  # their own inputs (v, score) and sizes (r, D)


@pytest.mark.parametrize("name,i", CASES + [(m, p) for m in METHODS for p in (0, 1)])
def test_formulas_equal_counts_taken_by_running(name, i):
    prog = form(name, i) if name not in METHODS else L.linearize(get(name), FORMS["evit"][i]).result
    formulas = cost(prog)
    rng = np.random.default_rng(0)
    for n, k, c, h in [(t, k, c, h) for t in range(2, 7) for k in range(1, t) for c, h in ((1, 1), (2, 3))]:
        values = {"N": n, "k": k, "C": c, "H": h, "D": 2, "r": k - 1}  # POMT's r: 0 .. N - 2, its main branch
        env = {s: values[s.name] for t in prog.inputs for d in t.arg[1] for s in d.syms}
        inputs = {t.arg[0]: rng.random(tuple(d.value(env) for d in t.arg[1])) for t in prog.inputs}
        if prog.active_root({c.size: values[c.size.name] for c in prog.constraints} | env) is not prog.output:
            continue  # POMT's r == 0 or N - 1 - r <= 1: an early return, nothing is counted
        run = Run(prog, values, inputs)
        out = run.at(prog.output, {})
        given = {name: values[name] for name in prog.given_sizes}
        assert np.allclose(out, L.compile(prog)(**{a: v[None] for a, v in inputs.items()}, **given)[0])
        counts = formulas.at(**values)
        assert {key: counts[key] for key in COUNTS} == {key: run.counts[key] for key in COUNTS}, (n, k, c, h)


def test_share_cuts_the_comparisons_of_a_stable_ranking():
    naive, shared = (cost(L.linearize(get("evit"), p).result) for p in (DEFAULT_PIPELINE, SHARED_PIPELINE))
    N = shared.sizes["N"]
    assert (naive.formulas["comparisons"] - (N**2 + N * (N - 1) / 2)).expand() == 0
    assert (shared.formulas["comparisons"] - N * (N - 1) / 2).expand() == 0
    assert shared.at(N=196, k=138, C=768, H=12)["comparisons"] == 19_110
    for n in range(2, 50):
        assert 2 * shared.at(N=n, k=1, C=1, H=1)["comparisons"] <= naive.at(N=n, k=1, C=1, H=1)["comparisons"]
    assert naive.formulas["rank_tests"] == shared.formulas["rank_tests"]


# --- the share pass on its own: sound on ties, both orders --------------------------------------------------------
Nk, = sizes("N")
KEY = tensor("key", Nk)


def ranks(keys: np.ndarray, descending: bool) -> np.ndarray:
    order = np.argsort(-keys if descending else keys, kind="stable")
    out = np.empty(len(keys))
    out[order] = np.arange(len(keys))
    return out


@pytest.mark.parametrize("descending", [True, False])
@settings(deadline=None)
@given(keys=st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=1, max_size=9) |
       st.lists(st.floats(-1, 1), min_size=1, max_size=9))
def test_shared_rank_preserves_the_stable_rank(descending, keys):
    before = program("r", [KEY], rank_of(KEY, descending))
    steps: list = []
    stable = run_pass(before, STABLE_RANKS, steps)
    shared = run_pass(stable, SHARE, steps)
    assert [s.rule for s in steps] == ["stable-rank", "shared-rank"]
    k = np.array([keys])
    want = ranks(np.array(keys), descending)
    for p in (before, stable, shared):
        assert np.array_equal(L.compile(p)(key=k)[0], want)


def test_shared_rank_does_not_fire_elsewhere():
    i, j = index("i", Nk), index("j", Nk)
    from linearize.ir.build import define, delta, heaviside
    num_greater = define("num_greater", i, sum_over(j, heaviside(KEY[j] - KEY[i])))
    jb = index("j", 0, i)
    other = tensor("other", Nk)
    for out in (num_greater,  # no tie-break: nothing to share with
                stack_over(i, num_greater[i] + sum_over(jb, delta(other[jb] - other[i]))),  # ties of another key
                stack_over(i, num_greater[i] + sum_over(index("j", 0, i + 1), delta(KEY[index("j", 0, i + 1)]
                                                                                     - KEY[i])))):  # j <= i
        prog = program("t", [KEY, other], out)
        steps: list = []
        assert run_pass(prog, SHARE, steps) == prog and not steps


def test_shared_evit_equals_the_stable_reference_on_ties():
    f = L.compile(L.linearize(get("evit"), SHARED_PIPELINE).result)
    rng = np.random.default_rng(1)
    for _ in range(20):
        n, c, h = (int(v) for v in rng.integers(1, 8, 3))
        x, attn = rng.normal(size=(2, n + 1, c)), rng.choice([0.0, 0.25, 0.5], size=(2, h, n + 1, n + 1))
        k = int(rng.integers(1, n + 1))
        assert np.allclose(f(x=x, attn=attn, k=k), evit_stable(torch.tensor(x), torch.tensor(attn), k).numpy())


def test_simplify_after_share_leaves_the_shared_form():
    d = L.linearize(get("evit"), SHARED_PIPELINE)
    assert d.steps[-1].rule == "shared-rank" and SIMPLIFY in SHARED_PIPELINE
    assert "greater[a < N] = [heaviside(cls_attn[a] - cls_attn[b]) for b in range(N)]" in str(d.result)


def test_cli(capsys):
    assert main(["cost", "evit", "--n", "196", "--k", "138", "--c", "768", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["comparisons"] <= 19_110 and data["rank_tests"] == 196 * 139
    assert set(COUNTS) <= set(data) and set(COUNTS) == set(data["formulas"])
    assert data["formulas"]["comparisons"] == "N*(N - 1)/2"
    assert main(["cost", "evit", "--pipeline", "default", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["comparisons"] == 196**2 + 196 * 195 // 2
    assert main(["cost", "topk"]) == 0
    assert "comparisons" in capsys.readouterr().out
    for bad in (["--k", "0"], ["--k", "197"], ["--n", "0"], ["--c", "x"]):
        assert main(["cost", "evit", *bad]) == 2
