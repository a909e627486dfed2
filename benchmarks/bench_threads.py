"""torch thread counts for the compiled linearized EViT: one thread, torch's default, and compile's "auto".

    python benchmarks/bench_threads.py [--runs 9] [--batches 1 4 16 64] [--json OUT]

At ViT-B/16 sizes (N+1 = 197, C = 768, H = 12, keep rate 0.7, float32) for each batch size B, and at B = 1,
N+1 = 17, C = 384, H = 6. torch's thread pool keeps spinning for a while after a parallel op, so thread settings
are not mixed in one process: one subprocess runs with torch's default thread count and one with
torch.set_num_threads(1), and each times, interleaved (one batch of calls of each per round, the median of --runs
rounds), the official core selection and `linearize.compile(linearize(evit).result, "torch", threads=None)`
(the process's setting); the default-thread process also times threads="auto", which runs a call on one thread
below linearize.eval.compiled.SMALL_CALL input elements. Outputs are checked against the official code first.
Ratios are to the official core in the same process: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import torch
from harness import timed

import linearize as L
from linearize.eval.compiled import SMALL_CALL
from linearize.reference import _select
from linearize.reference import evit as official

KEEP = 0.7


def inputs(b: int, n: int, c: int, h: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, n + 1, c, generator=g)
    attn = torch.randn(b, h, n + 1, n + 1, generator=g).softmax(-1)
    return x, attn, L.keep_rate_to_k(KEEP, n)


def implementations(x: torch.Tensor, attn: torch.Tensor, k: int, auto: bool) -> dict[str, Callable[[], Any]]:
    lin = L.linearize(L.programs.get("evit")).result
    f, fa = L.compile(lin, "torch", threads=None), L.compile(lin, "torch", threads="auto")
    fns = {"official core": lambda: _select(x, attn, k, stable=False, extra=True),
           "linearized": lambda: f(x=x, attn=attn, k=k)}
    if auto:
        fns["linearized, auto"] = lambda: fa(x=x, attn=attn, k=k)
    return fns




def child(threads: int, runs: int, configs: list[tuple[int, int, int, int]]) -> list[dict[str, Any]]:
    """In this process, at `threads` torch threads: the medians of each implementation at each size."""
    torch.set_num_threads(threads)
    out = []
    for b, n, c, h in configs:
        x, attn, k = inputs(b, n, c, h)
        want = official(x, attn, k)
        fns = implementations(x, attn, k, auto=threads > 1)
        for name, f in fns.items():
            got = f()
            assert torch.equal(got[:, :k + 1], want[:, :k + 1]), name
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        elements = x.numel() + attn.numel()
        times = timed(fns, runs, calls=max(1, int(2e6 // elements)))
        out.append({"B": b, "N+1": n + 1, "C": c, "H": h, "elements": elements,
                    "median_s": {name: statistics.median(ts) for name, ts in times.items()},
                    "min_s": {name: min(ts) for name, ts in times.items()}})
    return out


def _cell(r: dict[str, Any], name: str) -> str:
    unit, scale = ("us", 1e6) if r["elements"] < 2e6 else ("ms", 1e3)
    t, base = r["median_s"][name], r["median_s"]["official core"]
    return f"{t * scale:.1f} {unit}" + ("" if name == "official core" else f" ({t / base:.2f}x)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=9, help="interleaved rounds; the median is reported (default 9)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64], help="batch sizes at ViT-B/16")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    configs = [(1, 16, 384, 6)] + [(b, 196, 768, 12) for b in args.batches]
    if args.child:
        print(json.dumps(child(args.child, args.runs, configs)))
        return 0
    default = torch.get_num_threads()
    print(f"# {os.cpu_count()} cores, torch {torch.__version__}, default {default} threads, float32, keep rate "
          f"{KEEP}, median of {args.runs} interleaved rounds; auto = 1 thread below {SMALL_CALL:,} input elements")
    runs = {}
    for threads in (default, 1):
        cmd = [sys.executable, __file__, "--child", str(threads), "--runs", str(args.runs),
               "--batches", *map(str, args.batches)]
        runs[threads] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    print(f"\n| B | N+1 | C | H | input elements | {default} threads: official core | linearized | linearized, auto "
          f"| 1 thread: official core | linearized |")
    print("|---:" * 10 + "|")
    for many, one in zip(runs[default], runs[1]):
        cells = [_cell(many, "official core"), _cell(many, "linearized"), _cell(many, "linearized, auto"),
                 _cell(one, "official core"), _cell(one, "linearized")]
        print(f"| {many['B']} | {many['N+1']} | {many['C']} | {many['H']} | {many['elements']:,} | "
              f"{' | '.join(cells)} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"default_threads": default, "runs": args.runs, "results": runs}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
