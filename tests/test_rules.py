"""Each rewrite rule on its own: it fires on a small closed program holding its pattern, and both programs
evaluate like a numpy oracle on continuous and tied keys; where its side condition fails, it does not fire."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from linearize import compile
from linearize.ir.build import (
    argsort,
    complement,
    const,
    define,
    delta,
    gather,
    heaviside,
    index,
    kth_largest,
    kth_smallest,
    mean,
    rank_of,
    sizes,
    sort_by_key,
    sort_indices,
    stack_over,
    sum_over,
    tensor,
    topk,
)
from linearize.ir.program import program
from linearize.rewrite import ALL_RULES, STABLE_RANKS, Pass, run_pass

N, C, k = sizes("N C k")
x, key = tensor("x", N, C), tensor("key", N)
i, j, r = index("i", N), index("j", N), index("r", N)
r1 = index("r", 1, N + 1)
S1 = stack_over(r1, x[r1 - 1])  # [x[r - 1] for r in range(1, N + 1)]: equals x, from a stack starting at 1
comp = complement(topk(key, k), N)
m = index("m", N - k)
head_k = argsort(key, True)[:k]  # topk(key, k) as DynamicViT writes it
comp_head = complement(head_k, N)
j_upto_i = index("j", 0, i + 1)  # ragged: j <= i
j_below_i = index("j", 0, i)  # ragged: j < i


# --- the numpy oracle, one batch element at a time: X [n, c], K [n], integer kk ---------------------------------
def order(K: np.ndarray, descending: bool = True) -> np.ndarray:
    """Stable order: among equal keys the lower index first."""
    return np.argsort(-K if descending else K, kind="stable")


def ranks(K: np.ndarray, descending: bool = True) -> np.ndarray:
    out = np.empty(len(K))
    out[order(K, descending)] = np.arange(len(K))
    return out


def weighted(X, K, rows):  # sum of K[t] * X[t] over the given rows
    return (K[rows, None] * X[rows]).sum(0)


def kept(K, kk, lo, hi, descending=True):
    """The token indices outside ranks [lo, hi), ascending (a complement)."""
    return np.array(sorted(set(range(len(K))) - set(order(K, descending)[lo:hi].tolist())), dtype=int)


def sorted_range(lo, hi, descending):
    def oracle(X, K, kk):
        o = order(K, descending)[lo(kk, len(K)):hi(kk, len(K))]
        return weighted(X, K, o)
    return oracle


NUM_GREATER = define("num_greater", i, sum_over(j, heaviside(key[j] - key[i])))


def stable_ranked(descending: bool):
    """rank_of(key) after the stable-rank rule: num_greater[i] + sum<j < i>(delta(key[j] - key[i]))."""
    return run_pass(program("t", [x, key], rank_of(key, descending)), STABLE_RANKS, []).output


# (rule, id, output node, oracle(X, K, kk))
CASES: list[tuple] = [
    ("topk-gather", "head", gather(x, topk(key, k)), lambda X, K, kk: X[order(K)[:kk]]),
    ("complement-sum", "fused", sum_over(m, gather(key, comp)[m] * gather(x, comp)[m]),
     lambda X, K, kk: weighted(X, K, order(K)[kk:])),
    ("complement-sum", "argsort-head", sum_over(m, gather(key, comp_head)[m] * gather(x, comp_head)[m]),
     lambda X, K, kk: weighted(X, K, order(K)[kk:])),
    ("argsort-gather", "head", gather(x, head_k), lambda X, K, kk: X[order(K)[:kk]]),
    ("argsort-gather", "tail-asc", gather(x, argsort(key)[k - 1:]), lambda X, K, kk: X[order(K, False)[kk - 1:]]),
    ("argsort-gather", "middle", gather(key, argsort(key, True)[k - 1:k]), lambda X, K, kk: K[order(K)[kk - 1:kk]]),
    ("argsort-gather", "all", gather(x, argsort(key, True)), lambda X, K, kk: X[order(K)]),
    # means over non-empty sets (k - 1 < N): a tail of the sort, the complement of the top k - 1, all rows
    ("mean-of-rows", "sorted-tail", mean(sort_by_key(x, key, True)[k - 1:], 0),
     lambda X, K, kk: X[order(K)[kk - 1:]].mean(0)),
    ("mean-of-rows", "complement", mean(gather(x, complement(topk(key, k - 1), N)), 0),
     lambda X, K, kk: X[kept(K, kk, 0, kk - 1)].mean(0)),
    ("mean-of-rows", "gather-all", mean(gather(x, argsort(key)), 0), lambda X, K, kk: X.mean(0)),
    ("index-order", "complement-topk", gather(x, comp), lambda X, K, kk: X[kept(K, kk, 0, kk)]),
    ("index-order", "sorted-head", gather(x, sort_indices(head_k, N)), lambda X, K, kk: X[np.sort(order(K)[:kk])]),
    ("index-order", "middle-asc", gather(x, complement(argsort(key)[1:k], N)),
     lambda X, K, kk: X[kept(K, kk, 1, kk, False)]),
    ("index-order", "tail", gather(key, complement(argsort(key, True)[k - 1:], N)),
     lambda X, K, kk: K[np.sort(order(K)[:kk - 1])]),
    ("index-order", "all", gather(x, complement(argsort(key, True), N)), lambda X, K, kk: X[:0]),
    *[("sorted-range-sum", f"{name}-{'desc' if d else 'asc'}",
       sum_over(v, sort_by_key(key, key, d)[v] * sort_by_key(x, key, d)[v]), sorted_range(lo, hi, d))
      for name, v, lo, hi in [("k..N", index("r", k, N), lambda kk, n: kk, lambda kk, n: n),
                              ("0..k", index("r", 0, k), lambda kk, n: 0, lambda kk, n: kk),
                              ("1..k", index("r", 1, k), lambda kk, n: 1, lambda kk, n: kk),
                              ("0..N", r, lambda kk, n: 0, lambda kk, n: n)]
      for d in (True, False)],
    *[("sort-to-kth", f"desc={d}", sort_by_key(x, key, d), lambda X, K, kk, d=d: X[order(K, d)])
      for d in (True, False)],
    ("kth-to-rank", "all-r", stack_over(r, kth_largest(x, key, r)), lambda X, K, kk: X[order(K)]),
    ("kth-to-rank", "smallest-k-1", kth_smallest(x, key, k - 1), lambda X, K, kk: X[order(K, False)[kk - 1]]),
    *[("stable-rank", f"desc={d}", rank_of(key, d), lambda X, K, kk, d=d: ranks(K, d)) for d in (True, False)],
    *[("shared-rank", f"desc={d}", stable_ranked(d), lambda X, K, kk, d=d: ranks(K, d)) for d in (True, False)],
    ("index-stack", "lo+e", S1[k - 1], lambda X, K, kk: X[kk - 1]),
    ("index-stack", "body", stack_over(r, key[r] * x[r])[k - 1], lambda X, K, kk: K[kk - 1] * X[kk - 1]),
    ("index-stack", "axis-1", S1[:, 0], lambda X, K, kk: X[:, 0]),
    ("slice-stack", "tail", S1[k - 1:], lambda X, K, kk: X[kk - 1:]),
    ("slice-stack", "middle", S1[1:k], lambda X, K, kk: X[1:kk]),
    ("index-slice", "start", x[k - 1:][0], lambda X, K, kk: X[kk - 1]),
    ("index-slice", "in-stack", stack_over(index("i", N - 1), x[1:][index("i", N - 1)]), lambda X, K, kk: X[1:]),
    ("delta-elim", "plus", sum_over(j, delta(j - (k - 1)) * x[j]), lambda X, K, kk: X[kk - 1]),
    ("delta-elim", "minus", sum_over(j, delta(k - 1 - j) * key[j]), lambda X, K, kk: K[kk - 1]),
    ("delta-elim", "alone", sum_over(j, delta(j - (k - 1))), lambda X, K, kk: np.float64(1.0)),
    ("delta-elim", "middle-factor", stack_over(i, sum_over(j, key[j] * delta(j - i) * x[i])),
     lambda X, K, kk: K[:, None] * X),
    ("delta-elim", "ragged", stack_over(i, sum_over(j_upto_i, delta(j_upto_i - i) * x[j_upto_i])), lambda X, K, kk: X),
    ("step-of-constant", "signs",
     stack_over(i, heaviside(i + 1) * x[i] + 2.0 * delta(k - N - 1) * x[i] + 4.0 * heaviside(N - k + 1) * x[i]
                + 8.0 * delta(k - k) * x[i] + 16.0 * heaviside(0.0) * x[i] + 32.0 * delta(0.0) * x[i]
                + 64.0 * heaviside(-0.5) * x[i] + 128.0 * heaviside(0.5) * x[i]
                + 256.0 * sum_over(j_below_i, heaviside(j_below_i - i)) * x[i]),
     lambda X, K, kk: (1 + 4 + 8 + 32 + 128) * X),
    ("unit", "neutral",
     stack_over(i, const(1.0) * x[i] * 1 + 0.0 + key[i] * 0.0 * x[i] + (0.0 + key[i]) * x[i]),
     lambda X, K, kk: X + K[:, None] * X),
    ("mask-first", "fused", sum_over(i, heaviside(key[i] - key[0]) * (key[i] * x[i])),
     lambda X, K, kk: ((K > K[0]) * K) @ X),
    ("mask-first", "two-masks", stack_over(i, (heaviside(i - k + 1) * delta(key[i] - key[0])) * (key[i] * x[i])),
     lambda X, K, kk: ((np.arange(len(K)) >= kk) * (K == K[0]) * K)[:, None] * X),
]

# (rule, output node, largest k): the rule's pattern with its side condition failing, or a near miss
NEGATIVE: dict[str, list[tuple]] = {
    "topk-gather": [(gather(x, comp), N), (gather(x, argsort(key, True)), N)],
    "argsort-gather": [(gather(x, topk(key, k)), N), (gather(x, comp_head), N),
                       (gather(x[1:], argsort(key, True)[:k - 1]), N)],  # x[1:] has N - 1 rows, key N
    "mean-of-rows": [(mean(x, 0), N), (mean(x[k - 1:], 0), N),  # rows not moved by an order
                     (mean(sort_by_key(x, key), 1), N)],  # a mean over channels
    "index-order": [(gather(x, complement(topk(key, k), N - 1)), N - 1),  # the complement of N - 1, key has N
                    (gather(x[1:], complement(topk(key, k), N)), N),  # x[1:] has N - 1 rows
                    (gather(x, head_k), N)],  # not a complement
    "complement-sum": [(sum_over(m, gather(key, comp)[m] * x[m]), N),  # m used outside the gathers
                       # the complement of the top k among the first N - 1 tokens only, not of all of them
                       (sum_over(index("m", N - 1 - k), gather(x, complement(topk(key, k), N - 1))[
                           index("m", N - 1 - k)]), N - 1),
                       # an ascending head is the k smallest: its complement is not the tail of a descending sort
                       (sum_over(m, gather(x, complement(argsort(key)[:k], N))[m]), N)],
    "sorted-range-sum": [(sum_over(r, sort_by_key(x, key, True)[r] * key[r]), N),  # r used outside the sort
                         (sum_over(r, sort_by_key(x, key, True)[r] * sort_by_key(key, key, False)[r]), N),
                         (stack_over(i, sum_over(j_upto_i, sort_by_key(x, key, True)[j_upto_i])), N)],  # ragged
    "sort-to-kth": [(gather(x, argsort(key)), N), (kth_largest(x, key, 0), N)],
    "kth-to-rank": [(sort_by_key(x, key), N), (rank_of(key), N)],
    "stable-rank": [(kth_largest(x, key, 0), N), (gather(x, argsort(key)), N)],
    "distinct-rank": [(kth_largest(x, key, 0), N), (gather(x, argsort(key)), N)],
    "shared-rank": [(rank_of(key), N),  # not yet expanded
                    # a tie-break over j <= i counts token i itself: not the stable rank, nothing to share
                    (stack_over(i, NUM_GREATER[i] + sum_over(j_upto_i, delta(key[j_upto_i] - key[i]))), N)],
    "index-stack": [(stack_over(r, stack_over(r, key * key[r])[:, r]), N), (x[0], N)],  # moving [:, r] in captures r
    "slice-stack": [(S1[:, :1], N), (x[1:], N)],
    "index-slice": [(x[:, 1:][0], N), (x[0], N)],
    "delta-elim": [(sum_over(j, delta(j - k) * x[j]), N),  # k may be N: out of range
                   (stack_over(i, sum_over(j_below_i, delta(j_below_i - i) * x[j_below_i])), N),  # i not < i
                   (sum_over(j, delta(2 * j - (k - 1)) * x[j]), N), (sum_over(j, delta(key[j]) * x[j]), N)],
    "step-of-constant": [(stack_over(i, heaviside(N - k) * x[i] + delta(N - k) * x[i] + heaviside(i) * x[i]
                                     + delta(i - 1) * x[i] + heaviside(key[i]) * x[i]), N)],
    "unit": [(stack_over(i, 0.0 * x[i] + 2.0 * x[i] * 3 + key[i] * 0.5), N)],
    "mask-first": [(stack_over(i, key[i] * (key[i] * x[i])), N),  # not a 0/1 mask: rounding would change
                   (stack_over(i, heaviside(key[i]) * (x[i] * key[i])), N),  # the tensor is not on the right
                   (stack_over(i, heaviside(key[i]) * (key[i] * key[0])), N)],  # nothing to save on scalars
}


def closed(out, k_max=N):
    return program("t", [x, key], out, sizes={k: (1, k_max)})


def rewrite(prog, name):
    steps: list = []
    return run_pass(prog, Pass("t", (ALL_RULES[name],)), steps), steps


@functools.cache
def case_programs(n: int):
    rule, _, out, _ = CASES[n]
    before = closed(out)
    after, steps = rewrite(before, rule)
    return before, after, steps


def evaluate(prog, X, K, kk):
    return compile(prog, "numpy")(x=X, key=K, k=kk)


def oracle_all(f, X, K, kk):
    return np.stack([np.asarray(f(Xb, Kb, kk), dtype=np.float64) for Xb, Kb in zip(X, K)])


def check(before, after, f, X, K, kk):
    want = oracle_all(f, X, K, kk)
    for prog in (before, after):
        np.testing.assert_allclose(evaluate(prog, X, K, kk), want, rtol=1e-12, atol=1e-9)


FLOATS = st.floats(-10, 10, allow_subnormal=False)
KEYS = {"continuous": FLOATS, "few": st.sampled_from([-1.0, 0.0, 0.5]), "distinct": FLOATS}


@st.composite
def instances(draw, kind, max_n=5):
    b, n, c = draw(st.integers(1, 2)), draw(st.integers(1, max_n)), draw(st.integers(1, 3))
    X = draw(hnp.arrays(np.float64, (b, n, c), elements=FLOATS))
    if kind == "equal":
        K = np.full((b, n), draw(FLOATS))
    else:
        K = draw(hnp.arrays(np.float64, (b, n), elements=KEYS[kind], unique=kind == "distinct"))
    return X, K, draw(st.integers(1, n))


IDS = [f"{c[0]}:{c[1]}" for c in CASES]


@pytest.mark.parametrize("n", range(len(CASES)), ids=IDS)
def test_rule_fires_and_is_right_at_the_edges(n):
    rule, _, _, f = CASES[n]
    before, after, steps = case_programs(n)
    assert steps and {s.rule for s in steps} == {rule}
    assert after != before
    rng = np.random.default_rng(n)
    for size, K in [(1, rng.normal(size=(2, 1))), (3, np.full((2, 3), 0.25)), (4, np.array([[1.0, 2, 1, 2]] * 2))]:
        X = rng.normal(size=(2, size, 2))
        for kk in sorted({1, size}):
            check(before, after, f, X, K, kk)


@pytest.mark.parametrize("kind", ["continuous", "few", "equal"])
@pytest.mark.parametrize("n", range(len(CASES)), ids=IDS)
@settings(deadline=None)
@given(data=st.data())
def test_rule_preserves_the_value(n, kind, data):
    before, after, _ = case_programs(n)
    check(before, after, CASES[n][3], *data.draw(instances(kind)))


RANK_PROGRAMS = {d: closed(rank_of(key, d)) for d in (True, False)}


@functools.cache
def distinct_ranked(d: bool):
    after, steps = rewrite(RANK_PROGRAMS[d], "distinct-rank")
    assert steps and {s.rule for s in steps} == {"distinct-rank"}
    return after


@pytest.mark.parametrize("d", [True, False])
@settings(deadline=None)
@given(inst=instances("distinct", max_n=6))
def test_distinct_rank_is_right_on_distinct_keys(d, inst):
    check(RANK_PROGRAMS[d], distinct_ranked(d), lambda X, K, kk: ranks(K, d), *inst)


@pytest.mark.parametrize("d", [True, False])
def test_distinct_rank_is_wrong_on_ties(d):
    def wrong(inst):
        want = oracle_all(lambda X, K, kk: ranks(K, d), *inst)
        return not np.array_equal(evaluate(distinct_ranked(d), *inst), want)
    X, K, kk = find(instances("few"), wrong, settings=settings(database=None, derandomize=True, deadline=None))
    got = evaluate(distinct_ranked(d), X, K, kk)
    assert any(len(set(row)) < len(row) for row in K)  # the counterexample ties
    assert any(sorted(row) != list(range(len(row))) for row in got)  # and its "ranks" are not a permutation


@pytest.mark.parametrize("rule,out,k_max", [(name, *c) for name, cs in NEGATIVE.items() for c in cs],
                         ids=[name for name, cs in NEGATIVE.items() for _ in cs])
def test_rule_does_not_fire_where_its_condition_fails(rule, out, k_max):
    prog = closed(out, k_max)
    after, steps = rewrite(prog, rule)
    assert steps == [] and after == prog


def test_every_rule_is_tested():
    assert {c[0] for c in CASES} | {"distinct-rank"} == set(ALL_RULES)
    assert set(NEGATIVE) == set(ALL_RULES)


def test_mask_first_keeps_a_masked_out_overflow_out():
    """m * (b * X) is NaN where m = 0 and b * X overflows; (m * b) * X is 0 there, as selecting would give."""
    prog = closed(stack_over(i, heaviside(key[i] - 1.0) * (key[i] * x[i])))
    after, steps = rewrite(prog, "mask-first")
    assert [s.rule for s in steps] == ["mask-first"]
    X, K = np.full((1, 2, 1), 1e300), np.array([[-1e300, 2.0]])  # token 0 is masked out, and key * x = -inf
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isnan(evaluate(prog, X, K, 1)[0, 0, 0])
        np.testing.assert_array_equal(evaluate(after, X, K, 1), [[[0.0], [2e300]]])
