"""The official ToMe merge vs the compiled linearized ToMe, side by side in one process.

    python benchmarks/bench_tome.py [--threads 2] [--runs 15] [--no-memory] [--json OUT]

At DeiT-S's first ToMe layer (B=64, T=197, C=384, c=64, r=16), float32, and at B=1, it times, interleaved (one
call of each implementation per round, the median of --runs rounds):

- official         `bipartite_soft_matching(metric, r, class_token=True)` then `merge_wavg(merge, x, size)`, as
                   facebookresearch/ToMe's tome/merge.py writes them (transcribed below)
- oblivious/torch  `linearize.compile(linearize(tome).result, "torch")`, the default (data-oblivious) plan; each
                   call checks its inputs (shapes, dtypes, finiteness, size > 0, metric rows with a nonzero norm)
- sort/torch       the same program with strategy="sort" (may sort, gather and scatter)

Every output is checked against the official code before timing (x' to 1e-5, size' exactly). Then the peak memory
of one call, in a fresh subprocess per implementation: the rise of the resident set's high-water mark (VmHWM,
reset through /proc/self/clear_refs) over the resident set before the call, after one warm-up call.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
from collections.abc import Callable
from typing import Any

import torch
from harness import cpu_model, memory, process_memory, timed

import linearize as L

CONFIGS = {"DeiT-S": (64, 197, 384, 64, 16), "B=1": (1, 197, 384, 64, 16)}  # B, T, C, c, r
IMPLS = ("official", "oblivious/torch", "sort/torch")


# --- tome/merge.py, as written (the distillation branch left out: a class token, no distillation token) ----------
def do_nothing(x: torch.Tensor, mode: str | None = None) -> torch.Tensor:
    return x


def bipartite_soft_matching(metric: torch.Tensor, r: int, class_token: bool = False) -> tuple[Callable, Callable]:
    protected = 0
    if class_token:
        protected += 1
    t = metric.shape[1]
    r = min(r, (t - protected) // 2)
    if r <= 0:
        return do_nothing, do_nothing
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        a, b = metric[..., ::2, :], metric[..., 1::2, :]
        scores = a @ b.transpose(-1, -2)
        if class_token:
            scores[..., 0, :] = -math.inf
        node_max, node_idx = scores.max(dim=-1)
        edge_idx = node_max.argsort(dim=-1, descending=True)[..., None]
        unm_idx = edge_idx[..., r:, :]  # Unmerged Tokens
        src_idx = edge_idx[..., :r, :]  # Merged Tokens
        dst_idx = node_idx[..., None].gather(dim=-2, index=src_idx)
        if class_token:
            unm_idx = unm_idx.sort(dim=1)[0]

    def merge(x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
        src, dst = x[..., ::2, :], x[..., 1::2, :]
        n, t1, c = src.shape
        unm = src.gather(dim=-2, index=unm_idx.expand(n, t1 - r, c))
        src = src.gather(dim=-2, index=src_idx.expand(n, r, c))
        dst = dst.scatter_reduce(-2, dst_idx.expand(n, r, c), src, reduce=mode)
        return torch.cat([unm, dst], dim=1)
    return merge, do_nothing


def merge_wavg(merge: Callable, x: torch.Tensor, size: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    if size is None:
        size = torch.ones_like(x[..., 0, None])
    x = merge(x * size, mode="sum")
    size = merge(size, mode="sum")
    x = x / size
    return x, size


# --- the implementations ---------------------------------------------------------------------------------------
def inputs(config: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    b, t, c, cm, r = CONFIGS[config]
    g = torch.Generator().manual_seed(seed)
    x, metric = torch.randn(b, t, c, generator=g), torch.randn(b, t, cm, generator=g)
    size = torch.randint(1, 4, (b, t, 1), generator=g).float()  # a later layer's sizes: merged counts
    return x, metric, size, r


def implementations(x: torch.Tensor, metric: torch.Tensor, size: torch.Tensor, r: int) -> dict[str, Callable]:
    lin = L.linearize(L.programs.get("tome")).result
    out: dict[str, Callable[[], Any]] = {
        "official": lambda: merge_wavg(bipartite_soft_matching(metric, r, class_token=True)[0], x, size)}
    for strategy in ("oblivious", "sort"):
        f = L.compile(lin, "torch", strategy=strategy, threads=None)
        out[f"{strategy}/torch"] = lambda f=f: f(x=x, metric=metric, size=size, r=r)
    return out


def check(config: str) -> dict[str, str]:
    """Each implementation's outputs against the official code; returns how each compiled plan ran."""
    x, metric, size, r = inputs(config)
    want = merge_wavg(bipartite_soft_matching(metric, r, class_token=True)[0], x, size)
    for name, f in implementations(x, metric, size, r).items():
        got = f()
        assert got[0].shape == want[0].shape and got[0].dtype == want[0].dtype, name
        torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5, msg=name)
        assert torch.equal(got[1], want[1]), name
    lin = L.linearize(L.programs.get("tome")).result
    strategies = {}
    for strategy in ("oblivious", "sort"):
        plan = L.compile(lin, "torch", strategy=strategy).plan(x=x, metric=metric, size=size, r=r)
        fast = {s for s in plan.strategies.values() if s not in ("generic", "constant")}
        strategies[strategy] = (f"{len(plan.steps)} steps; {', '.join(sorted(fast))}; largest array "
                                f"{plan.largest} elements")
    return strategies






def memory_child(config: str, impl: str) -> None:
    """One call of one implementation in this fresh process: print its peak memory as JSON."""
    f = implementations(*inputs(config))[impl]
    f()  # warm up: the plan, the libraries
    gc.collect()
    before = process_memory()["VmRSS"]
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current resident set
    out = f()
    peak = process_memory()["VmHWM"] - before
    print(json.dumps({"rss_peak": peak, "out_bytes": sum(int(o.nbytes) for o in out)}))






def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--runs", type=int, default=15, help="interleaved rounds; the median is reported (default 15)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=None, help="which sizes to run")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--memory-child", nargs=2, metavar=("CONFIG", "IMPL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0
    print(f"# {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"float32, median of {args.runs} interleaved rounds")
    results: dict[str, Any] = {"threads": args.threads, "runs": args.runs, "cpu": cpu_model(), "configs": {}}
    for config in args.configs or list(CONFIGS):
        b, t, c, cm, r = CONFIGS[config]
        strategies = check(config)
        calls = 20 if b == 1 else 1
        times = timed(implementations(*inputs(config)), args.runs, calls)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        unit, scale = ("us", 1e6) if b == 1 else ("ms", 1e3)
        print(f"\n## {config}: B={b}, T={t}, C={c}, c={cm}, r={r}   "
              "(outputs checked against the official code)")
        print(f"{'implementation':<16} {'median ' + unit:>11} {'min ' + unit:>10} {'/ official':>11} {'peak MiB':>9}"
              f" {'/ official':>11}")
        entry: dict[str, Any] = {"B": b, "T": t, "C": c, "c": cm, "r": r, "unit": unit, "strategies": strategies,
                                 "impls": {}}
        mems = {name: None if args.no_memory or b == 1 else memory(__file__, config, name, args.threads)
                for name in IMPLS}
        for name in IMPLS:
            mem = mems[name]
            peak = f"{mem['rss_peak'] / 2**20:9.1f}" if mem else f"{'-':>9}"
            ratio = (f"{mem['rss_peak'] / mems['official']['rss_peak']:10.2f}x" if mem and mems["official"]
                     else f"{'-':>11}")
            print(f"{name:<16} {med[name] * scale:11.2f} {min(times[name]) * scale:10.2f} "
                  f"{med[name] / med['official']:10.2f}x {peak} {ratio}")
            entry["impls"][name] = {"median_s": med[name], "min_s": min(times[name]), "memory": mem}
        for strategy, text in strategies.items():
            print(f"  {strategy} plan: {text}")
        results["configs"][config] = entry
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
