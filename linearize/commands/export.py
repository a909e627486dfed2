"""`linearize export PROGRAM --onnx OUT.onnx --n N --k K`: the linearized program as an ONNX model."""

from __future__ import annotations

import argparse

from .forms import PIPELINE_HELP, PIPELINE_NAMES, pipeline, size_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="a built-in program name or module:attr (linearized first unless it is)")
    parser.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    parser.add_argument("--n", type=int, required=True, help="tokens besides CLS, N (static)")
    parser.add_argument("--k", type=int, default=None, help="tokens kept, 1 <= k <= N (static; for a program with k)")
    parser.add_argument("--c", type=int, default=768, help="channels, C (static; default 768)")
    parser.add_argument("--h", type=int, default=12, help="heads, H (static; default 12)")
    parser.add_argument("--size", action="append", default=[], type=size_arg, metavar="NAME=VALUE",
                        help="any other static size the program has, e.g. --size r=16 --size D=64 for POMT (repeat)")
    parser.add_argument("--opset", type=int, default=None,
                        help="the ONNX opset, 12 or newer (default: torch.onnx's, 18 or newer)")
    parser.add_argument("--pipeline", choices=PIPELINE_NAMES, default="default", help=PIPELINE_HELP)


def run(args: argparse.Namespace) -> int:
    import os

    from ..ir.form import is_linearized
    from ..programs import get
    from ..rewrite import linearize
    from . import UsageError

    try:
        import onnx
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise UsageError(f"export needs onnx, onnxscript and onnxruntime ({e}): pip install 'linearize[export]'") \
            from None
    newest = onnx.defs.onnx_opset_version()
    if args.opset is not None and not 12 <= args.opset <= newest:
        raise UsageError(f"--opset must be between 12 (Einsum) and {newest} (this onnx), got {args.opset}")
    folder = os.path.dirname(os.path.abspath(args.onnx))
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write {args.onnx}: no such directory {folder}")
    prog = get(args.program)
    if args.k is None and _has_size(prog, "k"):
        raise UsageError(f"{prog.name} needs --k (tokens kept, static)")
    for name, _ in args.size:
        if name in ("N", "k", "C", "H"):
            raise UsageError(f"give {name} with --{name.lower()}, not --size")
        if not _has_size(prog, name):
            raise UsageError(f"{prog.name} has no size {name}")
    form = prog if is_linearized(prog) else linearize(prog, pipeline(args.pipeline)).result

    import numpy as np
    import torch

    from ..export.module import to_module
    from ..export.onnx import ALLOWED, export_onnx, forbidden_ops, op_types
    sizes = {"N": args.n, "k": args.k, "C": args.c, "H": args.h, **dict(args.size)}
    module = to_module(form, **{name: value for name, value in sizes.items() if _has_size(form, name)})
    model = export_onnx(module, args.onnx, opset=args.opset)
    bad = forbidden_ops(model, ALLOWED)
    if bad:  # the generated code emits only allowed ops: anything else is a bug here
        raise RuntimeError(f"the exported graph has ops outside the allow-list: {', '.join(bad)}")

    # run the file in onnxruntime at two batch sizes and compare with the torch module
    import onnxruntime as ort
    session = ort.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch in (1, 3):
        inputs = {name: torch.rand(batch, *shape, generator=gen) for name, shape in module.input_shapes.items()}
        got = session.run(None, {name: t.numpy() for name, t in inputs.items()})[0]
        want = module(**inputs).numpy()
        if got.shape != want.shape:
            raise RuntimeError(f"onnxruntime gives shape {got.shape}, torch {want.shape}")
        worst = max(worst, float(np.abs(got - want).max()))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    dims = ", ".join(f"{name} = {value}" for name, value in module.sizes.items())
    print(f"wrote {args.onnx}: {form.name} at {dims}, batch axis dynamic, opset {opset}, "
          f"{len(model.graph.node)} nodes: {', '.join(op_types(model))}")
    print(f"onnxruntime at B = 1 and 3 matches the torch module (max |difference| {worst:.3g})")
    return 0


def _has_size(program, name: str) -> bool:
    syms = {s.name for n in program.inputs for d in n.arg[1] for s in d.syms}
    return name in syms | {c.size.name for c in program.constraints}
