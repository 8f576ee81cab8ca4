"""Parameter groups: head_lr_mult, layer-wise lr decay on a tiny ViT and a tiny ConvNeXt (layer
ids written out by hand from their structure), no weight decay on norms, biases and embeddings,
and the groups of configs written before these keys (unchanged)."""

from __future__ import annotations

import pytest
import torch

from gsag.config import ConfigError, load_config
from gsag.engine.optim import build_optimizer, param_groups
from gsag.models import create_model

pytestmark = pytest.mark.usefixtures("single_thread")


def config(*overrides: str):
    return load_config(None, ["optim.lr=0.1", "optim.weight_decay=0.05", *overrides])


def model(backbone: str):
    torch.manual_seed(0)
    return create_model("fcn", 3, backbone=backbone, pretrained=False, aux=False)


def vit_layer(name: str) -> int:
    """timm's test_vit: embeddings, then 6 blocks; the pyramid after them."""
    rest = name.removeprefix("backbone.body.model.")
    if rest.split(".")[0] in ("cls_token", "pos_embed", "patch_embed"):
        return 0
    if rest.startswith("blocks."):
        return int(rest.split(".")[1]) + 1  # blocks.0 .. blocks.5 -> 1 .. 6
    assert name.startswith("backbone.pyramid."), name
    return 7


def convnext_layer(name: str) -> int:
    """timm's test_convnext: the stem, then 4 stages (downsampling inside stages 1..3)."""
    rest = name.removeprefix("backbone.body.")
    if rest.startswith("stem_"):
        return 0
    assert rest.startswith("stages_"), name
    return int(rest.split(".")[0].removeprefix("stages_")) + 1  # stages_0 .. 3 -> 1 .. 4


@pytest.mark.parametrize(
    ("backbone", "layer_of", "depth"),
    [("test_vit", vit_layer, 6), ("test_convnext", convnext_layer, 4)],
)
def test_layer_decay_gives_each_backbone_layer_its_rate(backbone, layer_of, depth):
    m = model(backbone)
    decay, head_mult = 0.5, 10.0
    groups = param_groups(
        config(f"optim.layer_decay={decay}", f"optim.head_lr_mult={head_mult}"), m
    )
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    seen = set()
    for name, p in m.named_parameters():
        if name.startswith("backbone."):
            layer = layer_of(name)
            seen.add(layer)
            expected = 0.1 * decay ** (depth + 1 - layer)
        else:
            expected = 0.1 * head_mult
        assert lr_of[id(p)] == pytest.approx(expected), name
    assert seen == set(range(depth + 2)) - ({depth + 1} if backbone == "test_convnext" else set())
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))


@pytest.mark.parametrize("backbone", ["test_vit", "test_convnext"])
def test_no_decay_on_norms_biases_and_embeddings(backbone):
    m = model(backbone)
    groups = param_groups(config("optim.no_decay_norm_bias=true"), m)
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    for name, p in m.named_parameters():
        free = p.ndim == 1 or name.endswith((".cls_token", ".pos_embed"))
        assert decay_of[id(p)] == (0.0 if free else 0.05), name
    if backbone == "test_vit":  # the embeddings are not 1-D: named
        names = {n for n, p in m.named_parameters() if decay_of[id(p)] == 0 and p.ndim > 1}
        assert names == {"backbone.body.model.cls_token", "backbone.body.model.pos_embed"}


def test_defaults_keep_the_groups_of_earlier_versions():
    """Without the new keys: two groups, backbone then head, in parameter order, decay on all
    (what last.pt files written before them hold)."""
    m = model("test_resnet")
    opt = build_optimizer(config("optim.head_lr_mult=3"), m)
    backbone = [p for n, p in m.named_parameters() if n.startswith("backbone.")]
    head = [p for n, p in m.named_parameters() if not n.startswith("backbone.")]
    assert [g["params"] for g in opt.param_groups] == [backbone, head]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.3])
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.05]


def test_layer_decay_needs_blocks_or_stages():
    from torch import nn

    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3))

    with pytest.raises(ConfigError, match=r"optim\.layer_decay needs a backbone made of blocks"):
        param_groups(config("optim.layer_decay=0.9"), Flat())
