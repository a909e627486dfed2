"""What the benchmark scripts share: interleaved timing and this process's peak memory. The scripts run as
`python benchmarks/bench_*.py`, so this folder is on their import path."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def timed(fns: dict[str, Callable[[], Any]], runs: int, calls: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, interleaved: one batch of `calls` calls of each per round, so that a
    busy moment of a shared machine slows every implementation alike."""
    for f in fns.values():  # warm up: plans, thread pools, caches
        f()
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                f()
            out[name].append((time.perf_counter() - t0) / calls)
    return out


def process_memory() -> dict[str, int]:
    """This process's peak (VmHWM) and current (VmRSS) resident memory, in bytes."""
    with open("/proc/self/status") as fh:
        return {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in fh)
                if k in ("VmHWM", "VmRSS")}
