"""How tight and how fast linearize.bounds is: against plain interval propagation through the same linearized form
and against the empirical hull of many points of the box, and against the time of one official forward.

    python benchmarks/bench_bounds.py [--samples 256] [--runs 5] [--threads 2] [--json OUT] [--no-time]
                                      [--configs issue,small,DeiT-S]

Widths. For each configuration (x ~ N(0, 1), attn = softmax of N(0, 1) rows, float32, keep rate 0.7 unless
stated) and each eps, the box is centre +- eps on x and attn (or on x alone, "x only"), and the table gives the
mean over the output's entries of upper - lower for
- naive        `linearize.bounds(..., naive=True)`: interval rules alone, every undecided heaviside/delta [0, 1]
- linearize    `linearize.bounds(...)`: with the rank, selected-row and fixed-size-sum rules (ties in any order)
- empirical    max - min of the official code's output (linearize.reference, torch.topk) over --samples points
               of the box: per sample, each token's attention column at its lower or upper corner (all heads
               alike), or every entry at a random corner, or a random interior point; x at its lower corner, its
               upper corner, or every entry at a random corner. The empirical hull is inside the true range, so
               linearize / empirical is an upper bound on how far linearize is from tight.
and the tokens per image whose status is undecided (neither certainly kept nor certainly dropped).

Time. At ViT-B/16, B = 64 (N + 1 = 197, C = 768, H = 12, k = 138), interleaved rounds (one call of each per
round, the median of --runs): the official selection alone (`_select`: topk, complement, gather, weighted sum, cat,
no input check), linearize.bounds with the numpy and torch backends (input checks included), and those input checks
alone (finiteness, shapes and dtypes of both boxes, lower <= upper).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any

import numpy as np
import torch

import linearize as L
from linearize.eval.compiled import Compiled
from linearize.reference import _select
from linearize.reference import evit as official_evit
from linearize.reference import topk as official_topk

CONFIGS = {  # name: (B, N, C, H, k or None for keep rate 0.7, eps values)
    "issue": (16, 8, 4, 3, 5, (1e-3, 1e-2, 1e-1)),  # the EViT example: N = 8, k = 5
    "small": (8, 16, 16, 6, None, (1e-4, 1e-3, 1e-2)),
    "DeiT-S": (2, 196, 384, 6, None, (1e-6, 1e-5, 1e-4, 1e-3)),
}
KEEP = 0.7
OFFICIAL = {"evit": official_evit, "topk": official_topk}


def centre(b: int, n: int, c: int, h: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n + 1, c, generator=g)
    attn = torch.randn(b, h, n + 1, n + 1, generator=g).softmax(-1)
    return x.numpy(), attn.numpy()


def sample(lo: dict, hi: dict, rng: np.random.Generator) -> dict:
    """One point of the box, drawn to reach its extremes (see the module's docstring). Only attention row 0
    (CLS to the tokens) reaches the output; the other rows stay at the centre."""
    x_lo, x_hi, a_lo, a_hi = lo["x"], hi["x"], lo["attn"][:, :, 0], hi["attn"][:, :, 0]
    mode = rng.integers(4)
    if mode < 2:  # each token's column at one corner, all heads alike
        pick = rng.random((a_lo.shape[0], 1, a_lo.shape[2])) < 0.5
    elif mode == 2:
        pick = rng.random(a_lo.shape) < 0.5
    else:
        pick = None
    row = np.where(pick, a_hi, a_lo) if pick is not None else a_lo + rng.random(a_lo.shape) * (a_hi - a_lo)
    attn = (lo["attn"] + hi["attn"]) / 2
    attn[:, :, 0] = row
    mode = rng.integers(3)
    x = x_lo if mode == 0 else x_hi if mode == 1 else np.where(rng.random(x_lo.shape) < 0.5, x_hi, x_lo)
    return {"x": x.astype(np.float32), "attn": attn.astype(np.float32)}


def empirical(name: str, lo: dict, hi: dict, k: int, samples: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    e_lo = e_hi = None
    for _ in range(samples):
        p = sample(lo, hi, rng)
        out = OFFICIAL[name](torch.as_tensor(p["x"]), torch.as_tensor(p["attn"]), k).numpy()
        e_lo = out if e_lo is None else np.minimum(e_lo, out)
        e_hi = out if e_hi is None else np.maximum(e_hi, out)
    return e_lo, e_hi


def width_rows(configs: list[str], samples: int) -> list[dict[str, Any]]:
    rows = []
    for config in configs:
        b, n, c, h, k, eps_values = CONFIGS[config]
        k = k or L.keep_rate_to_k(KEEP, n)
        x, attn = centre(b, n, c, h)
        for name in ("evit", "topk"):
            prog = L.programs.get(name)
            for eps, what in [(e, "x, attn") for e in eps_values] + [(eps_values[-1], "x only")]:
                e = np.float32(eps)
                lo = {"x": x - e, "attn": attn - e if what != "x only" else attn}
                hi = {"x": x + e, "attn": attn + e if what != "x only" else attn}
                start = time.perf_counter()
                tight = L.bounds(prog, lo, hi, k=k)
                seconds = time.perf_counter() - start
                naive = L.bounds(prog, lo, hi, k=k, naive=True)
                e_lo, e_hi = empirical(name, lo, hi, k, samples)
                assert (tight.lower <= e_lo + 1e-5 * (1 + abs(e_lo))).all() and \
                    (e_hi <= tight.upper + 1e-5 * (1 + abs(e_hi))).all(), f"{config} {name} {eps}: not sound"
                s = tight.summary()
                row = {"config": config, "program": name, "B": b, "N": n, "C": c, "H": h, "k": k, "eps": eps,
                       "box": what, "undecided_per_image": s["undecided"] / b,
                       "rank_uncertain_per_image": float((tight.rank_upper > tight.rank_lower).sum()) / b,
                       "naive": float((naive.upper - naive.lower).mean()), "linearize": s["mean_width"],
                       "empirical": float((e_hi - e_lo).mean()), "seconds": seconds}
                rows.append(row)
                print(_fmt_width(row), flush=True)
    return rows


def _fmt_width(r: dict) -> str:
    ratio_naive = r["naive"] / r["linearize"] if r["linearize"] else math.inf
    ratio_emp = r["linearize"] / r["empirical"] if r["empirical"] else math.inf
    return (f"| {r['config']} | {r['program']} | {r['eps']:g} ({r['box']}) | {r['undecided_per_image']:.1f} | "
            f"{r['rank_uncertain_per_image']:.1f} | {r['naive']:.4g} | {r['linearize']:.4g} | {r['empirical']:.4g} | "
            f"{ratio_naive:.1f}x | {ratio_emp:.2f}x | {r['seconds'] * 1e3:.0f} ms |")


def time_rows(runs: int, eps_values: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3)) -> list[dict[str, Any]]:
    b, n, c, h = 64, 196, 768, 12
    x, attn = centre(b, n, c, h)
    k = L.keep_rate_to_k(KEEP, n)
    prog = L.programs.get("evit")
    tx, ta = torch.as_tensor(x), torch.as_tensor(attn)
    calls = {"official selection": lambda: _select(tx, ta, k, stable=False, extra=True)}
    checked = Compiled(L.linearize(prog).result)
    e = np.float32(1e-4)
    lo, hi = {"x": x - e, "attn": attn - e}, {"x": x + e, "attn": attn + e}

    def input_checks(lo: dict = lo, hi: dict = hi) -> None:  # what bounds() checks before it bounds anything
        checked.prepare({**lo, "k": k})
        checked.prepare({**hi, "k": k})
        assert not any(bool((lo[n] > hi[n]).any()) for n in lo)
    calls["the input checks alone (numpy)"] = input_checks
    for eps in eps_values:
        e = np.float32(eps)
        lo, hi = {"x": x - e, "attn": attn - e}, {"x": x + e, "attn": attn + e}
        tlo, thi = ({n_: torch.as_tensor(a) for n_, a in d.items()} for d in (lo, hi))
        calls[f"bounds numpy, eps {eps:g}"] = lambda lo=lo, hi=hi: L.bounds(prog, lo, hi, k=k)
        calls[f"bounds torch, eps {eps:g}"] = lambda lo=tlo, hi=thi: L.bounds(prog, lo, hi, k=k, backend="torch")
    for f in calls.values():  # warm up
        f()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, f in calls.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["official selection"])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append({"what": name, "median_ms": med * 1e3, "min_ms": min(ts) * 1e3, "ratio": med / base})
        print(f"| {name} | {med * 1e3:.1f} ms | {min(ts) * 1e3:.1f} ms | {med / base:.1f}x |", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--no-time", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| config | program | eps (box) | undecided / image | rank-uncertain / image | naive | linearize | "
          "empirical | naive / linearize | linearize / empirical | time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    widths = width_rows([c for c in args.configs.split(",") if c], args.samples)
    timing = []
    if not args.no_time:
        print("\n| ViT-B/16, B = 64 | median | min | / official selection |")
        print("|---|---|---|---|")
        timing = time_rows(args.runs)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"widths": widths, "time": timing, "samples": args.samples, "runs": args.runs,
                       "threads": args.threads}, f, indent=1)


if __name__ == "__main__":
    main()
