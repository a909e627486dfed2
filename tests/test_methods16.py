"""POMT and DynamicViT: the programs, as written and linearized, against the torch references (linearize.reference).

On continuous inputs the expected values come from the official code (POMT's per-image variant: the program is per
image, see docs/methods.md), on tied inputs from the stable variants (ties to the lower token index). Every size is
tried, k = 1 and k = N, r = 0 and the early returns included, at B = 1 and B > 1, in float32 and float64, on numpy
(planned, and the generic steps that evaluate every heaviside and delta as written) and torch. Planted bugs in
hand-written linearizations (an off-by-one rank, the tie-break reversed, a mean over the wrong set, ...) fail the
same comparisons.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import linearize as L
from linearize import reference as R
from linearize.ir.build import (
    cat,
    define,
    delta,
    heaviside,
    index,
    sizes,
    stack_over,
    sum_over,
    tensor,
)
from linearize.ir.form import is_linearized, ops_present
from linearize.ir.program import Program, program
from linearize.programs import get

NAMES = ("pomt", "dynamicvit", "dynamicvit-ordered")
# (continuous, tied): the reference each program must equal
REFS = {"pomt": (R.pomt_per_image, R.pomt_stable), "dynamicvit": (R.dynamicvit, R.dynamicvit_stable),
        "dynamicvit-ordered": (R.dynamicvit_ordered, R.dynamicvit_ordered_stable)}
TOL = {np.float32: (1e-5, 1e-6), np.float64: (1e-12, 1e-13)}  # rtol, atol: only POMT's mean is not a copy
MODES = [("numpy", True), ("numpy", False), ("torch", True)]  # (backend, planned)
SIZES = [1, 2, 3, 4, 5, 6, 9, 17]  # 17 > 16: torch's unstable argsort may reorder ties (docs/semantics.md)


@functools.cache
def linearized(name: str) -> Program:
    return L.linearize(get(name)).result


def softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def draw(name: str, rng: np.random.Generator, b: int, n: int, dtype, tied: int = 0) -> dict[str, np.ndarray]:
    """Inputs for one program; tied > 0 puts the N patch tokens in `tied` classes whose scores are equal exactly:
    DynamicViT's score from `tied` values, POMT's attention columns and value rows copied within a class. POMT's
    tied attention is then rounded to positive multiples of 1/64, so that metric_attn's column sums are exact in
    float32 in any order of addition: torch sums some columns of a [B, N, N] tensor in another order than others,
    which would break a tie in the reference itself (seen at N = 6)."""
    c = 3
    x = rng.normal(size=(b, n + 1, c))
    classes = rng.integers(0, tied, size=(b, n)) if tied else None
    if name != "pomt":
        score = rng.normal(size=(b, n)) if not tied else np.array([-1.0, 0.0, 0.5, 2.0])[classes % 4]
        return {"x": x.astype(dtype), "score": score.astype(dtype)}
    h, d = 2, 2
    attn, v = softmax(rng.normal(size=(b, h, n + 1, n + 1)) * 2), rng.normal(size=(b, h, n + 1, d))
    if tied:
        for bb in range(b):
            first = {}
            for j, cl in enumerate(classes[bb]):
                rep = first.setdefault(cl, j)
                attn[bb, :, :, 1 + j], v[bb, :, 1 + j] = attn[bb, :, :, 1 + rep], v[bb, :, 1 + rep]
        attn = np.maximum(np.round(attn * 64), 1) / 64  # positive, as the program requires
    return {"x": x.astype(dtype), "attn": attn.astype(dtype), "v": v.astype(dtype)}


def size_name(name: str) -> str:
    return "r" if name == "pomt" else "k"


def size_range(name: str, n: int) -> range:
    return range(0, n + 1) if name == "pomt" else range(1, n + 1)


def reference(name: str, inputs: dict[str, np.ndarray], size: int, tied: bool) -> np.ndarray:
    fn = REFS[name][1 if tied else 0]
    return fn(*(torch.from_numpy(a) for a in inputs.values()), size).numpy()


def evaluate(prog: Program, backend: str, planned: bool, inputs: dict[str, np.ndarray], size: int,
             name: str) -> np.ndarray:
    args = {k: torch.from_numpy(a) for k, a in inputs.items()} if backend == "torch" else inputs
    out = L.compile(prog, backend, planned=planned)(**args, **{size_name(name): size})
    return out.numpy() if backend == "torch" else np.asarray(out)


def assert_equal_to_reference(got: np.ndarray, want: np.ndarray, x: np.ndarray, context: str) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype, (context, got.shape, want.shape)
    rtol, atol = TOL[x.dtype.type]
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * max(1.0, float(np.abs(x).max())), err_msg=context)


def test_the_linearized_programs_have_no_selection_left():
    for name in NAMES:
        d = L.linearize(get(name))
        assert not is_linearized(get(name)) and is_linearized(d.result), name
        ops = set(ops_present(d.result))
        assert not ops & {"argsort", "gather", "complement", "topk", "sort_by_key", "rank_of", "kth"}, (name, ops)
        assert {"heaviside", "delta"} <= ops
    assert "exp" in ops_present(linearized("pomt")) and "amax" in ops_present(linearized("pomt"))
    assert {s.rule for s in L.linearize(get("dynamicvit-ordered")).steps} >= {"index-order"}
    assert {s.rule for s in L.linearize(get("pomt")).steps} >= {"argsort-gather", "mean-of-rows", "sorted-range-sum"}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("tied", [0, 2, 1], ids=["continuous", "two-classes", "all-equal"])
@pytest.mark.parametrize("name", NAMES)
def test_every_size_equals_the_reference(name, tied, dtype):
    """Both forms, every evaluator, every N in SIZES and every k (r), B = 3; B = 1 at N = 5."""
    rng = np.random.default_rng([NAMES.index(name), tied, dtype is np.float32])
    for n in SIZES:
        for b in (3, 1) if n == 5 else (3,):
            inputs = draw(name, rng, b, n, dtype, tied)
            for size in size_range(name, n):
                want = reference(name, inputs, size, tied > 0)
                for prog in (get(name), linearized(name)):
                    for backend, planned in MODES:
                        got = evaluate(prog, backend, planned, inputs, size, name)
                        context = f"{prog.name} {'linearized' if prog is not get(name) else 'original'} " \
                                  f"{backend} planned={planned} B={b} N={n} {size_name(name)}={size}"
                        assert_equal_to_reference(got, want, inputs["x"], context)


def test_the_early_returns_and_the_shapes():
    """POMT returns x itself for r == 0 and N - 1 - r <= 1, else N + 1 - r rows; DynamicViT always k + 1 rows, and
    k == N reorders every token by score."""
    rng = np.random.default_rng(7)
    inputs = draw("pomt", rng, 2, 6, np.float64)
    for r, rows in [(0, 7), (1, 6), (3, 4), (4, 7), (5, 7), (6, 7)]:
        out = evaluate(linearized("pomt"), "numpy", True, inputs, r, "pomt")
        assert out.shape == (2, rows, 3)
        if rows == 7:
            np.testing.assert_array_equal(out, inputs["x"])
    d = draw("dynamicvit", rng, 2, 6, np.float64)
    out = evaluate(linearized("dynamicvit"), "numpy", True, d, 6, "dynamicvit")
    order = np.argsort(-d["score"], axis=1, kind="stable")
    np.testing.assert_array_equal(out[:, 1:], np.take_along_axis(d["x"][:, 1:], order[:, :, None], 1))
    assert not np.array_equal(out, d["x"])


# ties: few values, forced; hypothesis varies sizes, the batch, the size given and the tie pattern
@given(name=st.sampled_from(NAMES), n=st.integers(1, 12), b=st.integers(1, 3), seed=st.integers(0, 2**32 - 1),
       tied=st.integers(1, 4), pick=st.floats(0, 1), dtype=st.sampled_from([np.float32, np.float64]))
def test_tied_draws_equal_the_stable_references(name, n, b, seed, tied, pick, dtype):
    inputs = draw(name, np.random.default_rng(seed), b, n, dtype, tied)
    sizes_ = size_range(name, n)
    size = sizes_[min(int(pick * len(sizes_)), len(sizes_) - 1)]
    want = reference(name, inputs, size, True)
    got = evaluate(linearized(name), "numpy", False, inputs, size, name)
    assert_equal_to_reference(got, want, inputs["x"], f"{name} N={n} size={size}")


def test_dynamicvit_keep_rate_floors_where_evit_ceils():
    """The conversion each program names in its meta: DynamicViT's int(n * rate), EViT's ceil."""
    from linearize.ir.program import keep_rate_to_k
    for n in (5, 100, 196):
        for rate in (0.29, 0.5, 0.7, 1.0):
            assert keep_rate_to_k(rate, n, get("dynamicvit").meta["keep_rate"]) == R.dynamicvit_keep(rate, n)
            assert keep_rate_to_k(rate, n, get("dynamicvit-ordered").meta["keep_rate"]) == R.dynamicvit_keep(rate, n)
            assert keep_rate_to_k(rate, n, get("evit").meta.get("keep_rate", "ceil")) == R.keep_rate_to_k(rate, n)
    assert R.dynamicvit_keep(0.7, 196) == 137 and R.keep_rate_to_k(0.7, 196) == 138


# --- planted bugs: hand-written linearizations, each refuted by the comparisons above ----------------------------
def dynamicvit_by_hand(bug: str | None = None, ordered: bool = False) -> Program:
    N, C, k = sizes("N C k")
    x, score = tensor("x", N + 1, C), tensor("score", N)
    i, j, p = index("i", N), index("j", N), index("p", k)
    tie = index("j", i + 1, N) if bug == "ties-reversed" else index("j", 0, i)
    rank = define("rank", i, sum_over(j, heaviside(score[j] - score[i])) + sum_over(tie, delta(score[tie] - score[i])))
    shift = 1 if bug == "off-by-one" else 0
    if not ordered:
        kept = stack_over(p, sum_over(i, delta(rank[i] - p - shift) * x[i + 1]))
    else:
        keep = define("keep", i, heaviside(k - rank[i] + shift))
        upto = index("j", 0, i + 1)
        before = define("kept_upto", i, sum_over(upto, keep[upto]))
        kept = stack_over(p, sum_over(i, delta(before[i] - p - 1) * keep[i] * x[i + 1]))
    name = "dynamicvit-ordered" if ordered else "dynamicvit"
    return program(f"{name}-{bug}", [x, score], cat(x[0:1], kept), sizes={k: (1, N)})


def pomt_by_hand(bug: str | None = None, selection: bool = False) -> Program:
    """POMT's linearized form written out, reusing the program's metric (or, selection=True, with the metric as an
    input, as pomt_selection has it: what prove settles); bugs in the kept rows or the mean."""
    N, C, H, D, r = sizes("N C H D r")
    x, attn, v = tensor("x", N + 1, C), tensor("attn", H, N + 1, N + 1), tensor("v", H, N + 1, D)
    if selection:
        metric = tensor("metric", N)
    else:
        metric = next(d for d in get("pomt").output.toposort() if d.op is L.Op.DEF and d.arg == "metric")
    i, j, q = index("i", N), index("j", N), index("q", N - 1 - r)
    tie = index("j", i + 1, N) if bug == "ties-reversed" else index("j", 0, i)
    rank = define("rank", i, sum_over(j, heaviside(metric[j] - metric[i])) + sum_over(tie, delta(metric[tie]
                                                                                              - metric[i])))
    kept = stack_over(q, sum_over(i, delta(rank[i] - q) * x[i + 1]))
    first_out = {"mean-off-by-one": N - r, "mean-of-kept": 0}.get(bug, N - 1 - r)  # discarded: rank >= T
    mask = heaviside(rank[i] - first_out + 1) if bug != "mean-of-kept" else heaviside(N - 1 - r - rank[i])
    count = {"mean-of-kept": N - 1 - r, "divisor": r}.get(bug, r + 1)
    fused = sum_over(i, mask * x[i + 1]) / count
    T = N - 1 - r
    early = [(r, 0, x), (T, "<=", 1, x)]
    if selection:
        return program(f"pomt-selection-{bug}", [x, metric], cat(x[0:1], kept, fused[None]), sizes={r: (0, N)},
                       early_returns=early)
    return program(f"pomt-{bug}", [x, attn, v], cat(x[0:1], kept, fused[None]), sizes={r: (0, N)},
                   early_returns=early, requires={"attn": "positive"})


def refuted(prog: Program, name: str) -> str | None:
    """The first draw on which prog differs from the reference, or None."""
    rng = np.random.default_rng(11)
    for tied in (0, 2):
        for n in (3, 4, 6, 17):
            inputs = draw(name, rng, 2, n, np.float64, tied)
            for size in size_range(name, n):
                want = reference(name, inputs, size, tied > 0)
                got = evaluate(prog, "numpy", False, inputs, size, name)
                if got.shape != want.shape or not np.allclose(got, want, rtol=1e-12, atol=1e-12):
                    return f"tied={tied} N={n} {size_name(name)}={size}"
    return None


@pytest.mark.parametrize("name,build", [
    ("dynamicvit", lambda bug: dynamicvit_by_hand(bug)),
    ("dynamicvit-ordered", lambda bug: dynamicvit_by_hand(bug, ordered=True)),
    ("pomt", pomt_by_hand),
])
def test_planted_bugs_are_refuted(name, build):
    assert refuted(build(None), name) is None  # the hand-written form without a bug passes
    bugs = {"pomt": ["ties-reversed", "mean-off-by-one", "mean-of-kept", "divisor"]}.get(
        name, ["ties-reversed", "off-by-one"])
    for bug in bugs:
        assert refuted(build(bug), name) is not None, bug


def test_pomt_is_per_image_where_the_official_code_is_not():
    """The program equals the official POMT on one image at a time (B = 1), and each image's output does not depend
    on the batch; the official code, which divides by the maximum over the whole batch, gives some image in a
    batch of two another output than it gets alone."""
    rng, changed = np.random.default_rng(3), 0
    for _ in range(20):
        inputs = draw("pomt", rng, 2, 12, np.float64)
        inputs["attn"][1] *= rng.uniform(0.2, 1.0)  # images whose attention sums differ in scale
        ours = evaluate(linearized("pomt"), "numpy", True, inputs, 4, "pomt")
        official = R.pomt(*(torch.from_numpy(a) for a in inputs.values()), 4).numpy()
        for b in range(2):
            alone = {name: a[b:b + 1] for name, a in inputs.items()}
            np.testing.assert_allclose(evaluate(linearized("pomt"), "numpy", True, alone, 4, "pomt")[0], ours[b],
                                       rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(R.pomt(*(torch.from_numpy(a) for a in alone.values()), 4).numpy()[0],
                                       ours[b], rtol=1e-12, atol=1e-12)
        changed += not np.allclose(official, ours, rtol=1e-12, atol=1e-12)
    assert changed >= 3, changed


# --- the command line ---------------------------------------------------------------------------------------------
def test_eval_reads_each_programs_own_inputs_and_sizes(tmp_path, capsys):
    from linearize.cli import main
    rng = np.random.default_rng(5)
    cases = {"pomt": (draw("pomt", rng, 2, 10, np.float64), ["--size", "r=3"], 3),
             "dynamicvit": (draw("dynamicvit", rng, 2, 10, np.float64), ["--keep-rate", "0.29"], 2),  # int(2.9)
             "dynamicvit-ordered": (draw("dynamicvit-ordered", rng, 2, 10, np.float64), ["--k", "4"], 4)}
    for name, (inputs, size_args, size) in cases.items():
        np.savez(tmp_path / "in.npz", **inputs, unused=np.zeros(1))
        official = {"pomt": R.pomt, "dynamicvit": R.dynamicvit, "dynamicvit-ordered": R.dynamicvit_ordered}[name]
        want = {"reference": official(*(torch.from_numpy(a) for a in inputs.values()), size).numpy(),
                "stable-reference": reference(name, inputs, size, True)}
        for form in ("original", "linearized", "reference", "stable-reference"):
            argv = ["eval", name, "--inputs", str(tmp_path / "in.npz"), "--out", str(tmp_path / "out.npz"),
                    *size_args, "--form", form]
            assert main(argv) == 0
            said = capsys.readouterr().out
            assert f"({size_name(name)} = {size})" in said, said
            with np.load(tmp_path / "out.npz") as f:
                np.testing.assert_allclose(f["out"], want.get(form, want["stable-reference"]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("argv,fragment", [
    (["pomt", "--keep-rate", "0.5"], "pomt takes no k"),
    (["pomt"], "pomt needs the size r: pass --size r=VALUE"),
    (["pomt", "--size", "q=2"], "takes no size q"),
    (["pomt", "--size", "r=11"], "r out of range"),
    (["pomt", "--size", "r=two"], "NAME=INTEGER"),
    (["dynamicvit", "--k", "2", "--size", "k=3"], "size k is given twice"),
    (["dynamicvit", "--keep-rate", "0.05"], "keeps no token of 10"),  # int(10 * 0.05) = 0; EViT's ceil keeps 1
    (["dynamicvit"], "--k K or --keep-rate R"),
])
def test_eval_refuses_sizes_a_program_does_not_take(tmp_path, capsys, argv, fragment):
    from linearize.cli import main
    rng = np.random.default_rng(6)
    np.savez(tmp_path / "in.npz", **draw("pomt", rng, 1, 10, np.float64), score=rng.normal(size=(1, 10)))
    status = main(["eval", argv[0], "--inputs", str(tmp_path / "in.npz"), "--out", str(tmp_path / "o.npz"),
                   *argv[1:], "--form", "linearized"])
    err = capsys.readouterr().err
    assert status == 2 and fragment in err and len(err.strip().splitlines()) == 1, err


def test_eval_reference_warns_when_ties_decide_the_selection(tmp_path, capsys):
    from linearize.cli import main
    rng = np.random.default_rng(8)
    for name, size_args in (("dynamicvit", ["--k", "3"]), ("pomt", ["--size", "r=2"])):
        np.savez(tmp_path / "in.npz", **draw(name, rng, 2, 8, np.float64, tied=2))
        argv = ["eval", name, "--inputs", str(tmp_path / "in.npz"), "--out", str(tmp_path / "o.npz"), *size_args]
        assert main([*argv, "--form", "reference"]) == 0
        err = capsys.readouterr().err
        assert err.startswith("linearize: warning: tied scores") and "torch.argsort" in err, err
        assert main([*argv, "--form", "stable-reference"]) == 0 and capsys.readouterr().err == ""
        np.savez(tmp_path / "in.npz", **draw(name, rng, 2, 8, np.float64))
        assert main([*argv, "--form", "reference"]) == 0 and capsys.readouterr().err == ""


def test_cost_takes_each_programs_own_sizes(capsys):
    import json

    from linearize.cli import main
    assert main(["cost", "pomt", "--size", "r=16", "--size", "D=64", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sizes"] == {"N": 196, "C": 768, "H": 12, "r": 16, "D": 64}
    assert data["exponentials"] == 197 and data["rank_tests"] == 196 * (196 - 16)
    assert main(["cost", "dynamicvit", "--k", "137"]) == 0
    out = capsys.readouterr().out
    assert "at N = 196, k = 137, C = 768:" in out and "exponentials" not in out and "returns early" not in out
    assert main(["cost", "evit", "--k", "196"]) == 0 and "(k == N returns early" in capsys.readouterr().out
    for argv, fragment in [(["pomt"], "pomt needs the size"), (["pomt", "--size", "r=300", "--size", "D=4"],
                                                               "r out of range"),
                           (["dynamicvit", "--size", "r=3"], "has no size r"), (["pomt", "--size", "N=3"], "--n")]:
        assert main(["cost", *argv]) == 2 and fragment in capsys.readouterr().err, argv



# --- check and prove, from the API and the command line -------------------------------------------------------
MUTANTS = {"dynamicvit": (lambda bug: dynamicvit_by_hand(bug), ["ties-reversed", "off-by-one"]),
           "dynamicvit-ordered": (lambda bug: dynamicvit_by_hand(bug, ordered=True), ["ties-reversed", "off-by-one"]),
           "pomt": (pomt_by_hand, ["ties-reversed", "mean-off-by-one", "mean-of-kept", "divisor"])}


def test_check_and_prove_pass_from_the_command_line(capsys):
    from linearize.cli import main
    for name in NAMES:
        assert main(["check", name, "--examples", "60"]) == 0, name
        assert ": ok, 60 examples" in capsys.readouterr().out
    for target in ("dynamicvit", "dynamicvit-ordered", "pomt", "linearize.programs.pomt:pomt_selection"):
        assert main(["prove", target, "--max-n", "6"]) == 0, target
        assert "proved for n <= 6" in capsys.readouterr().out
    # pomt compares its computed metric: the proof is over the metric's orderings, against the original form that
    # holds the same metric node, and says why; a torch function (which computes the metric itself) is refused
    assert main(["prove", "pomt", "--max-n", "4", "--json"]) == 0
    proof = json.loads(capsys.readouterr().out)
    assert proof["ok"] and proof["reference"] == {"name": "pomt", "form": "original form"}
    assert "computes 'metric' itself" in proof["note"]
    assert main(["prove", "pomt", "--max-n", "3", "--reference", "linearize.reference:pomt_per_image"]) == 2
    assert "compares the entries of its definition 'metric'" in capsys.readouterr().err


@pytest.mark.parametrize("name", NAMES)
def test_mutants_are_refuted_by_check_and_prove(name):
    """Each planted bug: check finds a counterexample against the torch reference, prove against the original form.
    POMT's are checked and proved on its selection, with the metric as an input (pomt_selection: the part the
    rewrites touch; checking the whole program shrinks a counterexample through the metric's inputs, slowly), and
    the tie-break bug on the whole program too."""
    from linearize.programs.pomt import pomt_selection
    from linearize.verify.check import check, references
    from linearize.verify.prove import prove
    build, bugs = MUTANTS[name]
    if name == "pomt":
        build, reference, original = (lambda bug: pomt_by_hand(bug, selection=True)), pomt_selection(), \
            pomt_selection()
        assert not check(pomt_by_hand("ties-reversed"), references()["pomt_per_image"], examples=300).ok
        assert prove(pomt_by_hand(None), get("pomt"), max_n=5).ok  # the whole program, cut at its metric
        for bug in bugs:
            assert not prove(pomt_by_hand(bug), get("pomt"), max_n=5).ok, bug
    else:
        reference, original = references()[get(name).meta["reference"]], get(name)
    assert check(build(None), reference, examples=60).ok and prove(build(None), original, max_n=5).ok
    for bug in bugs:
        result = check(build(bug), reference, examples=300)
        assert not result.ok and (result.counterexample.rows or result.counterexample.problem), bug
        proof = prove(build(bug), original, max_n=5)
        assert not proof.ok and proof.counterexample is not None, bug


def test_check_against_the_official_pomt_finds_the_batch_dependence(tmp_path, capsys):
    """On a batch of two images whose attention differs in scale, the official code (batch-wide maximum) gives one
    image another output than it gets alone; check with the official function as the reference finds it on those
    inputs (a function is called on every input; a reference by name is called in its stable, per-image variant on
    the user's inputs), the per-image reference does not."""
    from linearize.cli import main
    rng = np.random.default_rng(3)
    for _ in range(20):  # a batch where the official output differs from the per-image one
        inputs = draw("pomt", rng, 2, 8, np.float32)
        inputs["attn"][1] *= np.float32(0.3)
        t = [torch.from_numpy(a) for a in inputs.values()]
        if not np.allclose(R.pomt(*t, 2).numpy(), R.pomt_per_image(*t, 2).numpy()):
            break
    np.savez(tmp_path / "batch.npz", **inputs, r=np.array(2))
    argv = ["check", "pomt", "--inputs", str(tmp_path / "batch.npz"), "--examples", "20"]
    assert main([*argv, "--reference", "linearize.reference:pomt"]) == 1
    out = capsys.readouterr().out
    assert "counterexample on your inputs" in out and "batch 1" in out, out
    assert main(argv) == 0 and "equals pomt_per_image" in capsys.readouterr().out


def test_pomt_requires_a_positive_attention():
    rng = np.random.default_rng(4)
    inputs = draw("pomt", rng, 1, 5, np.float64)
    inputs["attn"][0, 0, 3, 2] = 0.0  # the official code accepts a zero; 0 / 0 only when a whole image's is zero
    with pytest.raises(L.InputError, match="attn must be > 0 everywhere"):
        evaluate(linearized("pomt"), "numpy", True, inputs, 2, "pomt")
    with pytest.raises(L.IRError, match="requires"):
        program("bad", [tensor("x", *sizes("N C"))], tensor("x", *sizes("N C")), requires={"x": "even"})


# --- export: the linearized forms as torch modules and ONNX, made of allowed ops only -----------------------------
def test_export_to_module_and_onnx(tmp_path):
    import onnxruntime as ort

    from linearize.export import to_module
    from linearize.export.onnx import export_onnx, forbidden_ops
    rng = np.random.default_rng(9)
    static = {"pomt": {"N": 8, "C": 3, "H": 2, "D": 2, "r": 3}, "dynamicvit": {"N": 8, "C": 3, "k": 3},
              "dynamicvit-ordered": {"N": 8, "C": 3, "k": 5}}
    for name in NAMES:
        module = to_module(linearized(name), **static[name])
        size = static[name][size_name(name)]
        for tied in (0, 2):
            inputs = draw(name, rng, 3, 8, np.float32, tied)
            want = reference(name, inputs, size, tied > 0)
            got = module(**{k: torch.from_numpy(a) for k, a in inputs.items()}).numpy()
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
        model = export_onnx(module, str(tmp_path / f"{name}.onnx"))
        assert forbidden_ops(model) == [], name
        session = ort.InferenceSession(str(tmp_path / f"{name}.onnx"))
        inputs = draw(name, rng, 2, 8, np.float32)
        got = session.run(None, inputs)[0]
        np.testing.assert_allclose(got, reference(name, inputs, size, False), rtol=1e-5, atol=1e-6, err_msg=name)
