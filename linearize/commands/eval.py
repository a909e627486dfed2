"""`linearize eval PROGRAM`: evaluate a program, or its torch reference, on batched inputs from an .npz file."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .forms import FORMS, FORMS_HELP, add_size_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="a built-in program name or module:attr")
    parser.add_argument("--inputs", required=True, metavar="IN.npz",
                        help=".npz with the program's inputs by name, batched (x: [B, N+1, C], attn: [B, H, N+1, N+1]; "
                             "POMT's v: [B, H, N+1, D]; DynamicViT's score: [B, N])")
    parser.add_argument("--out", required=True, metavar="OUT.npz",
                        help="the .npz file to write, holding `out` (out_0, out_1, ... for several outputs; .npz is "
                             "appended to a name without it)")
    add_size_arguments(parser)
    parser.add_argument("--form", choices=FORMS, required=True, help=FORMS_HELP)
    parser.add_argument("--backend", choices=("numpy", "torch"), default="numpy",
                        help="the backend for the original and linearized forms (the reference forms are torch "
                             "code and run on torch whatever this says)")
    parser.add_argument("--threads", default="auto", type=_threads,
                        help="torch threads for the original and linearized forms on torch: auto (one thread for "
                             "inputs under 2^23 elements, where more threads cost more than they save; torch's "
                             "default above), or a number")


def _threads(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be auto or a positive integer, got {text!r}")
    return int(text)


def given_sizes(prog: Any, args: argparse.Namespace, inputs: dict) -> dict[str, int]:
    """The sizes the program takes (its signature's given sizes) from --k, --keep-rate and --size."""
    from ..ir.program import InputError, keep_rate_to_k
    from . import UsageError
    sizes: dict[str, int] = {}
    for name, value in args.size:
        if name in sizes or (name == "k" and (args.k is not None or args.keep_rate is not None)):
            raise UsageError(f"size {name} is given twice")
        sizes[name] = value
    unknown = sorted(set(sizes) - set(prog.given_sizes))
    if unknown:
        raise UsageError(f"{prog.name} takes no size {', '.join(unknown)}; it takes "
                         f"{', '.join(prog.given_sizes) or 'none'} besides the sizes of its inputs")
    if (args.k is not None or args.keep_rate is not None) and "k" not in prog.given_sizes:
        raise UsageError(f"{prog.name} takes no k (no keep rate either): it takes "
                         f"{', '.join(f'--size {s}=...' for s in prog.given_sizes) or 'no size'}")
    if args.k is not None:
        sizes["k"] = args.k
    elif args.keep_rate is not None:
        if inputs["x"].ndim != 3:
            raise InputError(f"x must have rank 3 ([B, N + 1, C]), got rank {inputs['x'].ndim}")
        rounding = (prog.meta or {}).get("keep_rate", "ceil")  # the program's official conversion
        sizes["k"] = keep_rate_to_k(args.keep_rate, inputs["x"].shape[1] - 1, rounding)
    for name in prog.given_sizes:
        if name not in sizes:
            how = "--k K or --keep-rate R" if name == "k" else f"--size {name}=VALUE"
            raise UsageError(f"{prog.name} needs the size {name}: pass {how}")
    return sizes


def load_npz(path: str) -> dict:
    import os
    import zipfile

    import numpy as np

    from . import UsageError
    try:
        if os.path.exists(path) and not zipfile.is_zipfile(path):  # np.load would read an .npy, or try a pickle
            raise UsageError(f"{path} is not an .npz file (np.savez writes one)")
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UsageError(f"cannot read {path} as .npz: {e}") from None


def ties_at_selection(scores: Any, k: int) -> list[int]:
    """The batch items whose order of tied scores changes the selection: a score among the k largest that another
    token shares (a tie inside the kept set changes the kept rows' order, one across its edge which token is
    kept). Ties among dropped tokens change nothing: they are summed, or dropped."""
    import numpy as np
    tied = []
    for b, row in enumerate(np.asarray(scores)):
        values, counts = np.unique(row, return_counts=True)
        kept = np.sort(row)[::-1][:k]
        if np.isin(kept, values[counts > 1]).any():
            tied.append(b)
    return tied


def _selection(name: str, tensors: dict, sizes: dict[str, int]) -> tuple[Any, int, str] | None:
    """(the scores the reference ranks [B, N], how many it keeps, the torch call that orders them), when its order
    of tied scores can matter."""
    n = tensors["x"].shape[1] - 1
    if name in ("evit", "topk") and sizes["k"] < n:
        return tensors["attn"][:, :, 0, 1:].mean(dim=1), sizes["k"], "torch.topk"  # as the reference scores tokens
    if name.startswith("dynamicvit"):
        return tensors["score"], sizes["k"], "torch.argsort"
    if name.startswith("pomt") and sizes["r"] > 0 and n - 1 - sizes["r"] > 1:  # pomt, pomt_per_image
        from ..verify.reference_pomt import pomt_metric
        metric = pomt_metric(tensors["attn"], tensors["v"], per_image=name == "pomt_per_image")
        return metric[..., 0], n - 1 - sizes["r"], "torch.argsort"
    return None


def _reference(prog: Any, form: str, inputs: dict, sizes: dict[str, int]) -> Any:
    import torch

    from .forms import reference_fn, reference_name
    name = reference_name(prog) or prog.name
    fn = reference_fn(name, "official" if form == "reference" else "stable")
    tensors = {n: torch.as_tensor(inputs[n]) for n in prog.input_names}
    selection = _selection(name, tensors, sizes) if form == "reference" else None
    if selection is not None:
        scores, kept, call = selection
        tied = ties_at_selection(scores.numpy(), kept)
        if tied:
            items = ", ".join(map(str, tied[:5])) + (", ..." if len(tied) > 5 else "")
            print(f"linearize: warning: tied scores decide which tokens are kept, or their order, keeping {kept} "
                  f"(batch item {items}): --form reference "
                  f"keeps them in {call}'s order, which is arbitrary; --form stable-reference ranks the lower "
                  "token index first, as the linearized form does", file=sys.stderr)
    what = "the official code" if form == "reference" else "a stable sort"
    out = fn(*tensors.values(), *(sizes[s] for s in prog.given_sizes))
    return _numpy(out), f"linearize.reference.{fn.__name__} (torch, {what})"


def _numpy(out: Any) -> Any:
    """An output as numpy: an array, or a tuple of them (a program with several outputs, ToMe's x and size)."""
    import numpy as np
    if isinstance(out, tuple):
        return tuple(_numpy(o) for o in out)
    return out.numpy() if hasattr(out, "numpy") else np.asarray(out)


def _named(out: Any) -> dict[str, Any]:
    """What the .npz holds: `out`, or `out_0`, `out_1`, ... for several outputs, in the program's order."""
    return {f"out_{i}": o for i, o in enumerate(out)} if isinstance(out, tuple) else {"out": out}


def program_inputs(prog: Any, path: str) -> dict[str, Any]:
    """The program's input arrays, by name, from an .npz file; a missing one is a UsageError naming it."""
    from . import UsageError
    arrays = load_npz(path)
    missing = [name for name in prog.input_names if name not in arrays]
    if missing:
        raise UsageError(f"{path} has no array {missing[0]!r} (it holds {', '.join(arrays) or 'nothing'})")
    return {name: arrays[name] for name in prog.input_names}


def output_name(path: str) -> str:
    """The file np.savez writes: it appends .npz to a name without it."""
    return path if path.endswith(".npz") else path + ".npz"


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..eval.compiled import compile
    from ..programs import get
    from . import UsageError
    from .forms import REFERENCE_FORMS, program_in_form

    prog = get(args.program)
    inputs = program_inputs(prog, args.inputs)
    sizes = given_sizes(prog, args, inputs)
    # validate against the program whatever the form, so every form rejects the same inputs
    f = compile(prog, args.backend)
    f.prepare({**inputs, **sizes})
    if args.form in REFERENCE_FORMS:
        out, how = _reference(prog, args.form, inputs, sizes)
    else:
        out = _numpy(compile(program_in_form(prog, args.form), args.backend, threads=args.threads)(**inputs, **sizes))
        how = f"the {args.form} form on {args.backend}"
    path = output_name(args.out)
    named = _named(out)
    try:
        np.savez(path, **named)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
    given = ", ".join(f"{name} = {value}" for name, value in sizes.items())
    arrays = ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in named.items())
    print(f"wrote {path}: {arrays} ({given}), {how}")
    return 0
