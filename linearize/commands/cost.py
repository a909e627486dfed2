from __future__ import annotations

import argparse
import json

PIPELINES = ("shared", "default", "seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="a built-in program name or module:attr (linearized first unless it is)")
    parser.add_argument("--n", type=int, default=196, help="tokens besides CLS, N (default 196: ViT-B/16 at 224)")
    parser.add_argument("--k", type=int, default=138, help="tokens kept, 1 <= k <= N (default 138 = ceil(0.7 N))")
    parser.add_argument("--c", type=int, default=768, help="channels, C (default 768)")
    parser.add_argument("--h", type=int, default=12, help="heads, H (default 12)")
    parser.add_argument("--pipeline", choices=PIPELINES, default="shared",
                        help="the passes that linearize the program (default shared: one comparison per pair)")
    parser.add_argument("--json", action="store_true", help="one JSON object: the counts at the sizes and formulas")


def run(args: argparse.Namespace) -> int:
    from ..cli import UsageError
    from ..cost import COUNTS, CostError, cost, describe
    from ..form import is_linearized
    from ..passes import DEFAULT_PIPELINE, SEED_PIPELINE, SHARED_PIPELINE
    from ..programs import get
    from ..rewrite import linearize

    if min(args.n, args.k, args.c, args.h) < 1 or args.k > args.n:
        raise UsageError(f"need N, C, H >= 1 and 1 <= k <= N, got N = {args.n}, k = {args.k}, C = {args.c}, "
                         f"H = {args.h}")
    prog = get(args.program)
    pipeline = {"shared": SHARED_PIPELINE, "default": DEFAULT_PIPELINE, "seed": SEED_PIPELINE}[args.pipeline]
    form = prog if is_linearized(prog) else linearize(prog, pipeline).result
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
