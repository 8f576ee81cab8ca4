"""The GSAG head's CPU speed-ups change no result: the head against a frozen copy of the
computation it replaced (2026-12-07: the stacked group formation, the key layer as a 1x1
convolution, `var_mean` statistics and the written-out mix in the gate), forward and backward,
on levels in either memory format."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from gsag.models import gsag as G
from gsag.models.layers import resize

IN = [8, 12, 16]
SMALL = dict(head_channels=16, key_channels=8, num_heads=2, fuse_channels=8, dropout=0.0)


@pytest.fixture(autouse=True)
def float64():
    """Double precision: the two computations then agree to rounding, gradients included."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def frozen_group(group: G.GroupFormation, feats: list[Tensor]) -> Tensor:
    """Group formation as it was: stack the levels, score the stack, weighted sum."""
    size = max((f.shape[-2:] for f in feats), key=lambda s: s[0] * s[1])
    stacked = [resize(p(f), size) for p, f in zip(group.proj, feats, strict=True)]
    stacked = torch.stack(stacked, dim=1)
    b, g, _, h, w = stacked.shape  # (B, G, d, H, W)
    scores = group.score(stacked.flatten(0, 1)).view(b, g, 1, h, w)
    weights = (scores + group.level_bias.view(1, g, 1, 1, 1)).softmax(dim=1)
    return (weights * stacked).sum(dim=1)


def frozen_pointwise(x: Tensor, linear: torch.nn.Linear) -> Tensor:
    """A 1x1 convolution with the linear layer's weights, then channel-last."""
    return F.conv2d(x, linear.weight[:, :, None, None], linear.bias).permute(0, 2, 3, 1)


def frozen_key(key: G.KeyLayer, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    b, _, hh, ww = x.shape
    h, dk = key.num_heads, key.key_channels // key.num_heads
    qk = frozen_pointwise(x, key.qk).reshape(b, hh, ww, 2, h, dk)
    v = frozen_pointwise(x, key.v).reshape(b, hh, ww, h, -1)
    q, k = qk[:, :, :, 0].permute(0, 3, 1, 2, 4), qk[:, :, :, 1].permute(0, 3, 1, 2, 4)
    return q, k, v.permute(0, 3, 1, 2, 4)


def frozen_gate(gated: G.GatedPooling, local: Tensor, glob: Tensor) -> Tensor:
    def mean_std(x: Tensor, dim) -> tuple[Tensor, Tensor]:
        var, mean = torch.var_mean(x, dim=dim, unbiased=False)
        return mean, (var + 1e-5).sqrt()

    global_stats = torch.cat([*mean_std(local, (2, 3)), *mean_std(glob, (2, 3))], 1)
    local_stats = torch.stack([*mean_std(local, 1), *mean_std(glob, 1)], 1)
    g = torch.sigmoid(gated.channel(global_stats)[:, :, None, None] + gated.spatial(local_stats))
    return g * local + (1 - g) * glob


def frozen_head(head: G.GSAGHead, feats: list[Tensor]) -> Tensor:
    """The hybrid head's forward with the frozen pieces above and its own other modules."""
    x = frozen_group(head.group, feats)
    q, k, v = frozen_key(head.key, x)
    local = G.heads_to_map(head.psa(q, k, v))
    glob = G.heads_to_map(head.gsa(q, k, v)) + head.mapping(*head.pool(q, k, v))
    y = frozen_gate(head.gated, local, glob)
    x = x + head.out_proj(y)
    return head.classifier(head.dropout(head.fuse(x)))


def levels(channels_last: bool, seed: int = 0) -> list[Tensor]:
    """Three levels on two grids (C3 finer), as ConvNeXt (channels_last) or ResNet gives them."""
    g = torch.Generator().manual_seed(seed)
    sizes = [(10, 12), (5, 6), (10, 12)]
    feats = [torch.randn(2, c, *s, generator=g) for c, s in zip(IN, sizes, strict=True)]
    if channels_last:
        feats = [f.contiguous(memory_format=torch.channels_last) for f in feats]
    return [f.requires_grad_() for f in feats]


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_head_equals_the_frozen_computation_forward_and_backward(channels_last, train):
    torch.manual_seed(0)
    head = G.GSAGHead(IN, 3, "hybrid", **SMALL).train(train)
    with torch.no_grad():  # away from the initial values, so that every branch matters
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    frozen = copy.deepcopy(head)  # own BatchNorm running statistics
    feats, feats_ref = levels(channels_last), levels(channels_last)
    out, ref = head(feats), frozen_head(frozen, feats_ref)
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(ref)
    out.backward(grad)
    ref.backward(grad)
    for f, f_ref in zip(feats, feats_ref, strict=True):
        torch.testing.assert_close(f.grad, f_ref.grad)
    params = dict(frozen.named_parameters())
    for name, p in head.named_parameters():
        torch.testing.assert_close(p.grad, params[name].grad, msg=name)


def test_channels_last_levels_are_not_copied_into_another_layout():
    """ConvNeXt's channels_last levels keep their layout through group formation and the key
    layer: X comes out channels_last and the tokens need no copy before the projection."""
    torch.manual_seed(0)
    head = G.GSAGHead(IN, 3, "hybrid", **SMALL).eval()
    with torch.no_grad():
        x = head.group([f.detach() for f in levels(channels_last=True)])
    assert x.is_contiguous(memory_format=torch.channels_last)
    tokens = x.flatten(2).transpose(1, 2)  # what the key layer multiplies
    assert tokens.is_contiguous()
