"""`linearize cost PROGRAM`: operation counts of the linearized form (--model ops) or its MPC cost (--model mpc)."""

from __future__ import annotations

import argparse
import json

from .forms import PIPELINE_HELP, PIPELINE_NAMES, pipeline, size_arg, size_syms


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="a built-in program name or module:attr (linearized first unless it is)")
    parser.add_argument("--n", type=int, default=196, help="tokens besides CLS, N (default 196: ViT-B/16 at 224)")
    parser.add_argument("--k", type=int, default=None,
                        help="tokens kept, 1 <= k <= N (default ceil(0.7 N): 138 at N = 196)")
    parser.add_argument("--c", type=int, default=768, help="channels, C (default 768)")
    parser.add_argument("--h", type=int, default=12, help="heads, H (default 12)")
    parser.add_argument("--size", action="append", default=[], type=size_arg, metavar="NAME=VALUE",
                        help="any other size the program has, e.g. --size r=16 --size D=64 for POMT (repeat)")
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
    from ..verify.cost import COUNTS, OPTIONAL, CostError, cost, describe
    from . import UsageError

    if args.k is None and args.n >= 1:
        from ..ir.program import keep_rate_to_k
        args.k = keep_rate_to_k(0.7, args.n)
    if min(args.n, args.k or 0, args.c, args.h) < 1 or args.k > args.n:
        raise UsageError(f"need N, C, H >= 1 and 1 <= k <= N, got N = {args.n}, k = {args.k}, C = {args.c}, "
                         f"H = {args.h}")
    prog = get(args.program)
    sizes = program_sizes(prog, args)
    passes = pipeline(args.pipeline)
    form = prog if is_linearized(prog) else linearize(prog, passes).result
    if args.model == "mpc":
        return _mpc(args, prog, form, sizes)
    try:
        result = cost(form)
    except CostError as e:
        raise UsageError(str(e)) from None
    data = describe(result, sizes)  # program_sizes gave every size the program has a value
    data["pipeline"] = None if form is prog else args.pipeline
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    how = "as written" if form is prog else f"linearized with the {args.pipeline} pipeline"
    print(f"{result.program} ({how}) at {_at(sizes)}:")
    for name in COUNTS:
        if name in OPTIONAL and data["formulas"][name] == "0":  # exponentials: only softmaxes (POMT) have any
            continue
        print(f"  {name:<16} {data[name]:>14,}   {data['formulas'][name]}")
    _early_note(prog, sizes)
    return 0


def program_sizes(prog: object, args: argparse.Namespace) -> dict[str, int]:
    """The program's sizes at which to count: N, k, C, H from their options, any other from --size; every size the
    program has must have a value, in its range."""
    from . import UsageError
    syms = size_syms(prog)
    named = {"N": args.n, "k": args.k, "C": args.c, "H": args.h}
    extra = dict(args.size)
    for name in extra:
        if name in named:
            raise UsageError(f"give {name} with --{name.lower()}, not --size")
        if name not in syms:
            raise UsageError(f"{prog.name} has no size {name}; its sizes are {', '.join(syms)}")
    sizes = {name: value for name, value in {**named, **extra}.items() if name in syms}
    missing = [name for name in syms if name not in sizes]
    if missing:
        raise UsageError(f"{prog.name} needs the size {missing[0]}: pass --size {missing[0]}=VALUE")
    env = {syms[name]: value for name, value in sizes.items()}
    for c in prog.constraints:
        lo, hi = c.lo.value(env), c.hi.value(env)
        if not lo <= env[c.size] <= hi:
            raise UsageError(f"{c.size.name} out of range: need {c.lo} <= {c.size.name} <= {c.hi}, got "
                             f"{c.size.name} = {env[c.size]}")
    return sizes


def _at(sizes: dict[str, int]) -> str:
    return ", ".join(f"{name} = {value}" for name, value in sizes.items())


def _early_note(prog: object, sizes: dict[str, int]) -> None:
    syms = size_syms(prog)
    env = {syms[name]: value for name, value in sizes.items()}
    taken = next((e for e in prog.early_returns if e.holds(env)), None)
    if taken is not None:
        print(f"  ({taken.condition} returns early: the counts are those of the main branch)")


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
    print(f"{result.program} ({how}) under MPC at {_at(sizes)}:")
    print(f"  {'':<21} {'linearized':>14} {'sorting net':>14}   formula (linearized)")
    for name in COUNTS + DEPTHS:
        print(f"  {name:<21} {data[name]:>14,} {alt[name]:>14,}   {formula_text(result.formulas[name])}")
    print(f"  sorting net: {alt['name']} (docs/cost.md)")
    print(f"  model: {PROTOCOL}")
    _early_note(prog, sizes)
    return 0
