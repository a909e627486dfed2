from __future__ import annotations

import argparse

from .forms import FORMS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="a built-in program name or module:attr")
    parser.add_argument("--inputs", required=True, help=".npz with the program's inputs, batched (x: [B, N+1, C], "
                                                         "attn: [B, H, N+1, N+1])")
    parser.add_argument("--out", required=True, help=".npz to write; holds `out`")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--k", type=int, help="the number of tokens kept, 1 <= k <= N")
    size.add_argument("--keep-rate", type=float, help="k = ceil(R * N), as the official code computes it")
    parser.add_argument("--form", choices=FORMS, default="original")
    parser.add_argument("--backend", choices=("numpy", "torch"), default="numpy")


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


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..eval.compiled import compile
    from ..ir.program import InputError, keep_rate_to_k
    from ..programs import get
    from . import UsageError
    from .forms import program_in_form, reference_fn, reference_name

    prog = get(args.program)
    arrays = load_npz(args.inputs)
    for name in prog.input_names:
        if name not in arrays:
            raise UsageError(f"{args.inputs} has no array {name!r} (it holds {', '.join(arrays) or 'nothing'})")
    inputs = {name: arrays[name] for name in prog.input_names}
    if args.k is not None:
        k = args.k
    else:
        if inputs["x"].ndim != 3:
            raise InputError(f"x must have rank 3 ([B, N + 1, C]), got rank {inputs['x'].ndim}")
        k = keep_rate_to_k(args.keep_rate, inputs["x"].shape[1] - 1)
    # validate against the program whatever the form, so every form rejects the same inputs
    f = compile(prog, args.backend)
    f.prepare({**inputs, "k": k})
    if args.form == "reference":
        import torch
        ref = reference_fn(reference_name(prog) or prog.name)
        out = ref(*(torch.as_tensor(inputs[n]) for n in prog.input_names), k).numpy()
    else:
        out = compile(program_in_form(prog, args.form), args.backend)(**inputs, k=k)
        out = out.numpy() if hasattr(out, "numpy") else np.asarray(out)
    try:
        np.savez(args.out, out=out)
    except OSError as e:
        raise UsageError(f"cannot write {args.out}: {e.strerror or e}") from None
    print(f"wrote {args.out}: out {list(out.shape)} {out.dtype} (k = {k})")
    return 0
