"""ONNX export of a module from to_module(), with the batch axis dynamic, and the check of its node types.

`ALLOWED` is the documented allow-list for an exported selection: arithmetic (exp too) and comparisons, casts,
reductions (sum, mean, max as a value), matrix products (MatMul, Einsum), static slicing and reshapes,
concatenation. `DATA_DEPENDENT`
lists the ONNX ops whose work or memory access depends on the values (sorting, top-k, indexing by a tensor,
scatter, control flow); a graph of a whole model (a ViT with its Conv, LayerNormalization, Softmax) is
checked against that list instead. torch.onnx (the torch.export-based exporter) writes the static slices of
the generated code as Slice with constant starts and the singleton axes as Unsqueeze, so no Gather appears.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterable
from typing import Any

ALLOWED: frozenset[str] = frozenset({
    # elementwise arithmetic, comparisons and casts
    "Add", "Sub", "Mul", "Div", "Neg", "Greater", "Less", "Equal", "GreaterOrEqual", "LessOrEqual", "Not", "And",
    "Or", "Cast", "CastLike", "Exp",
    # reductions and products
    "ReduceSum", "ReduceMean", "ReduceMax", "MatMul", "Einsum",
    # static layout: slices with constant bounds, singleton axes, transposes, reshapes, concatenation
    "Slice", "Squeeze", "Unsqueeze", "Transpose", "Reshape", "Expand", "Concat", "Constant", "Identity",
})

DATA_DEPENDENT: frozenset[str] = frozenset({
    "TopK", "Sort", "ArgMax", "ArgMin", "Gather", "GatherElements", "GatherND", "Scatter", "ScatterElements",
    "ScatterND", "NonZero", "Unique", "Compress", "Loop", "If", "Scan",
})


def op_types(model: Any) -> list[str]:
    """Every node type in an onnx.ModelProto, subgraphs and local functions included, sorted."""
    from onnx import AttributeProto

    found: set[str] = set()

    def visit(nodes: Iterable[Any]) -> None:
        for n in nodes:
            found.add(n.op_type)
            for a in n.attribute:
                if a.type == AttributeProto.GRAPH:
                    visit(a.g.node)
                elif a.type == AttributeProto.GRAPHS:
                    for g in a.graphs:
                        visit(g.node)

    visit(model.graph.node)
    for f in model.functions:
        visit(f.node)
    return sorted(found)


def export_onnx(module: Any, path: str, *, example_inputs: tuple[Any, ...] | None = None,
                input_names: list[str] | None = None, output_names: list[str] | None = None,
                opset: int | None = None) -> Any:
    """Write `module` to `path` as ONNX with the leading (batch) axis of every input dynamic; return the model.

    For a module from to_module() the example inputs (batch 2) and the names come from its `input_shapes`.
    Opsets from 18 (and the default) go through torch.onnx's torch.export-based exporter; 12 to 17 (Einsum
    needs 12) through its TorchScript exporter, which writes those opsets directly. torch.onnx's progress
    messages and warnings are kept off the terminal.
    """
    import onnx
    import torch

    shapes = getattr(module, "input_shapes", None)
    if example_inputs is None:
        if shapes is None:
            raise ValueError("example_inputs are needed for a module that does not come from to_module()")
        example_inputs = tuple(torch.rand(2, *s) for s in shapes.values())
    names = input_names or (list(shapes) if shapes else [f"input_{i}" for i in range(len(example_inputs))])
    output_names = output_names or ["out"]
    if opset is not None and opset < 18:  # torch.onnx's torch.export path starts at opset 18: the TorchScript one
        kwargs: dict[str, Any] = {"dynamo": False, "opset_version": opset, "input_names": names,
                                  "output_names": output_names, "dynamic_axes": {n: {0: "batch"} for n in names}}
    else:
        batch = torch.export.Dim("batch")
        kwargs = {"dynamo": True, "input_names": names, "output_names": output_names,
                  "dynamic_shapes": tuple({0: batch} for _ in names)}
        if opset is not None:
            kwargs["opset_version"] = opset
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example_inputs, path, **kwargs)
    finally:
        module.train(was_training)
    model = onnx.load(path)
    onnx.checker.check_model(model)
    return model


def forbidden_ops(model: Any, allowed: frozenset[str] | None = ALLOWED) -> list[str]:
    """The node types outside `allowed` (or, with allowed=None, those in DATA_DEPENDENT)."""
    types = op_types(model)
    if allowed is None:
        return [t for t in types if t in DATA_DEPENDENT]
    return [t for t in types if t not in allowed]
