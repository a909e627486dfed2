"""POMT, DynamicViT and DynamicViT-ordered at DeiT-S sizes: the official selection (its core, without the
reference's input checks) against the compiled linearized program, data-oblivious plan and sort plan, interleaved.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_methods.py [--runs 15] [--threads 2] [--batch 64]

DeiT-S: N+1 = 197 tokens, C = 384, H = 6 heads (D = 64 per head), keep rate 0.7: DynamicViT keeps
int(196 * 0.7) = 137 tokens; POMT removes r = 58 (it keeps N - 1 - r = 137 and the mean of the rest).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from harness import timed

import linearize as L
from linearize.reference import pomt_metric


def dynamicvit_core(x: torch.Tensor, score: torch.Tensor, k: int, ordered: bool = False) -> torch.Tensor:
    """The official inference path: argsort(score)[:k], then batch_index_select (a gather of rows)."""
    keep = torch.argsort(score, dim=1, descending=True)[:, :k]
    if ordered:
        keep = keep.sort(dim=1).values
    rows = torch.gather(x[:, 1:], 1, keep[..., None].expand(-1, -1, x.shape[-1]))
    return torch.cat([x[:, :1], rows], dim=1)


def pomt_core(x: torch.Tensor, attn: torch.Tensor, v: torch.Tensor, r: int) -> torch.Tensor:
    """POMTForward's selection, per image: the T best rows by metric, then the mean of the r + 1 others."""
    b, n1, c = x.shape
    t = n1 - r - 2
    order = torch.argsort(pomt_metric(attn, v, per_image=True), dim=1, descending=True) + 1
    kept, rest = order[:, :t], order[:, t:]
    mean = torch.gather(x, 1, rest.expand(b, rest.shape[1], c)).mean(dim=1, keepdim=True)
    return torch.cat([x[:, :1], torch.gather(x, 1, kept.expand(b, t, c)), mean], dim=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="interleaved rounds; the median is reported (default 15)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    b, n, c, h, d = args.batch, 196, 384, 6, 64
    k, r = int(n * 0.7), n - 1 - int(n * 0.7)
    x = torch.randn(b, n + 1, c, generator=g)
    score = torch.randn(b, n, generator=g)
    attn = torch.softmax(torch.randn(b, h, n + 1, n + 1, generator=g), dim=-1)
    v = torch.randn(b, h, n + 1, d, generator=g)
    cases = {
        "dynamicvit": ({"x": x, "score": score, "k": k}, lambda: dynamicvit_core(x, score, k)),
        "dynamicvit-ordered": ({"x": x, "score": score, "k": k}, lambda: dynamicvit_core(x, score, k, True)),
        "pomt": ({"x": x, "attn": attn, "v": v, "r": r}, lambda: pomt_core(x, attn, v, r)),
    }
    print(f"# B={b}, N+1={n + 1}, C={c}, H={h}, D={d}, k={k}, r={r}; torch {torch.__version__}, {args.threads} "
          f"threads, float32, median of {args.runs} interleaved rounds")
    print("| program | official core ms | oblivious ms | / official | sort ms | / official |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (kwargs, official) in cases.items():
        lin = L.linearize(L.programs.get(name)).result
        fo = L.compile(lin, "torch")  # the default, data-oblivious plan
        fs = L.compile(lin, "torch", strategy="sort")
        want = official()
        for f in (fo, fs):
            np.testing.assert_allclose(f(**kwargs).numpy(), want.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)
        times = timed({"official": official, "oblivious": lambda f=fo, kw=kwargs: f(**kw),
                       "sort": lambda f=fs, kw=kwargs: f(**kw)}, args.runs)
        ms = {key: 1e3 * statistics.median(t) for key, t in times.items()}
        print(f"| {name} | {ms['official']:.2f} | {ms['oblivious']:.2f} | {ms['oblivious'] / ms['official']:.2f}x "
              f"| {ms['sort']:.2f} | {ms['sort'] / ms['official']:.2f}x |")


if __name__ == "__main__":
    main()
