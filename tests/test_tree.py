"""`linearize derive --format json`: every tree rebuilds, through the public node constructor, into the very nodes
of the derivation (nodes are interned, so equal means identical), and every text form is the notation's.

The reader below is written from the schema in docs/cli.md, not from linearize/ir/tree.py."""

from __future__ import annotations

import json

import pytest

import linearize as L
from linearize.cli import main
from linearize.ir import OPS, Affine, Node, Op, Sym, node
from linearize.ir.printing import Printer, show_definition

BY_NAME = {spec.name: op for op, spec in OPS.items()}


def read_affine(t: dict) -> Affine:
    return Affine(tuple((read_sym(s), c) for s, c in t["terms"]), t["const"])


def read_sym(t: dict) -> Sym:
    if "size" in t:
        return Sym(t["size"], "size")
    return Sym(t["var"], "var", read_affine(t["lo"]), read_affine(t["hi"]))


def read_arg(a):
    if isinstance(a, dict):
        return read_affine(a) if "affine" in a else read_sym(a)
    if isinstance(a, list):
        return tuple(read_arg(x) for x in a)
    return a


class Reader:
    def __init__(self, table: dict):
        self.table = table

    def node(self, t: dict) -> Node:
        op = BY_NAME[t["op"]]
        if op is Op.DEF:
            built = node(Op.DEF, (self.node(self.table[t["ref"]]),), t["arg"])
        else:
            built = node(op, tuple(self.node(s) for s in t["src"]), read_arg(t["arg"]))
        assert t["shape"] == [str(d) for d in built.shape]
        return built


@pytest.fixture(scope="module", params=["evit", "topk", "evit-seed"])
def derived(request):
    return L.linearize(L.programs.get(request.param))


@pytest.fixture(scope="module")
def data(derived):
    return json.loads(derived.dumps())


def test_every_tree_rebuilds_the_derivations_nodes(derived, data):
    read = Reader(data["definitions"])
    assert len(data["steps"]) == len(derived.steps) and data["passes"] == list(derived.passes)
    for step, tree in zip(derived.steps, data["steps"]):
        assert (tree["pass"], tree["rule"]) == (step.pass_name, step.rule)
        assert read.node(tree["before"]) is step.before and read.node(tree["after"]) is step.after
        assert tree["text"] == {k: step.to_dict()[k] for k in ("before", "after")}
    for prog, tree in ((derived.source, data["source"]), (derived.result, data["result"])):
        assert read.node(tree["output"]) is prog.output and tree["text"] == str(prog)
        assert [read.node(t) for t in tree["inputs"]] == list(prog.inputs)
        assert [(read.node(e["value"]), *map(read_affine, e["if"])) for e in tree["early_returns"]] == [
            (e.value, e.lhs, e.rhs) for e in prog.early_returns]
        assert [(c["size"], read_affine(c["lo"]), read_affine(c["hi"])) for c in tree["sizes"]] == [
            (c.size.name, c.lo, c.hi) for c in prog.constraints]


def test_the_table_holds_each_definition_once_under_its_name(derived, data):
    read = Reader(data["definitions"])
    p = Printer()
    result_defs = [n for n in derived.result.output.toposort() if n.op is Op.DEF]
    for d in result_defs:  # each definition the result uses is in the table, under the name the text gives it
        name = p.name_of(d)
        assert name in data["definitions"] and read.node(data["definitions"][name]) is d.src[0]
        assert show_definition(p, d).split(" = ")[0].split("[")[0] == name


def test_derive_format_json_is_the_derivations_json(capsys):
    assert main(["derive", "evit", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == json.loads(L.linearize(L.programs.get("evit")).dumps())
    assert {"heaviside", "delta", "sum"} <= set(out["ops"]) and {"cls_attn", "num_greater", "rank"} <= set(
        out["definitions"])


def test_two_definitions_of_one_name_are_told_apart():
    N, k = L.sizes("N k")
    v = L.tensor("v", N)
    p = L.program("two", [v], L.define("d", v * 2) + L.define("d", v * 3), sizes={k: (1, N)})
    data = json.loads(L.linearize(p).dumps())
    assert set(data["definitions"]) == {"d", "d_2"} and not data["steps"]
    assert Reader(data["definitions"]).node(data["result"]["output"]) is p.output
    assert "d_2 = v * 3" in data["result"]["text"]
