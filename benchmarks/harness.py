"""What the benchmark scripts share: interleaved timing and this process's peak memory. The scripts run as
`python benchmarks/bench_*.py`, so this folder is on their import path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def memory(script: str, config: str, impl: str, threads: int) -> dict[str, int]:
    """Run `script --memory-child CONFIG IMPL` in a fresh process and read the JSON line it prints last."""
    cmd = [sys.executable, script, "--threads", str(threads), "--memory-child", config, impl]
    # every block of 64 KiB or more is its own mapping, returned when freed: the resident set follows what is live
    # (glibc's default threshold rises to 32 MiB once such a block is freed, and a reused heap hides the peak)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(res.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"
