"""`linearize bounds PROGRAM`: sound bounds on the output over a box around the given inputs (docs/bounds.md)."""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

from .forms import add_size_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="a built-in program name or module:attr")
    parser.add_argument("--inputs", required=True, help=".npz with the box centres, batched (x: [B, N+1, C], "
                                                         "attn: [B, H, N+1, N+1])")
    parser.add_argument("--eps", type=float, help="the box's half-width for every input (centre +- eps)")
    parser.add_argument("--eps-x", type=float, help="the half-width for x (overrides --eps)")
    parser.add_argument("--eps-attn", type=float, help="the half-width for attn (overrides --eps)")
    add_size_arguments(parser)
    parser.add_argument("--out", help=".npz to write: lower, upper and, for a selection, rank_lower, rank_upper, "
                                      "status")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--ties", choices=("any", "stable"), default="any",
                        help="bound every order of tied scores, as torch.topk may order them, or only the stable "
                             "one (default: any)")
    parser.add_argument("--naive", action="store_true",
                        help="plain interval propagation, every undecided heaviside/delta as [0, 1] (for comparison)")
    parser.add_argument("--backend", choices=("numpy", "torch"), default="numpy",
                        help="the array library that computes the bounds (default: numpy)")


def _eps(args: argparse.Namespace, name: str) -> float:
    from . import UsageError
    own = {"x": args.eps_x, "attn": args.eps_attn}.get(name)
    eps = own if own is not None else args.eps
    if eps is None:
        raise UsageError(f"no half-width for input {name}: give --eps" + (f" or --eps-{name}" if name in ("x", "attn")
                                                                           else ""))
    if not math.isfinite(eps) or eps < 0:
        raise UsageError(f"the half-width for {name} must be a finite number >= 0, got {eps}")
    return eps


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..ir.program import InputError
    from ..programs import get
    from ..verify.bounds import bounds
    from . import UsageError
    from .eval import given_sizes, program_inputs

    prog = get(args.program)
    arrays = program_inputs(prog, args.inputs)
    eps = {name: _eps(args, name) for name in prog.input_names}
    sizes = given_sizes(prog, args, arrays)
    lower, upper, exact = {}, {}, {}
    for name in prog.input_names:
        centre = arrays[name]
        if eps[name] == 0:
            exact[name] = centre
        else:
            if centre.dtype.kind != "f":
                raise InputError(f"{name} must be a floating-point array, got {centre.dtype}")
            lower[name], upper[name] = centre - centre.dtype.type(eps[name]), centre + centre.dtype.type(eps[name])
    start = time.perf_counter()
    b = bounds(prog, lower, upper, backend=args.backend, ties=args.ties, naive=args.naive, **exact, **sizes)
    seconds = time.perf_counter() - start
    lo, hi = (a.numpy() if hasattr(a, "numpy") else np.asarray(a) for a in (b.lower, b.upper))
    status, counts = b.status, b.summary()
    summary: dict[str, Any] = {
        "program": prog.name, "sizes": sizes, "k": b.k, "eps": eps, "ties": args.ties, "naive": args.naive,
        "shape": list(lo.shape),
        "mean_width": counts["mean_width"], "max_width": counts["max_width"],
        "kept": counts.get("kept"), "dropped": counts.get("dropped"), "undecided": counts.get("undecided"),
        "out": args.out, "seconds": round(seconds, 3)}
    if args.out:
        saved = {"lower": lo, "upper": hi}
        if status is not None:
            saved |= {"rank_lower": np.asarray(b.rank_lower), "rank_upper": np.asarray(b.rank_upper),
                      "status": status}
        try:
            np.savez(args.out, **saved)
        except OSError as e:
            raise UsageError(f"cannot write {args.out}: {e.strerror or e}") from None
    if args.json:
        print(json.dumps(summary))
        return 0
    box = ", ".join(f"+-{eps[n]:g} on {n}" for n in prog.input_names)
    given = ", ".join(f"{name} = {value}" for name, value in sizes.items())
    print(f"{prog.name}: bounds over the box {box}{', ' + given if given else ''}"
          f"{', naive propagation' if args.naive else ''}")
    if status is None:
        print("tokens: no selection at these sizes (the output is an input)")
    else:
        print(f"tokens: {summary['kept']} certainly kept, {summary['dropped']} certainly dropped, "
              f"{summary['undecided']} undecided (of {status.size}; ties in {args.ties} order)")
    print(f"width: mean {summary['mean_width']:.4g}, max {summary['max_width']:.4g} (output {list(lo.shape)})")
    if args.out:
        print(f"wrote {args.out}: {', '.join(saved)}")
    return 0
