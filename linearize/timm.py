"""EViT's token selection in a timm VisionTransformer, with the official code or the linearized module.

    import timm, linearize.timm
    model = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    linearize.timm.apply_evit(model, keep_rate=0.7, blocks=(3, 6, 9), mode="linearized")

The mechanics (recomputing timm's fused attention probabilities, the block's forward, the static token
counts) are in linearize/export/timm.py; this module chooses the selection: `mode="official"` runs
linearize.reference's transcription of the official EViT code (torch.topk, complement_idx, gather),
`mode="linearized"` a module from `to_module` (data-oblivious: comparisons, sums and one-hot products,
exportable to ONNX without TopK, Sort or Gather).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .export.module import to_module
from .export.timm import attention_with_probs, prune_blocks, remove_selection, token_plan
from .programs import get
from .rewrite import linearize
from .verify.reference import REFERENCES

__all__ = ["OfficialSelection", "apply_evit", "attention_with_probs", "remove_selection", "token_plan"]

MODES = ("linearized", "official")


class OfficialSelection(torch.nn.Module):
    """The official code path (linearize.reference.evit or .topk) at a fixed k, as a module."""

    def __init__(self, program: str, k: int):
        super().__init__()
        self.program, self.k = program, k
        self.select = REFERENCES[program]["official"]

    def forward(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        return self.select(x, attn, self.k)

    def extra_repr(self) -> str:
        return f"{self.program}, k={self.k}"


def apply_evit(model: Any, keep_rate: float = 0.7, blocks: Iterable[int] = (3, 6, 9), mode: str = "linearized", *,
               fuse_token: bool = True, validate: bool = True) -> Any:
    """Prune tokens after the attention of each listed block of a timm VisionTransformer, as EViT does.

    Each listed block keeps the CLS token and the k = ceil(keep_rate * N) tokens with the largest head-averaged
    CLS attention (N the non-CLS tokens entering it), plus, with fuse_token, one token fusing the rest
    weighted by their attention (`evit`; without it `topk`). mode="official" selects with the official code,
    "linearized" with the data-oblivious module (validate: its input checks in eager calls). Modifies the
    model in place and returns it; calling again replaces the selection.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    name = "evit" if fuse_token else "topk"
    if mode == "official":
        def make(n: int, k: int, c: int, h: int) -> torch.nn.Module:
            return OfficialSelection(name, k)
    else:
        program = linearize(get(name)).result

        def make(n: int, k: int, c: int, h: int) -> torch.nn.Module:
            return to_module(program, N=n, k=k, C=c, H=h, validate=validate)
    return prune_blocks(model, keep_rate, blocks, fuse_token, make)
