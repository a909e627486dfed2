"""The module from `to_module` (data-oblivious, exportable) against the official EViT selection, interleaved.

    python benchmarks/bench_export.py [--threads 2] [--runs 9] [--onnx]

For each configuration (B, N+1, C, H; keep rate 0.7, float32) it times, one call of each per round and the
median of --runs rounds:

- official core   the official selection (torch.topk, complement_idx, gather, weighted sum, cat), no input check
- to_module       `linearize.to_module(evit, N, k, C, H, validate=False)`: the generated forward alone
- onnxruntime     (--onnx) the same module exported with `linearize.export.onnx.export_onnx`, run by
                  onnxruntime's CPU provider with as many intra-op threads as --threads

Every output is checked against the official code first (kept rows equal, fused token to 1e-5). It also
reports the largest array the module's forward allocates (elements, recorded per aten call), against
B·k·N·C (what the generic evaluation would build). The machine this was run on was shared: compare the
ratios, measured in the same interleaved run, more than the absolute times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import linearize as L
from linearize.reference import _select
from linearize.reference import evit as official

CONFIGS = [("ViT-B/16", 64, 196, 768, 12), ("DeiT-S", 64, 196, 384, 6), ("B=1, N+1=17", 1, 16, 384, 6),
           ("B=8, N+1=197", 8, 196, 384, 6), ("B=8, N+1=577", 8, 576, 384, 6), ("B=8, N+1=1025", 8, 1024, 384, 6)]


class Largest(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--onnx", action="store_true", help="also time the exported file in onnxruntime")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    evit = L.linearize(L.programs.get("evit")).result
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.runs} interleaved rounds")
    print(f"{'config':<15} {'official core':>14} {'to_module':>11} {'ratio':>6} "
          f"{'onnxruntime':>12} {'largest array':>14} {'B*k*N*C':>12}")
    for name, b, n, c, h in CONFIGS:
        k = L.keep_rate_to_k(0.7, n)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(b, n + 1, c, generator=g)
        attn = torch.randn(b, h, n + 1, n + 1, generator=g).softmax(-1)
        module = L.to_module(evit, N=n, k=k, C=c, H=h, validate=False)
        impls = {"official": lambda x=x, attn=attn, k=k: _select(x, attn, k, stable=False, extra=True),
                 "module": lambda x=x, attn=attn, m=module: m(x, attn)}
        if args.onnx:
            import onnxruntime as ort

            from linearize.export.onnx import export_onnx
            path = os.path.join(tempfile.mkdtemp(), "evit.onnx")
            export_onnx(module, path)
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            feed = {"x": x.numpy(), "attn": attn.numpy()}
            impls["onnxruntime"] = lambda s=session, f=feed: torch.from_numpy(s.run(None, f)[0])
        want = official(x, attn, k)
        with torch.no_grad():
            for label, f in impls.items():
                got = f()
                assert torch.equal(got[:, : k + 1], want[:, : k + 1]), f"{label}: kept rows differ on {name}"
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
            with Largest() as largest:
                module(x, attn)
            times: dict[str, list[float]] = {label: [] for label in impls}
            for _ in range(args.runs):
                for label, f in impls.items():
                    start = time.perf_counter()
                    f()
                    times[label].append(time.perf_counter() - start)
        med = {label: statistics.median(t) for label, t in times.items()}
        ort_text = f"{med['onnxruntime'] * 1e3:10.2f}ms" if "onnxruntime" in med else f"{'-':>12}"
        print(f"{name:<15} {med['official'] * 1e3:12.2f}ms {med['module'] * 1e3:9.2f}ms "
              f"{med['module'] / med['official']:5.2f}x {ort_text} {largest.numel:14,} {b * k * n * c:12,}")


if __name__ == "__main__":
    main()
