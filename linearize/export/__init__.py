"""Export: linearized programs as torch.nn.Modules made only of data-oblivious operations, and on to ONNX.

`to_module(program, **static_sizes)` generates the module's source from the IR (codegen.py, module.py);
`onnx.py` writes and checks ONNX files; `timm.py` puts a selection module into a timm VisionTransformer.
Importing this package imports no torch: the functions import it when called.
"""

from __future__ import annotations

from .module import module_source, resolve_sizes, to_module

__all__ = ["module_source", "resolve_sizes", "to_module"]
