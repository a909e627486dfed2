"""Token selection inside a timm VisionTransformer, as EViT's Block does it (the mechanics; the public
`apply_evit` is `linearize.timm.apply_evit`, which chooses the selection module).

EViT (youweiliang/evit, evit.py) prunes in the Block, between the attention and the MLP:

    x = x + drop_path(attn(norm1(x)))                 # attn also returns its probabilities
    x = select(x, attn_probs)                          # CLS, the k best tokens, [the fused token]
    x = x + drop_path(mlp(norm2(x)))

timm's Attention computes its output with `scaled_dot_product_attention` and never forms the probabilities,
so the pruned block recomputes the attention explicitly from the block's own modules (qkv, q_norm, k_norm,
softmax, attn_drop, norm, proj), as timm's non-fused path does, and uses those probabilities for the
selection. A listed block's class becomes a subclass with that forward (parameters and state_dict keys
unchanged); `select` is the block's submodule `evit_select`. The model's class becomes a subclass whose
CLS-token pooling is a static slice (`x[:, 0:1]`) instead of `x[:, 0]`, which torch.onnx would write as
Gather. Token counts are static: they follow from the patch grid, the keep rate and the listed blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

_BLOCK_CLASSES: dict[type, type] = {}
_MODEL_CLASSES: dict[type, type] = {}


def attention_with_probs(attn: Any, x: Any) -> tuple[Any, Any]:
    """timm Attention's output for x [B, N, C], and its probabilities [B, H, N, N] (after softmax and
    attn_drop), computed without the fused kernel. q, k and v are static slices of the qkv projection."""
    B, N, _ = x.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    width = heads * head_dim
    qkv = attn.qkv(x)
    q, k, v = (qkv[:, :, i * width:(i + 1) * width].reshape(B, N, heads, head_dim).transpose(1, 2)
               for i in range(3))
    q, k = attn.q_norm(q), attn.k_norm(k)
    probs = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    probs = attn.attn_drop(probs)
    out = (probs @ v).transpose(1, 2).reshape(B, N, width)
    out = attn.norm(out)
    gate = getattr(attn, "gate", None)
    if gate is not None:
        out = out * gate(x).sigmoid()
    return attn.proj_drop(attn.proj(out)), probs


def _evit_block_forward(self: Any, x: Any, attn_mask: Any = None, is_causal: bool = False) -> Any:
    if attn_mask is not None or is_causal:
        raise ValueError("a block with EViT token selection takes no attention mask")
    out, probs = attention_with_probs(self.attn, self.norm1(x))
    x = x + self.drop_path1(self.ls1(out))
    x = self.evit_select(x, probs)
    return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


def _pool_by_slice(self: Any, x: Any, pool_type: str | None = None) -> Any:
    kind = self.global_pool if pool_type is None else pool_type
    if kind == "token" and self.attn_pool is None:
        return x[:, 0:1].squeeze(1)  # the CLS row as a static slice: ONNX Slice, not Gather
    return super(type(self), self).pool(x, pool_type=pool_type)


def _subclass(cache: dict[type, type], base: type, prefix: str, members: dict[str, Any]) -> type:
    if base not in cache:
        cache[base] = type(f"{prefix}{base.__name__}", (base,), {"__module__": __name__, **members})
    return cache[base]


def token_plan(model: Any, keep_rate: float, blocks: Iterable[int], fused_token: bool) -> list[tuple[int, int, int]]:
    """(block, N, k) for each listed block: N the non-CLS tokens entering it, k = ceil(keep_rate * N) kept
    (k == N keeps all, as the official code does). Raises ValueError for a model or arguments it cannot
    handle (one line, naming the problem)."""
    from timm.models.vision_transformer import Block, VisionTransformer

    if not isinstance(model, VisionTransformer):
        raise ValueError(f"expected a timm VisionTransformer, got {type(model).__name__}")
    if model.cls_token is None or model.num_prefix_tokens != 1:
        raise ValueError(f"EViT needs exactly one prefix token, the CLS token (this model has "
                         f"{model.num_prefix_tokens}{'' if model.cls_token is not None else ', no CLS token'})")
    if getattr(model, "dynamic_img_size", False) or getattr(model.patch_embed, "dynamic_img_pad", False):
        raise ValueError("EViT here needs a static image size (dynamic_img_size=False)")
    if isinstance(keep_rate, bool) or not isinstance(keep_rate, int | float) or not 0 < keep_rate <= 1:
        raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate!r}")
    chosen = sorted(set(blocks))
    depth = len(model.blocks)
    if not chosen or any(isinstance(b, bool) or not isinstance(b, int) or not 0 <= b < depth for b in chosen):
        raise ValueError(f"blocks must be indices in 0..{depth - 1}, got {tuple(blocks)}")
    for b in chosen:
        if not isinstance(model.blocks[b], Block):
            raise ValueError(f"block {b} is a {type(model.blocks[b]).__name__}; EViT here needs timm's Block")
    n = model.patch_embed.num_patches
    plan = []
    for b in chosen:
        k = math.ceil(keep_rate * n)  # the official conversion (EViT's Attention.forward)
        plan.append((b, n, k))
        if k < n:
            n = k + 1 if fused_token else k
    return plan


def prune_blocks(model: Any, keep_rate: float, blocks: Iterable[int], fused_token: bool,
                 make_select: Callable[[int, int, int, int], Any]) -> Any:
    """Put a selection after the attention of each listed block (in place; returns the model).

    make_select(N, k, C, H) builds the module called as select(x [B, N+1, C], attn [B, H, N+1, N+1]) ->
    [B, k+2, C] (fused token) or [B, k+1, C]. A model pruned before is restored first, so calling this
    again (say with another mode) replaces the selection."""
    from timm.models.vision_transformer import VisionTransformer

    remove_selection(model)
    plan = token_plan(model, keep_rate, blocks, fused_token)
    dim = model.embed_dim
    for b, n, k in plan:
        block = model.blocks[b]
        block.__class__ = _subclass(_BLOCK_CLASSES, type(block), "EViT", {"forward": _evit_block_forward})
        block.evit_select = make_select(n, k, dim, block.attn.num_heads)
    if isinstance(model, VisionTransformer):
        model.__class__ = _subclass(_MODEL_CLASSES, type(model), "Pruned", {"pool": _pool_by_slice})
    return model


def remove_selection(model: Any) -> Any:
    """Undo prune_blocks: the blocks and the model get their timm classes back (in place)."""
    for block in getattr(model, "blocks", ()):
        if type(block) in _BLOCK_CLASSES.values():
            block.__class__ = type(block).__bases__[0]
            del block.evit_select
    if type(model) in _MODEL_CLASSES.values():
        model.__class__ = type(model).__bases__[0]
    return model
