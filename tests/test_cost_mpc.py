"""The MPC cost model (linearize/verify/cost_mpc.py, docs/cost.md) against counts taken independently.

The oracle walks the IR at concrete sizes, one point at a time and lazily (a table entry is computed when read),
as tests/test_cost.py does, but element by element: each array element carries whether it is secret and its
depth (comparison layers, multiplication layers, rounds), and every product and comparison is counted by the
secrecy of the elements it actually combines. The bitonic formulas are checked against a sorting network built
here, which sorts every 0/1 input (so, by the 0-1 principle, every input)."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from typing import Any

import numpy as np
import pytest

import linearize as L
from linearize.cli import main
from linearize.ir import OPS, Node, Op, Sym
from linearize.ir.form import is_linearized
from linearize.programs import BUILTIN, get
from linearize.rewrite import DEFAULT_PIPELINE, SHARED_PIPELINE
from linearize.verify.cost import CostError
from linearize.verify.cost_mpc import COUNTS, DEPTHS, MPC, bitonic, mpc_cost

FIELDS = ("value", "secret", "cmp", "mul", "rounds")


class Walk:
    """Evaluate a program point by point; each value is a dict of arrays: value, secret, cmp, mul, rounds."""

    def __init__(self, prog, values: dict[str, int], inputs: dict[str, np.ndarray]):
        self.sizes = {s.name: v for s, v in ((Sym(k, "size"), v) for k, v in values.items())}
        self.inputs, self.memo, self.counts = inputs, {}, Counter()

    def int(self, a, env) -> int:
        return a.const + sum(c * (self.sizes[s.name] if s.kind == "size" else env[s]) for s, c in a.terms)

    def at(self, n: Node, env: dict, path: tuple = ()) -> dict:
        if path and n.op is Op.DEF:
            return self.at(n.src[0], env, path)
        if path and n.op is Op.STACK:
            return self.at(n.src[0], {**env, n.arg: self.int(n.arg.lo, env) + path[0]}, path[1:])
        if n.op is Op.INDEX and n.arg == 0:
            return self.at(n.src[0], env, (self.int(n.src[1].arg, env), *path))
        v = self.value(n, env)
        return {f: np.asarray(a)[path] for f, a in v.items()} if path else v

    def value(self, n: Node, env: dict) -> dict:
        key = (n, tuple(env[v] for v in sorted(n.free, key=Sym.sort_key)))
        if key not in self.memo:
            self.memo[key] = self.compute(n, env)
        return self.memo[key]

    @staticmethod
    def public(value) -> dict:
        value = np.asarray(value, dtype=np.float64)
        zeros = np.zeros(value.shape, np.int64)
        return {"value": value, "secret": np.zeros(value.shape, bool), "cmp": zeros, "mul": zeros, "rounds": zeros}

    def compute(self, n: Node, env: dict) -> dict:
        src = [lambda i=i: self.at(n.src[i], env) for i in range(len(n.src))]
        if n.op is Op.INPUT:
            v = self.public(self.inputs[n.arg[0]])
            return {**v, "secret": np.ones(v["value"].shape, bool)}
        if n.op in (Op.CONST, Op.AFFINE):
            return self.public(n.arg if n.op is Op.CONST else self.int(n.arg, env))
        if n.op in (Op.ADD, Op.SUB, Op.MUL, Op.DIV):
            a, b = src[0](), src[1]()
            fn = {Op.ADD: np.add, Op.SUB: np.subtract, Op.MUL: np.multiply, Op.DIV: np.divide}[n.op]
            out = {"value": fn(a["value"], b["value"]), "secret": a["secret"] | b["secret"]}
            both = a["secret"] & b["secret"] & np.ones(out["value"].shape, bool)
            one = (a["secret"] ^ b["secret"]) & np.ones(out["value"].shape, bool)
            if n.op in (Op.MUL, Op.DIV):
                assert not (n.op is Op.DIV and b["secret"].any())
                self.counts["secret_products"] += int(both.sum())
                self.counts["public_products"] += int(one.sum())
            else:
                both = both & False
            return {**out, "cmp": np.maximum(a["cmp"], b["cmp"]), "mul": np.maximum(a["mul"], b["mul"]) + both,
                    "rounds": np.maximum(a["rounds"], b["rounds"]) + both}
        if n.op is Op.NEG:
            a = src[0]()
            return {**a, "value": -a["value"]}
        if n.op in (Op.HEAVISIDE, Op.DELTA):
            a = src[0]()
            kind = "rank_tests" if any(m.op in (Op.HEAVISIDE, Op.DELTA) for m in n.src[0].toposort()) else "comparisons"
            s = a["secret"]
            self.counts[kind] += int(s.sum())
            value = (a["value"] > 0 if n.op is Op.HEAVISIDE else a["value"] == 0) * 1.0
            return {"value": value, "secret": s, "cmp": a["cmp"] + s, "mul": a["mul"], "rounds": a["rounds"] + s}
        if n.op in (Op.SUM, Op.STACK):
            v = n.arg
            terms = [self.at(n.src[0], {**env, v: t}) for t in range(self.int(v.lo, env), self.int(v.hi, env))]
            if n.op is Op.STACK:
                return {f: np.stack([t[f] for t in terms]) for f in FIELDS}
            if not terms:
                return self.public(np.zeros([self.int(d, env) for d in n.shape]))
            return {"value": sum(t["value"] for t in terms),
                    "secret": np.logical_or.reduce([t["secret"] for t in terms]),
                    **{f: np.maximum.reduce([t[f] for t in terms]) for f in ("cmp", "mul", "rounds")}}
        if n.op is Op.DEF:
            return src[0]()
        if n.op is Op.SLICE:
            axis, a, b = n.arg
            key = (slice(None),) * axis + (slice(self.int(a, env), self.int(b, env)),)
            return {f: x[key] for f, x in src[0]().items()}
        if n.op is Op.INDEX:
            return {f: np.take(x, self.int(n.src[1].arg, env), axis=n.arg) for f, x in src[0]().items()}
        if n.op is Op.CAT:
            parts = [self.at(s, env) for s in n.src]
            return {f: np.concatenate([np.broadcast_to(p[f], p["value"].shape) for p in parts], axis=n.arg)
                    for f in FIELDS}
        if n.op is Op.MEAN:
            a = src[0]()
            secret = a["secret"].any(axis=n.arg)
            self.counts["public_products"] += int(secret.sum())  # the 1/L of each secret mean
            return {"value": a["value"].mean(axis=n.arg), "secret": secret,
                    **{f: a[f].max(axis=n.arg) for f in ("cmp", "mul", "rounds")}}
        if n.op is Op.AMAX:  # a tournament, pair by pair: compare, then select with one product
            a = src[0]()
            items = [{f: np.take(x, t, axis=n.arg) for f, x in a.items()} for t in range(a["value"].shape[n.arg])]
            while len(items) > 1:
                nxt = []
                for u, w in itertools.zip_longest(items[::2], items[1::2]):
                    if w is None:
                        nxt.append(u)
                        continue
                    s = u["secret"] | w["secret"]
                    self.counts["comparisons"] += int(s.sum())
                    self.counts["secret_products"] += int(s.sum())
                    nxt.append({"value": np.maximum(u["value"], w["value"]), "secret": s,
                                "cmp": np.maximum(u["cmp"], w["cmp"]) + s, "mul": np.maximum(u["mul"], w["mul"]) + s,
                                "rounds": np.maximum(u["rounds"], w["rounds"]) + 2 * s})
                items = nxt
            return items[0]
        raise AssertionError(f"unexpected op {n.op}")


# programs the model refuses to price, and why: POMT's metric divides by a secret maximum and takes exp of secrets
REFUSED = {"pomt": "divides by a secret value"}


def forms() -> list[tuple[str, Any]]:
    out = []
    for name in BUILTIN:
        prog = get(name)
        if name in REFUSED:
            continue
        if is_linearized(prog):
            out.append((name, prog))
        else:
            out += [(f"{name}/{p}", L.linearize(prog, pipe).result)
                    for p, pipe in (("shared", SHARED_PIPELINE), ("default", DEFAULT_PIPELINE))]
    return out


FORMS = forms()
SIZES = [(n, k, c, h) for n in range(2, 6) for k in range(1, n) for c, h in ((1, 1), (2, 3))]


@pytest.mark.parametrize("name,prog", FORMS, ids=[f[0] for f in FORMS])
def test_formulas_equal_counts_taken_element_by_element(name, prog):
    result = mpc_cost(prog)
    rng = np.random.default_rng(0)
    for n, k, c, h in SIZES:
        sizes = {"N": n, "k": k, "C": c, "H": h}
        env = {s: sizes[s.name] for t in prog.inputs for d in t.arg[1] for s in d.syms}
        # each input of the program's signature (x and attn, or DynamicViT's score), drawn at these sizes
        inputs = {t.arg[0]: rng.random(tuple(d.value(env) for d in t.arg[1])) for t in prog.inputs}
        walk = Walk(prog, sizes, inputs)
        out = walk.at(prog.output, {})
        given = {name: sizes[name] for name in prog.given_sizes}
        assert np.allclose(out["value"], L.compile(prog)(**{a: v[None] for a, v in inputs.items()}, **given)[0])
        formulas = result.at(N=n, k=k, C=c, H=h)
        assert {key: formulas[key] for key in COUNTS} == {key: walk.counts[key] for key in COUNTS}, (n, k, c, h)
        seen = {"multiplicative_depth": out["mul"].max(), "comparison_layers": out["cmp"].max(),
                "rounds": out["rounds"].max()}
        assert {key: formulas[key] for key in DEPTHS} == seen, (n, k, c, h)


def test_the_one_hot_products_are_secret_by_secret_at_vit_b():
    values = mpc_cost(L.linearize(get("evit"), SHARED_PIPELINE).result).at(N=196, k=138, C=768, H=12)
    assert values["secret_products"] == 196 * (768 * 138 + 768 + 1)  # one-hot rows, mask * score, then * row
    assert values["public_products"] == 196 and values["rounds"] == 4


def test_amax_is_a_tournament():
    N, C, H, k = L.sizes("N C H k")
    x, attn = L.tensor("x", N + 1, C), L.tensor("attn", H, N + 1, N + 1)
    i = L.index("i", N)
    best = L.define("best", L.amax(attn[:, 0, 1:], axis=0))  # [N]: each token's largest CLS attention over heads
    prog = L.program("maxes", [x, attn], L.sum_over(i, best[i] * x[i + 1])[None], sizes={k: (1, N)})
    result = mpc_cost(prog)
    rng = np.random.default_rng(1)
    for n, c, h in [(2, 1, 1), (3, 2, 2), (4, 1, 3), (3, 2, 5), (2, 2, 8)]:
        walk = Walk(prog, {"N": n, "k": 1, "C": c, "H": h}, {"x": rng.normal(size=(n + 1, c)),
                                                            "attn": rng.random((h, n + 1, n + 1))})
        out = walk.at(prog.output, {})
        values = result.at(N=n, C=c, H=h, k=1)
        assert {key: values[key] for key in COUNTS} == {key: walk.counts[key] for key in COUNTS}
        assert (values["multiplicative_depth"], values["rounds"]) == (out["mul"].max(), out["rounds"].max())
        assert values["comparison_layers"] == math.ceil(math.log2(h)) == out["cmp"].max()


def test_every_counted_op_has_an_mpc_rule_and_selections_are_refused():
    assert {op for op, spec in OPS.items() if spec.cost is not None} == set(MPC)
    with pytest.raises(CostError, match="not linearized"):
        mpc_cost(get("evit"))
    N, k = L.sizes("N k")
    v = L.tensor("v", N)
    with pytest.raises(CostError, match="divides by a secret"):
        mpc_cost(L.program("ratio", [v], v / v, sizes={k: (1, N)}))
    with pytest.raises(CostError, match="exp of a secret"):
        mpc_cost(L.program("softmax", [v], L.exp(v), sizes={k: (1, N)}))
    assert mpc_cost(L.program("scale", [v], v * L.exp(L.const(0.5)), sizes={k: (1, N)})).at(N=3)["public_products"] == 3
    with pytest.raises(CostError, match=REFUSED["pomt"]):
        mpc_cost(L.linearize(get("pomt")).result)


def bitonic_network(p: int) -> list[list[tuple[int, int]]]:
    """The layers of comparators of a bitonic sorting network on p = 2^m wires (each (i, j): min to i)."""
    layers = []
    size = 2
    while size <= p:
        stride = size // 2
        while stride >= 1:
            layer = []
            for i in range(p):
                j = i ^ stride
                if j > i:
                    layer.append((i, j) if (i & size) == 0 else (j, i))
            layers.append(layer)
            stride //= 2
        size *= 2
    return layers


@pytest.mark.parametrize("n", list(range(2, 21)) + [196])
def test_bitonic_formulas_count_a_network_that_sorts(n):
    p = 1 << (n - 1).bit_length()
    net = bitonic_network(p)
    if p <= 16:  # the 0-1 principle: sorting every 0/1 input means sorting every input
        for bits in itertools.product((0, 1), repeat=p):
            a = list(bits)
            for layer in net:
                for i, j in layer:
                    if a[i] > a[j]:
                        a[i], a[j] = a[j], a[i]
            assert a == sorted(bits)
    comparators = sum(len(layer) for layer in net)
    for fused, c, k in itertools.product((True, False), (1, 768), (1, n - 1)):
        values = bitonic(fused).at(N=n, C=c, k=k)
        assert values["comparisons"] == comparators and values["comparison_layers"] == len(net)
        assert values["secret_products"] == comparators * (c + 1) + fused * (n - k) * c
        assert values["rounds"] == 2 * len(net) + fused and values["multiplicative_depth"] == len(net) + fused


def test_cost_model_mpc_on_the_command_line(capsys):
    assert main(["cost", "evit", "--model", "mpc", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "mpc" and data["sizes"] == {"N": 196, "k": 138, "C": 768, "H": 12}
    assert data["rounds"] == 4 and data["sorting_network"]["rounds"] == 73
    assert data["sorting_network"]["comparisons"] == 128 * 36 and data["formulas"]["secret_products"] == (
        "N*(C*k + C + 1)")
    for name in BUILTIN:
        extra = ["--size", "r=1", "--size", "D=2"] if name == "pomt" else []  # POMT's own sizes
        status = main(["cost", name, "--model", "mpc", "--n", "5", "--k", "2", "--c", "3", "--h", "2", *extra])
        out, err = capsys.readouterr()
        if name in REFUSED:  # a clear refusal, not a wrong number
            assert status == 2 and REFUSED[name] in err and not out
            continue
        assert status == 0
        heads = any(s.name == "H" for t in get(name).inputs for d in t.arg[1] for s in d.syms)  # DynamicViT: none
        at = "N = 5, k = 2, C = 3, H = 2" if heads else "N = 5, k = 2, C = 3"
        assert f"under MPC at {at}:" in out and "one round per comparison layer" in out
