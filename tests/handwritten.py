"""Hand-written EViT and Top-K linearizations, as a careful user would write them: correct variants, and mutants
with one planted bug each. Also a DynamicViT-like program with a score vector, a value tensor and a size other
than k, with its torch reference. Imported by the tests, and by name (`handwritten:dyn`) from the CLI."""

from __future__ import annotations

from linearize import (
    cat,
    complement,
    define,
    delta,
    gather,
    heaviside,
    index,
    mean,
    program,
    sizes,
    stack_over,
    sum_over,
    tensor,
    topk,
)


def _sides(ref: str, cls_key: bool = False):
    N, C, H, k = sizes("N C H k")
    x, attn = tensor("x", N + 1, C), tensor("attn", H, N + 1, N + 1)
    s = define("cls_attn", mean(attn[:, 0, 0:N] if cls_key else attn[:, 0, 1:], axis=0))
    return N, k, x, attn, s


def evit_variant(name: str, *, ref: str = "evit", rank_offset: int = 0, tie: str = "before", strict: bool = True,
                 descending: bool = True, reversed_order: bool = False, mask: str = "dropped", weight: str = "score",
                 early: bool = True, cls_key: bool = False, rows: str = "tokens", kept_form: str = "delta",
                 rank_form: str = "counts"):
    """EViT (ref="evit") or Top-K (ref="topk") written with ranks; each keyword plants one change."""
    N, k, x, attn, s = _sides(ref, cls_key)
    i, j, r = index("i", N), index("j", N), index("r", k)
    step = heaviside if strict else (lambda v: 1.0 - heaviside(-v))  # strict x > 0, or the planted x >= 0
    gap = (lambda a, b: a - b) if descending else (lambda a, b: b - a)
    if rank_form == "pairwise":  # one sum: j ranks before i if its key is larger, or equal and j < i
        rank = define("rank", i, sum_over(j, heaviside(s[j] - s[i]) + delta(s[j] - s[i]) * heaviside(i - j)))
    elif rank_form == "ascending":  # from the ascending rank (ties: the higher index first), reversed
        asc = define("asc", i, sum_over(j, heaviside(s[i] - s[j])) + sum_over(index("j", i + 1, N),
                                                                             delta(s[index("j", i + 1, N)] - s[i])))
        rank = define("rank", i, (N - 1) - asc[i])
    else:
        num_greater = define("num_greater", i, sum_over(j, step(gap(s[j], s[i]))))
        tie_var = {"before": index("j", i), "after": index("j", i + 1, N)}.get(tie)
        body = num_greater[i] + sum_over(tie_var, delta(s[tie_var] - s[i])) if tie_var is not None else \
            num_greater[i]
        rank = define("rank", i, body)
    target = (k - 1 - r) if reversed_order else (r + rank_offset)
    row = {"tokens": x[i + 1], "cls-shift": x[i]}[rows]
    if kept_form == "reversed":  # the tokens visited from the last: token N - i has rank rank[N - 1 - i]
        kept = stack_over(r, sum_over(i, delta(rank[N - 1 - i] - target) * x[N - i]))
    else:
        kept = stack_over(r, sum_over(i, delta(rank[i] - target) * row))
    cls = x[0][None] if kept_form == "const-index" else x[0:1]
    if ref == "topk":
        out = cat(cls, kept)
    else:
        m = {"dropped": heaviside(rank[i] - k + 1), "off-by-one": heaviside(rank[i] - k),
             "includes-last-kept": heaviside(rank[i] - k + 2), "kept": heaviside(k - rank[i]),
             "one-minus-kept": 1.0 - sum_over(r, delta(rank[i] - r)),
             "zero-rank": heaviside(rank[i] - 0 - k + 1)}[mask]
        w = {"score": s[i], "none": 1.0, "squared": s[i] * s[i]}[weight]
        out = cat(cls, kept, sum_over(i, m * w * x[i + 1])[None])
    return program(name, [x, attn], out, sizes={k: (1, N)}, early_returns=[(k, N, x)] if early else [],
                   meta={"reference": ref})


def fused_without_weight_over_topk():
    """The program prove used to accept: kept rows still gather(topk(...)), the fused token hand-written without
    its weight, declared as evit. prove compared its linearized form with its own original, not with evit."""
    N, k, x, attn, s = _sides("evit")
    i, j = index("i", N), index("j", N)
    num_greater = define("num_greater", i, sum_over(j, heaviside(s[j] - s[i])))
    rank = define("rank", i, num_greater[i] + sum_over(index("j", i), delta(s[index("j", i)] - s[i])))
    fused = sum_over(i, heaviside(rank[i] - k + 1) * x[i + 1])
    return program("gather-topk-unweighted", [x, attn], cat(x[0:1], gather(x[1:], topk(s, k)), fused[None]),
                   sizes={k: (1, N)}, early_returns=[(k, N, x)], meta={"reference": "evit"})


MUTANTS = {  # name -> (program factory); each has one planted bug
    "rank off by one": lambda: evit_variant("m-rank", rank_offset=1),
    "fused range off by one": lambda: evit_variant("m-fused-range", mask="off-by-one"),
    "fused token includes the last kept": lambda: evit_variant("m-fused-last", mask="includes-last-kept"),
    "fused token sums the kept tokens": lambda: evit_variant("m-fused-kept", mask="kept"),
    "fused token without its weights": lambda: evit_variant("m-unweighted", weight="none"),
    "fused token weighted by the squared score": lambda: evit_variant("m-squared", weight="squared"),
    "non-strict heaviside (>=)": lambda: evit_variant("m-nonstrict", strict=False),
    "no tie-break": lambda: evit_variant("m-no-tie", tie="none"),
    "reversed tie-break": lambda: evit_variant("m-tie-reversed", tie="after"),
    "ascending order": lambda: evit_variant("m-ascending", descending=False),
    "kept rows in reverse order": lambda: evit_variant("m-reverse-rows", reversed_order=True),
    "CLS read as a token": lambda: evit_variant("m-cls-row", rows="cls-shift"),
    "CLS attention read as a score": lambda: evit_variant("m-cls-key", cls_key=True),
    "missing early return": lambda: evit_variant("m-no-early", early=False),
    "gather(topk) with an unweighted fused token": fused_without_weight_over_topk,
    "top-k: rank off by one": lambda: evit_variant("t-rank", ref="topk", rank_offset=1),
    "top-k: no tie-break": lambda: evit_variant("t-no-tie", ref="topk", tie="none"),
    "top-k: ascending order": lambda: evit_variant("t-ascending", ref="topk", descending=False),
}

CORRECT = {  # name -> factory; each equals its reference
    "as derived": lambda: evit_variant("c-derived"),
    "rank written pairwise": lambda: evit_variant("c-pairwise", rank_form="pairwise"),
    "from an ascending rank": lambda: evit_variant("c-ascending", rank_form="ascending"),
    "complement as 1 - kept": lambda: evit_variant("c-one-minus", mask="one-minus-kept"),
    "reversed indices": lambda: evit_variant("c-reversed", kept_form="reversed"),
    "constant indices x[0][None], rank[i] - 0": lambda: evit_variant("c-const", kept_form="const-index",
                                                                     mask="zero-rank"),
    "top-k as derived": lambda: evit_variant("c-topk", ref="topk"),
    "top-k with reversed indices": lambda: evit_variant("c-topk-reversed", ref="topk", kept_form="reversed"),
}


# --- a DynamicViT-like program: a score vector, a value tensor, and `keep` instead of k -----------------------------
def dyn(bug: str = ""):
    """cat(x[:1], gather(x[1:], topk(score, keep)), one row: the score-weighted sum of the dropped tokens' values)."""
    N, C, keep = sizes("N C keep")
    x, score, v = tensor("x", N + 1, C), tensor("score", N), tensor("v", N + 1, C)
    key = -score if bug == "bottom" else score
    idx = topk(key, keep)
    dropped = complement(idx, N)
    m = index("m", N - keep)
    vals = gather(v[1:], dropped)
    weights = gather(score, dropped)
    fused = sum_over(m, weights[m] * vals[m])
    return program(f"dyn{'-' + bug if bug else ''}", [x, score, v], cat(x[:1], gather(x[1:], idx), fused[None]),
                   sizes={keep: (1, N - 1)}, roles={"x": "feature", "score": "score", "v": "value"})


def dyn_bottom():
    return dyn("bottom")


def _dyn_reference(x, score, v, keep, key):
    """The torch reference, ranking by `key`: a stable descending sort (ties: the lower index first)."""
    import torch
    order = torch.sort(key, dim=1, descending=True, stable=True).indices
    idx, rest = order[:, :keep], order[:, keep:]
    c = x.shape[-1]
    kept = torch.gather(x[:, 1:], 1, idx[..., None].expand(-1, -1, c))
    vals = torch.gather(v[:, 1:], 1, rest[..., None].expand(-1, -1, c))
    fused = (torch.gather(score, 1, rest)[..., None] * vals).sum(dim=1, keepdim=True)
    return torch.cat([x[:, :1], kept, fused], dim=1)


def dyn_reference(x, score, v, keep):
    """The torch reference: a stable descending sort of the scores (ties: the lower index first)."""
    return _dyn_reference(x, score, v, keep, score)


def dyn_reference_bottom(x, score, v, keep):
    """Bottom-k: the same with the scores negated (a stable sort of -score)."""
    return _dyn_reference(x, score, v, keep, -score)


def dyn_wrong_reference(x, score, v, keep):
    """A reference that forgets the fused row's weights: everything should refute the programs against it."""
    out = dyn_reference(x, score, v, keep).clone()
    import torch
    order = torch.sort(score, dim=1, descending=True, stable=True).indices
    rest = order[:, keep:]
    vals = torch.gather(v[:, 1:], 1, rest[..., None].expand(-1, -1, x.shape[-1]))
    out[:, -1] = vals.sum(dim=1)
    return out


# --- a program that divides by a size: the dropped tokens' mean ----------------------------------------------------
def evit_mean():
    """EViT with the fused token the *mean* of the dropped tokens: prove needs exact rational arithmetic."""
    N, C, H, k = sizes("N C H k")
    x, attn = tensor("x", N + 1, C), tensor("attn", H, N + 1, N + 1)
    s = define("cls_attn", mean(attn[:, 0, 1:], axis=0))
    idx = topk(s, k)
    m = index("m", N - k)
    rest = gather(x[1:], complement(idx, N))
    fused = sum_over(m, rest[m]) / (N - k)
    return program("evit-mean", [x, attn], cat(x[0:1], gather(x[1:], idx), fused[None]), sizes={k: (1, N)},
                   early_returns=[(k, N, x)])


def evit_mean_reference(x, attn, k):
    import torch
    n = x.shape[1] - 1
    if k == n:
        return x
    s = attn[:, :, 0, 1:].mean(dim=1)
    order = torch.sort(s, dim=1, descending=True, stable=True).indices
    c = x.shape[-1]
    kept = torch.gather(x[:, 1:], 1, order[:, :k, None].expand(-1, -1, c))
    rest = torch.gather(x[:, 1:], 1, order[:, k:, None].expand(-1, -1, c))
    return torch.cat([x[:, :1], kept, rest.mean(dim=1, keepdim=True)], dim=1)
