"""linearize.timm.apply_evit against a transcription of the official EViT Block run on the same timm weights,
the linearized selection against the official one, and the pruned model through torch.export and ONNX."""

from __future__ import annotations

import copy
import math

import onnxruntime as ort
import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

import linearize
import linearize.timm as LT
from linearize.export.onnx import export_onnx, forbidden_ops
from linearize.reference import complement_idx


def tiny_vit(seed: int = 0, **kw) -> VisionTransformer:
    torch.manual_seed(seed)
    args = dict(img_size=32, patch_size=4, embed_dim=48, depth=6, num_heads=3, num_classes=10)
    model = VisionTransformer(**{**args, **kw}).eval()
    with torch.no_grad():  # larger weights than timm's init: attention far from uniform, so no near-ties
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


def official_evit_logits(model: VisionTransformer, images: torch.Tensor, keep_rate: float, blocks, fuse: bool):
    """The official EViT Attention.forward and Block.forward (youweiliang/evit, evit.py), transcribed, on the
    timm model's own modules; the rest of the forward is timm's."""
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
    for b, blk in enumerate(model.blocks):
        if b not in blocks:
            x = blk(x)
            continue
        B, N, C = x.shape
        a = blk.attn
        h = blk.norm1(x)
        qkv = a.qkv(h).reshape(B, N, 3, a.num_heads, C // a.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * a.scale).softmax(dim=-1)
        tmp = a.proj((attn @ v).transpose(1, 2).reshape(B, N, C))
        x = x + tmp
        left_tokens = math.ceil(keep_rate * (N - 1))
        if left_tokens < N - 1:
            cls_attn = attn[:, :, 0, 1:].mean(dim=1)
            _, idx = torch.topk(cls_attn, left_tokens, dim=1, largest=True, sorted=True)
            index = idx.unsqueeze(-1).expand(-1, -1, C)
            non_cls = x[:, 1:]
            x_others = torch.gather(non_cls, dim=1, index=index)
            if fuse:
                compl = complement_idx(idx, N - 1)
                non_topk = torch.gather(non_cls, dim=1, index=compl.unsqueeze(-1).expand(-1, -1, C))
                non_topk_attn = torch.gather(cls_attn, dim=1, index=compl)
                extra_token = torch.sum(non_topk * non_topk_attn.unsqueeze(-1), dim=1, keepdim=True)
                x = torch.cat([x[:, 0:1], x_others, extra_token], dim=1)
            else:
                x = torch.cat([x[:, 0:1], x_others], dim=1)
        x = x + blk.mlp(blk.norm2(x))
    return model.forward_head(model.norm(x))


@pytest.mark.parametrize("keep_rate,blocks", [(0.7, (1, 3, 4)), (0.5, (0,)), (0.9, (2, 5)), (0.25, (0, 1, 2))])
@pytest.mark.parametrize("fuse", [True, False])
def test_both_modes_equal_the_official_evit_block(keep_rate, blocks, fuse):
    base = tiny_vit()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = official_evit_logits(base, images, keep_rate, blocks, fuse)
        unpruned = base(images)
        official = LT.apply_evit(copy.deepcopy(base), keep_rate, blocks, "official", fuse_token=fuse)(images)
        oblivious = LT.apply_evit(copy.deepcopy(base), keep_rate, blocks, "linearized", fuse_token=fuse)(images)
    assert (want - unpruned).abs().max() > 1e-3  # the pruning changes the logits: the comparison means something
    torch.testing.assert_close(official, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(oblivious, want, rtol=1e-5, atol=1e-5)


def test_keep_rate_one_is_the_unpruned_model():
    base = tiny_vit(1)
    images = torch.randn(2, 3, 32, 32)
    pruned = LT.apply_evit(copy.deepcopy(base), 1.0, (0, 2, 5), "linearized")
    with torch.no_grad():
        torch.testing.assert_close(pruned(images), base(images), rtol=1e-5, atol=1e-5)


def test_token_counts_follow_the_official_conversion():
    model = timm.create_model("deit_small_patch16_224", pretrained=False)
    assert LT.token_plan(model, 0.7, (3, 6, 9), True) == [(3, 196, 138), (6, 139, 98), (9, 99, 70)]
    assert LT.token_plan(model, 0.7, (9, 3), False) == [(3, 196, 138), (9, 138, 97)]
    LT.apply_evit(model, 0.7, (3, 6, 9))
    assert [m.sizes["N"] for m in (model.blocks[b].evit_select for b in (3, 6, 9))] == [196, 139, 98 + 1]


def test_applying_again_replaces_the_selection_and_remove_restores():
    base = tiny_vit(2)
    images = torch.randn(2, 3, 32, 32)
    model = copy.deepcopy(base)
    LT.apply_evit(model, 0.5, (1,), "official")
    LT.apply_evit(model, 0.7, (2, 4), "linearized")
    assert not hasattr(model.blocks[1], "evit_select")
    assert model.blocks[2].evit_select.sizes["k"] == 45  # ceil(0.7 * 64)
    assert model.state_dict().keys() == base.state_dict().keys()
    with torch.no_grad():
        torch.testing.assert_close(model(images), official_evit_logits(base, images, 0.7, (2, 4), True),
                                   rtol=1e-5, atol=1e-5)
        LT.remove_selection(model)
        assert type(model) is VisionTransformer and type(model.blocks[2]) is type(base.blocks[2])
        torch.testing.assert_close(model(images), base(images))


def test_linearize_timm_is_a_lazy_attribute():
    assert linearize.timm is LT


@pytest.mark.parametrize("call,message", [
    (lambda m: LT.apply_evit(torch.nn.Linear(2, 2)), "VisionTransformer"),
    (lambda m: LT.apply_evit(m, keep_rate=0.0), "keep_rate"),
    (lambda m: LT.apply_evit(m, keep_rate=1.5), "keep_rate"),
    (lambda m: LT.apply_evit(m, blocks=(6,)), "blocks must be indices in 0..5"),
    (lambda m: LT.apply_evit(m, blocks=()), "blocks"),
    (lambda m: LT.apply_evit(m, mode="fast"), "mode"),
    (lambda m: LT.apply_evit(tiny_vit(class_token=False, global_pool="avg")), "CLS"),
    (lambda m: LT.apply_evit(tiny_vit(reg_tokens=2)), "prefix"),
])
def test_bad_arguments_are_one_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_vit())


def test_the_pruned_model_exports_with_a_dynamic_batch(tmp_path):
    model = LT.apply_evit(tiny_vit(3), 0.6, (1, 3), "linearized")
    images = torch.randn(2, 3, 32, 32)
    batch = torch.export.Dim("batch")
    exported = torch.export.export(model, (images,), dynamic_shapes=({0: batch},))
    path = tmp_path / "vit.onnx"
    onnx_model = export_onnx(model, str(path), example_inputs=(images,), input_names=["image"])
    assert not forbidden_ops(onnx_model, allowed=None)  # no TopK, Sort, Gather*, Scatter*, NonZero, Loop, If
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        for b in (1, 4):
            x = torch.randn(b, 3, 32, 32)
            want = model(x)
            torch.testing.assert_close(exported.module()(x), want, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(torch.from_numpy(session.run(None, {"image": x.numpy()})[0]), want,
                                       rtol=1e-4, atol=1e-4)
