from __future__ import annotations

import argparse
import json

from .forms import PIPELINE_HELP, PIPELINE_NAMES, pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="a built-in program name or module:attr (a linearized program is compared "
                                        "with its original, e.g. evit-seed with evit)")
    parser.add_argument("--max-n", type=int, default=6, help="settle every n <= N tokens (default 6)")
    parser.add_argument("--json", action="store_true", help="one JSON object: program, max_n, regions, ok, "
                                                            "counterexample, seconds (and no progress bar)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--pipeline", choices=PIPELINE_NAMES, default="default", help=PIPELINE_HELP)
    parser.add_argument("--channels", type=int, default=1,
                        help="channels to settle when a program is not channel-generic (default 1)")


def run(args: argparse.Namespace) -> int:
    from ..programs import get
    from ..verify.prove import ProveError, prove
    from . import UsageError
    from .progress import Bar, wanted

    if not 1 <= args.max_n <= 9:
        raise UsageError(f"--max-n must be between 1 and 9, got {args.max_n}")
    if args.jobs < 1 or args.channels < 1:
        raise UsageError(f"--jobs and --channels must be >= 1, got {args.jobs} and {args.channels}")
    passes = pipeline(args.pipeline)
    try:
        with Bar(wanted(args), 0, "region") as bar:
            result = prove(get(args.program), max_n=args.max_n, pipeline=passes, jobs=args.jobs,
                           channels=args.channels, progress=lambda done, total, n: bar.update(done, total, f"n = {n}"))
    except ProveError as e:
        raise UsageError(str(e)) from None
    if args.json:
        data = result.to_dict()
        print(json.dumps({key: data[key] for key in ("program", "max_n", "regions", "ok", "counterexample",
                                                     "seconds", "channel_generic")}, indent=2))
    elif result.ok:
        channels = "every C" if result.channel_generic else f"C = {args.channels}"
        print(f"{result.program}: proved for n <= {result.max_n}: {result.regions:,} regions (weak ordering of the "
              f"scores, k) settled, features symbolic, {channels}, in {result.seconds:.1f} s")
    else:
        settled = f"{result.regions:,} region{'' if result.regions == 1 else 's'}"
        print(f"{result.program}: refuted after {settled} settled; the first failing ordering:")
        print(result.counterexample)
    return 0 if result.ok else 1
