from __future__ import annotations

import argparse
import json

from .forms import PIPELINE_HELP, PIPELINE_NAMES, pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="a built-in program name or module:attr (linearized first unless it is)")
    parser.add_argument("--n", type=int, default=196, help="tokens besides CLS, N (default 196: ViT-B/16 at 224)")
    parser.add_argument("--k", type=int, default=None,
                        help="tokens kept, 1 <= k <= N (default ceil(0.7 N): 138 at N = 196)")
    parser.add_argument("--c", type=int, default=768, help="channels, C (default 768)")
    parser.add_argument("--h", type=int, default=12, help="heads, H (default 12)")
    parser.add_argument("--pipeline", choices=PIPELINE_NAMES, default="shared", help=PIPELINE_HELP)
    parser.add_argument("--json", action="store_true", help="one JSON object: the counts at the sizes and formulas")


def run(args: argparse.Namespace) -> int:
    from ..ir.form import is_linearized
    from ..programs import get
    from ..rewrite import linearize
    from ..verify.cost import COUNTS, CostError, cost, describe
    from . import UsageError

    if args.k is None and args.n >= 1:
        from ..ir.program import keep_rate_to_k
        args.k = keep_rate_to_k(0.7, args.n)
    if min(args.n, args.k or 0, args.c, args.h) < 1 or args.k > args.n:
        raise UsageError(f"need N, C, H >= 1 and 1 <= k <= N, got N = {args.n}, k = {args.k}, C = {args.c}, "
                         f"H = {args.h}")
    prog = get(args.program)
    passes = pipeline(args.pipeline)
    form = prog if is_linearized(prog) else linearize(prog, passes).result
    try:
        result = cost(form)
    except CostError as e:
        raise UsageError(str(e)) from None
    data = describe(result, {"N": args.n, "k": args.k, "C": args.c, "H": args.h})
    data["pipeline"] = None if form is prog else args.pipeline
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    how = "as written" if form is prog else f"linearized with the {args.pipeline} pipeline"
    print(f"{result.program} ({how}) at N = {args.n}, k = {args.k}, C = {args.c}, H = {args.h}:")
    for name in COUNTS:
        print(f"  {name:<16} {data[name]:>14,}   {data['formulas'][name]}")
    if args.k == args.n:
        print("  (k == N returns x unchanged: the counts are those of the k < N branch)")
    return 0
