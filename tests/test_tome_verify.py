"""ToMe through the checker and the prover: the linearized form passes both, and mutants of it -- off by one in the
merged sources' ranks or the kept rows, the last maximal odd row instead of the first, edge weights ranked without
a tie-break -- are refuted by both. The cost formulas agree with counts derived by hand from the linearized form."""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest

import linearize as L
from linearize.ir import Op, node
from linearize.ir.algebra import replace_nodes
from linearize.ir.build import affine
from linearize.rewrite import (
    ARGMAX,
    DISTINCT_RANKS,
    MASKED_SUMS,
    MERGE,
    ORDER,
    SELECT,
    SHARED_PIPELINE,
    SIMPLIFY,
    SORT,
)
from linearize.verify.check import check
from linearize.verify.cost import cost
from linearize.verify.cut import for_proof
from linearize.verify.prove import ProveError, prove


@functools.cache
def tome() -> L.Program:
    return L.programs.get("tome")


@functools.cache
def linearized() -> L.Program:
    return L.linearize(tome()).result


def _mutate(name: str, fn) -> L.Program:
    prog = linearized()
    nodes = {n for r in prog.roots() for n in r.toposort()}
    mapping = {n: fn(n) for n in nodes if fn(n) is not None}
    assert mapping, f"mutant {name} changes nothing"
    return replace(prog.map_nodes(lambda r: replace_nodes(r, mapping)), name=name)


def _is_size_minus(n):  # heaviside(rank[i] - r + 1)
    if n.op is not Op.HEAVISIDE or n.src[0].op is not Op.SUB:
        return False
    side = n.src[0].src[1]
    return side.op is Op.AFFINE and bool(side.arg.syms)


def merged_shifted(n):
    """The merged sources by rank m + 1, delta(rank[i] - m - 1): ranks 1..r merge, rank 0 neither merges nor stays."""
    if n.op is Op.DELTA and n.src[0].op is Op.SUB and n.src[0].src[1].op is Op.AFFINE and \
            n.src[0].src[1].arg.vars and n.src[0].src[0].op is Op.INDEX and n.src[0].src[0].src[0].arg == "rank":
        return node(Op.DELTA, (node(Op.SUB, (n.src[0].src[0], affine(n.src[0].src[1].arg + 1))),))
    return None


def kept_minus_one(n):
    """kept[i] = heaviside(rank[i] - r): the row of rank r is neither merged nor kept."""
    if _is_size_minus(n):
        return node(Op.HEAVISIDE, (node(Op.SUB, (n.src[0].src[0], affine(n.src[0].src[1].arg + 1))),))
    return None


def last_max(n):
    """The last maximal odd row: amax(j - L * (1 - delta(...))) instead of -amax(-(j + L * (1 - delta(...))))."""
    if n.op is Op.DEF and n.arg == "first_max":
        am = n.src[0].src[0]
        outer = am.src[0]
        inner = outer.src[0]
        j, pushed = inner.src[0].src[0].src
        body = node(Op.STACK, (node(Op.STACK, (node(Op.SUB, (j, pushed)),), inner.arg),), outer.arg)
        return node(Op.DEF, (node(Op.AMAX, (body,), am.arg),), "first_max")
    return None


@functools.cache
def mutants() -> dict[str, L.Program]:
    no_tie_break = (MERGE, SELECT, ORDER, MASKED_SUMS, SORT, ARGMAX, SIMPLIFY, DISTINCT_RANKS, SIMPLIFY)
    return {"merged-shifted": _mutate("merged-shifted", merged_shifted), "kept-1": _mutate("kept-1", kept_minus_one),
            "last-max": _mutate("last-max", last_max),
            "no-tie-break": replace(L.linearize(tome(), no_tie_break).result, name="no-tie-break")}


def test_check_passes():
    result = check(linearized(), "tome", examples=200, program=tome())
    assert result.ok and result.examples == 200, result.counterexample


def test_check_draws_ties_in_the_similarities_and_merges():
    """The draws reach merges (T >= 3, r >= 1) and tie similarities: in an argmax row and among edge weights."""
    from hypothesis import find, settings

    from linearize.verify.check import instances

    def tied(inst, where):
        if inst["sizes"]["T"] < 5 or inst["given"]["r"] < 1:
            return False
        m = inst["inputs"]["metric"].astype(np.float64)
        unit = m / np.linalg.norm(m, axis=-1, keepdims=True)
        s = unit[:, 2::2] @ unit[:, 1::2].transpose(0, 2, 1)
        best = s.max(-1)
        if where == "row":
            return bool(((s == best[..., None]).sum(-1) > 1).any())
        return any(len(set(row)) < len(row) for row in best.tolist())
    for where in ("row", "edges"):
        find(instances(program=tome()), lambda i, w=where: tied(i, w),
             settings=settings(database=None, derandomize=True, max_examples=300))


def test_prove_passes_and_says_what_it_enumerates():
    result = prove(tome(), max_n=6)
    assert result.ok, result.counterexample
    # T = 1..6, every r in [0, (T - 1)//2], every weak ordering of the (T - 1)//2 x T//2 similarities:
    # 1 + 1 + 2*1 + 2*3 + 3*75 + 3*4683 (the Fubini numbers of 0, 0, 1, 2, 4 and 6 similarities)
    assert result.regions == 1 + 1 + 2 + 6 + 3 * 75 + 3 * 4683
    assert result.sizes == {"T": "1..6", "r": "every value, 0 <= r <= (T + 1)//2 - 1",
                            "C": "every value (channel-generic)"}
    assert result.exact == "float64" and result.channel_generic


def test_the_proof_cuts_at_the_similarities():
    cand, ref = for_proof([linearized(), tome()])
    assert cand.input_names == ref.input_names == ("x", "size", "scores")
    assert cand.role("scores") == "score" and not cand.requires
    assert len(cand.outputs) == 3  # merged, merged_size, merged_size: the quotient split
    # a definition the sides compute differently (the merges) or do not have is no place to cut
    for name in ("merged", "nothing"):
        assert "not one and the same node" in for_proof([replace(linearized(), meta={"compared": name}), tome()])
    from linearize.reference import tome as torch_tome
    with pytest.raises(ProveError, match="prove it against a program"):
        prove(linearized(), torch_tome)


@pytest.mark.parametrize("name", ["merged-shifted", "kept-1", "last-max", "no-tie-break"])
def test_mutants_are_refuted_by_check_and_prove(name):
    mutant = mutants()[name]
    with np.errstate(invalid="ignore", divide="ignore"):  # a mutant may divide 0 by 0 (a row of no token)
        checked = check(mutant, "tome", examples=300, program=tome())
        proved = prove(mutant, tome(), max_n=6)
    assert not checked.ok and not proved.ok
    assert checked.counterexample.sizes["r"] >= 1 and proved.counterexample.sizes["r"] >= 1


def test_cost_formulas_agree_with_counts_by_hand():
    """With A = (T - 1)//2 non-CLS even rows and B = T//2 odd rows, the shared form compares: A(B - 1) for the
    row maxima, AB for each similarity against its row's maximum, A(B - 1) for the first maximal index, A(A - 1)/2
    for the ranks of the edge weights (one per pair); its rank tests are the kept mask (A), the index-order
    positions (A(A - r)), the merged sources by rank (Ar) and their destinations (rB); T square roots."""
    counts = cost(L.linearize(tome(), SHARED_PIPELINE).result)
    for t in range(3, 14):
        a, b = (t - 1) // 2, t // 2
        for r in range(0, a + 1):
            got = counts.at(T=t, r=r, C=5, c=3)
            assert got["comparisons"] == a * (b - 1) + a * b + a * (b - 1) + a * (a - 1) // 2, (t, r)
            assert got["rank_tests"] == a + a * (a - r) + a * r + r * b, (t, r)
            assert got["square_roots"] == t


# --- the command line -----------------------------------------------------------------------------------------
def cli(*args: str, cwd=None):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "linearize", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_cli_check_prove_and_cost():
    res = cli("check", "tome", "--examples", "60")
    assert res.returncode == 0 and "tome: ok, 60 examples" in res.stdout, res.stderr
    res = cli("prove", "tome", "--max-n", "5")
    assert res.returncode == 0 and "proved for n <= 5" in res.stdout and "235 regions" in res.stdout, res.stderr
    res = cli("cost", "tome", "--size", "T=197", "--size", "c=64", "--size", "r=16", "--c", "384")
    assert res.returncode == 0 and "square_roots" in res.stdout and "33,369" in res.stdout, res.stderr


def test_cli_eval_forms_agree_and_bad_inputs_exit_2(tmp_path):
    rng = np.random.default_rng(0)
    x, metric, size = rng.normal(size=(2, 9, 4)), rng.normal(size=(2, 9, 3)), rng.integers(1, 4, (2, 9, 1)) * 1.0
    np.savez(tmp_path / "in.npz", x=x, metric=metric, size=size)
    outs = {}
    for form in ("linearized", "original", "reference", "stable-reference"):
        res = cli("eval", "tome", "--inputs", "in.npz", "--out", f"{form}.npz", "--size", "r=3", "--form", form,
                  cwd=tmp_path)
        assert res.returncode == 0 and "out_0 [2, 6, 4]" in res.stdout and "out_1 [2, 6, 1]" in res.stdout, res.stderr
        with np.load(tmp_path / f"{form}.npz") as data:
            outs[form] = (data["out_0"], data["out_1"])
    for form, (gx, gs) in outs.items():
        np.testing.assert_allclose(gx, outs["reference"][0], rtol=1e-12, atol=1e-12, err_msg=form)
        np.testing.assert_array_equal(gs, outs["reference"][1])
    zero = metric.copy()
    zero[1, 4] = 0.0
    bad = {"zero-norm": dict(x=x, metric=zero, size=size), "size": dict(x=x, metric=metric, size=-size),
           "nan": dict(x=np.where(x > 1, np.nan, x), metric=metric, size=size)}
    for name, arrays in bad.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        res = cli("eval", "tome", "--inputs", f"{name}.npz", "--out", "o.npz", "--size", "r=1", "--form",
                  "linearized", cwd=tmp_path)
        assert res.returncode == 2 and res.stderr.startswith("linearize: error:") and res.stderr.count("\n") == 1
    res = cli("eval", "tome", "--inputs", "in.npz", "--out", "o.npz", "--size", "r=-1", "--form", "linearized",
              cwd=tmp_path)
    assert res.returncode == 2 and "r out of range" in res.stderr
    assert not (tmp_path / "o.npz").exists()
