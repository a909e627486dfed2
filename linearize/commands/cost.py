"""`linearize cost PROGRAM`: operation counts of the linearized form (--model ops) or its MPC cost (--model mpc)."""

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
    parser.add_argument("--model", choices=("ops", "mpc"), default="ops",
                        help="ops: comparisons, rank tests, multiplications, additions; mpc: secret x secret and "
                             "public x secret products, comparisons, multiplicative depth and rounds (one round per "
                             "comparison layer), beside a bitonic sorting network (docs/cost.md)")
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
    sizes = {"N": args.n, "k": args.k, "C": args.c, "H": args.h}
    if args.model == "mpc":
        return _mpc(args, prog, form, sizes)
    try:
        result = cost(form)
    except CostError as e:
        raise UsageError(str(e)) from None
    try:
        data = describe(result, sizes)
    except ValueError as e:  # a size other than N, k, C, H
        raise UsageError(f"{e}: cost counts at the sizes N, k, C and H, and {result.program} has others") from None
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


def _mpc(args: argparse.Namespace, prog: object, form: object, sizes: dict[str, int]) -> int:
    from ..verify.cost import CostError
    from ..verify.cost_mpc import COUNTS, DEPTHS, PROTOCOL, bitonic, describe, formula_text, mpc_cost
    from . import UsageError
    try:
        result = mpc_cost(form)
    except CostError as e:
        raise UsageError(str(e)) from None
    # EViT's fused token, or not: by the reference the program answers to (read without importing torch)
    ref = (prog.meta or {}).get("reference", prog.name)
    fused = ref == "evit" if ref in ("evit", "topk") else str(form.output.shape[0]) == "k + 2"
    data = describe(result, bitonic(fused), sizes)
    data["pipeline"] = None if form is prog else args.pipeline
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    how = "as written" if form is prog else f"linearized with the {args.pipeline} pipeline"
    alt = data["sorting_network"]
    print(f"{result.program} ({how}) under MPC at N = {args.n}, k = {args.k}, C = {args.c}, H = {args.h}:")
    print(f"  {'':<21} {'linearized':>14} {'sorting net':>14}   formula (linearized)")
    for name in COUNTS + DEPTHS:
        print(f"  {name:<21} {data[name]:>14,} {alt[name]:>14,}   {formula_text(result.formulas[name])}")
    print(f"  sorting net: {alt['name']} (docs/cost.md)")
    print(f"  model: {PROTOCOL}")
    if args.k == args.n:
        print("  (k == N returns x unchanged: the counts are those of the k < N branch)")
    return 0
