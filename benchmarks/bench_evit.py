"""The official EViT token selection vs the compiled linearized EViT, side by side in one process.

    python benchmarks/bench_evit.py [--threads 2] [--runs 9] [--no-memory] [--configs ...] [--impls ...]
                                    [--scaling] [--steps] [--json OUT]

For DeiT-S (C=384, H=6) and ViT-B/16 (C=768, H=12) at B=64, N+1=197, keep rate 0.7 (k = ceil(0.7 * 196) = 138),
and B=1, N+1=17 (C=384, H=6, k=12), float32, it times, interleaved (one call of each implementation per round, the
median of --runs rounds; at B=1 a round is 200 calls of each):

- official            `linearize.reference.evit`: the official code path plus that module's input check (isfinite
                      over attn, as the reference does before selecting)
- official core       the official selection alone (topk, complement_idx, gather, weighted sum, cat), no input check
- oblivious/torch, oblivious/numpy   `linearize.compile(linearize(evit).result, backend)`: the default plan, only
                      data-oblivious operations (the comparison matrix, a one-hot matrix product, a matrix-vector
                      product for the fused token)
- sort/torch, sort/numpy   the same with `strategy="sort"`: the rank by a stable sort, the kept rows moved by index
                      (data-dependent)

Each linearized call checks its inputs (shapes, dtypes, finiteness of x and attn) and runs its cached plan.
`--scaling` runs B=8, C=384, H=6 at N+1 = 17, 33, 65, 197, 401, 577 and 1025 instead (keep rate 0.7). `--steps`
times the oblivious/torch call's parts instead: its input check and each step of its plan, beside the official
core and the whole call.

The torch implementations are timed in one interleaved run with the two official ones, and the numpy ones in
another, with the official ones again: numpy's BLAS workers spin on after each call, on the cores torch's next
call needs. Each row's ratios are to the official times of its own run (the official rows shown are the torch
run's).

Every output is checked against the official reference before timing: the kept rows must be equal, the fused token
equal to 1e-5. The peak memory of one call is measured in a fresh subprocess per implementation: the rise of the
resident set's high-water mark (VmHWM, reset through /proc/self/clear_refs) over the resident set before the call,
after one warm-up call (so the plan is built and the libraries are loaded), with glibc's mmap threshold fixed at
64 KiB so that freed blocks leave the resident set; for numpy also tracemalloc's peak.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from harness import cpu_model, memory, process_memory, timed

import linearize as L
from linearize.reference import _select
from linearize.reference import evit as official

CONFIGS = {"DeiT-S": (64, 196, 384, 6), "ViT-B/16": (64, 196, 768, 12), "small": (1, 16, 384, 6)}
SCALING = {f"N+1={n + 1}": (8, n, 384, 6) for n in (16, 32, 64, 196, 400, 576, 1024)}
KEEP = 0.7
IMPLS = ("official", "official core", "oblivious/torch", "oblivious/numpy", "sort/torch", "sort/numpy")
SHAPES = {**CONFIGS, **SCALING}


def inputs(config: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    b, n, c, h = SHAPES[config]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n + 1, c, generator=g)
    attn = torch.randn(b, h, n + 1, n + 1, generator=g).softmax(-1)
    return x, attn, L.keep_rate_to_k(KEEP, n)


def implementations(x: torch.Tensor, attn: torch.Tensor, k: int) -> dict[str, Callable[[], Any]]:
    lin = L.linearize(L.programs.get("evit")).result
    xn, an = x.numpy(), attn.numpy()
    out: dict[str, Callable[[], Any]] = {"official": lambda: official(x, attn, k),
                                         "official core": lambda: _select(x, attn, k, stable=False, extra=True)}
    for strategy in ("oblivious", "sort"):
        ft, fn = L.compile(lin, "torch", strategy=strategy), L.compile(lin, "numpy", strategy=strategy)
        out[f"{strategy}/torch"] = lambda ft=ft: ft(x=x, attn=attn, k=k)
        out[f"{strategy}/numpy"] = lambda fn=fn: fn(x=xn, attn=an, k=k)
    return out


def check(config: str) -> dict[str, str]:
    """Each implementation's output against the official reference; returns how each compiled plan ran."""
    x, attn, k = inputs(config)
    want = official(x, attn, k).numpy()
    lin = L.linearize(L.programs.get("evit")).result
    strategies = {}
    for name, f in implementations(x, attn, k).items():
        got = np.asarray(f())
        assert got.shape == want.shape and got.dtype == want.dtype, (name, got.shape, got.dtype)
        assert np.array_equal(got[:, :k + 1], want[:, :k + 1]), f"{name}: kept rows differ on {config}"
        np.testing.assert_allclose(got[:, k + 1:], want[:, k + 1:], rtol=1e-5, atol=1e-5, err_msg=name)
    for strategy in ("oblivious", "sort"):
        plan = L.compile(lin, "torch", strategy=strategy).plan(x=x, attn=attn, k=k)
        fast = {s for s in plan.strategies.values() if s not in ("generic", "constant")}
        strategies[strategy] = f"{', '.join(sorted(fast))}; largest array {plan.largest} elements"
    return strategies






def steps(config: str, runs: int) -> None:
    """The oblivious/torch call taken apart: its input check and each step of its plan, on that step's own inputs,
    timed interleaved with the official core and the whole call."""
    x, attn, k = inputs(config)
    f = L.compile(L.linearize(L.programs.get("evit")).result, "torch")
    plan = f.plan(x=x, attn=attn, k=k)
    vals: dict[int, Any] = {**plan.consts, **{slot: {"x": x, "attn": attn}[name] for name, slot in plan.inputs.items()}}
    fns: dict[str, Callable[[], Any]] = {"official core": lambda: _select(x, attn, k, stable=False, extra=True),
                                         "oblivious/torch": lambda: f(x=x, attn=attn, k=k),
                                         "input check": lambda: f.validate(x=x, attn=attn, k=k)}
    for s in plan.steps:
        args = [vals[i] for i in s.ins]
        vals[s.out] = s.fn(*args)
        fns[f"{s.strategy}: {str(s.node)[:48]}"] = lambda fn=s.fn, args=args: fn(*args)
    times = timed(fns, runs)
    core = statistics.median(times["official core"])
    print(f"\n## {config}, the oblivious/torch call taken apart (median ms, / official core)")
    for name, ts in times.items():
        print(f"{name:<60} {statistics.median(ts) * 1e3:8.3f} {statistics.median(ts) / core:6.2f}x")


def memory_child(config: str, impl: str) -> None:
    """One call of one implementation in this fresh process: print its peak memory as JSON."""
    import tracemalloc
    x, attn, k = inputs(config)
    f = implementations(x, attn, k)[impl]
    f()  # warm up: the plan, the libraries
    gc.collect()
    before = process_memory()["VmRSS"]
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current resident set
    tracemalloc.start()
    out = f()
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = process_memory()["VmHWM"] - before
    print(json.dumps({"rss_peak": peak, "traced_peak": traced, "out_bytes": int(np.asarray(out).nbytes)}))






def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--runs", type=int, default=9, help="interleaved rounds; the median is reported (default 9)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--configs", nargs="+", choices=list(SHAPES), default=None, help="which sizes to run")
    ap.add_argument("--scaling", action="store_true", help="B=8, C=384, H=6 at N+1 = 17 ... 1025")
    ap.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS),
                    help="which implementations to time (default all; the official ones always run, as the "
                         "ratios' denominators): e.g. torch only, so that numpy's BLAS threads do not share the "
                         "cores with torch's")
    ap.add_argument("--steps", action="store_true", help="time the oblivious/torch call's input check and each "
                                                        "plan step instead, beside the official core")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--memory-child", nargs=2, metavar=("CONFIG", "IMPL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0
    print(f"# {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"numpy {np.__version__}, float32, keep rate {KEEP}, median of {args.runs} interleaved rounds")
    results: dict[str, Any] = {"threads": args.threads, "runs": args.runs, "cpu": cpu_model(), "configs": {}}
    configs = args.configs or list(SCALING if args.scaling else CONFIGS)
    if args.steps:
        for config in configs:
            steps(config, args.runs)
        return 0
    for config in configs:
        b, n, c, h = SHAPES[config]
        strategies = check(config)
        x, attn, k = inputs(config)
        calls = 200 if b == 1 else 1
        chosen = ["official", "official core", *(i for i in args.impls if not i.startswith("official"))]
        fns = implementations(x, attn, k)
        times: dict[str, list[float]] = {}
        base: dict[str, tuple[float, float]] = {}  # each row's official and official core, from its own run
        for side in ("torch", "numpy"):  # apart: numpy's BLAS workers spin on after each call, on torch's cores
            group = [name for name in chosen if name.endswith("/" + side)]
            if not group and (side == "numpy" or times):
                continue
            run = timed({name: fns[name] for name in ["official", "official core", *group]}, args.runs, calls)
            ref = (statistics.median(run["official"]), statistics.median(run["official core"]))
            for name, ts in run.items():
                if name not in times:
                    times[name], base[name] = ts, ref
        med = {name: statistics.median(ts) for name, ts in times.items()}
        unit, scale = ("us", 1e6) if b == 1 else ("ms", 1e3)
        print(f"\n## {config}: B={b}, N+1={n + 1}, C={c}, H={h}, k={k}   (outputs checked against the official code)")
        print(f"{'implementation':<18} {'median ' + unit:>10} {'min ' + unit:>10} {'/ official':>11} {'/ core':>8}"
              f" {'peak MiB':>9} {'traced MiB':>11}")
        entry: dict[str, Any] = {"B": b, "N+1": n + 1, "C": c, "H": h, "k": k, "unit": unit,
                                 "strategies": strategies, "impls": {}}
        for name in chosen:
            mem = None if args.no_memory or b == 1 else memory(__file__, config, name, args.threads)
            peak = f"{mem['rss_peak'] / 2**20:9.1f}" if mem else f"{'-':>9}"
            traced = f"{mem['traced_peak'] / 2**20:11.1f}" if mem and "numpy" in name else f"{'-':>11}"
            print(f"{name:<18} {med[name] * scale:10.3f} {min(times[name]) * scale:10.3f} "
                  f"{med[name] / base[name][0]:10.2f}x {med[name] / base[name][1]:7.2f}x {peak} {traced}")
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
