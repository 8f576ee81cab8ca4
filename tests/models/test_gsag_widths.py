"""The GSAG head's widths follow the backbone by the declared rule (docs/model.md), are stored
with the model, and models stored before the rule are rebuilt with the widths they had."""

from __future__ import annotations

import pytest
import torch

import gsag
from gsag.models.gsag import GSAGHead
from gsag.models.head_widths import FIXED_WIDTHS, head_widths
from gsag.models.segmentor import model_from_args

BACKBONE = "test_resnet"


def rule_by_hand(widest: int) -> tuple[int, int, int]:
    """The rule as docs/model.md words it: the largest power of two <= widest / 2, in
    [128, 512]; d_k = min(d / 2, 128); heads of 32 channels."""
    d = 1
    while d * 2 <= widest / 2:
        d *= 2
    d = min(max(d, 128), 512)
    dk = min(d // 2, 128)
    return d, dk, dk // 32


@pytest.mark.parametrize(
    "channels, expected",
    [
        ([512, 1024, 2048], (512, 128, 4)),  # ResNet-50 / 101
        ([192, 384, 768], (256, 128, 4)),  # ConvNeXt-T, Swin-T
        ([128, 256, 512], (256, 128, 4)),  # ResNet-18 / 34
        ([80, 160, 320], (128, 64, 2)),  # ConvNeXt-atto
        ([256, 512, 1024], (512, 128, 4)),  # ConvNeXt-B, Swin-B
    ],
)
def test_rule_on_the_usual_backbones(channels, expected):
    widths = head_widths(channels)
    got = (widths["head_channels"], widths["key_channels"], widths["num_heads"])
    assert got == expected == rule_by_hand(max(channels))


@pytest.mark.parametrize("widest", [1, 64, 255, 256, 511, 700, 1023, 1024, 3000, 4096])
def test_rule_matches_its_wording(widest):
    widths = head_widths([widest])
    assert tuple(widths.values()) == rule_by_hand(widest)


def test_given_widths_are_kept_and_the_later_ones_follow_them():
    assert head_widths([2048], head_channels=128) == dict(
        head_channels=128, key_channels=64, num_heads=2
    )
    assert head_widths([2048], key_channels=96)["num_heads"] == 3
    assert head_widths([2048], key_channels=100)["num_heads"] == 2  # a divisor of d_k
    assert head_widths([2048], key_channels=8)["num_heads"] == 1
    assert head_widths([64], 16, 8, 2) == dict(head_channels=16, key_channels=8, num_heads=2)


@pytest.mark.parametrize("name", ["gsag_basic", "gsag_incremental", "gsag_hybrid"])
def test_the_head_is_built_with_the_rules_widths(name):
    model = gsag.create_model(name, 3, backbone=BACKBONE, aux=False)
    widths = head_widths(model.backbone.channels)
    assert model.head.widths == widths
    assert model.head.fuse[0].in_channels == widths["head_channels"]
    if name != "gsag_basic":
        assert model.head.key.qk.out_features == 2 * widths["key_channels"]
        assert model.head.key.num_heads == widths["num_heads"]


def test_stored_arguments_carry_the_widths_and_rebuild_the_same_model():
    model = gsag.create_model("gsag_hybrid", 3, backbone=BACKBONE, head_channels=256)
    args = model.model_args
    assert args["head_channels"] == 256  # given
    assert (args["key_channels"], args["num_heads"]) == (128, 4)  # chosen by the rule
    twin = model_from_args(args)
    twin.load_state_dict(model.state_dict())  # same shapes


def test_a_model_stored_before_the_rule_is_rebuilt_with_the_fixed_widths():
    """Arguments stored before the rule hold no widths: the model had 512 / 256 / 8."""
    torch.manual_seed(0)
    old = gsag.create_model("gsag_hybrid", 3, backbone=BACKBONE, **FIXED_WIDTHS)
    stored = {k: v for k, v in old.model_args.items() if k not in FIXED_WIDTHS}
    rebuilt = model_from_args(stored)
    rebuilt.load_state_dict(old.state_dict())
    assert rebuilt.head.widths == FIXED_WIDTHS
    assert gsag.create_model(**stored).head.widths != FIXED_WIDTHS  # a new model: the rule


def test_other_models_store_no_widths():
    args = gsag.create_model("deeplabv3", 3, backbone=BACKBONE).model_args
    assert not {"key_channels", "num_heads", "head_channels"} & set(args)


def test_a_bare_head_follows_the_rule_too():
    head = GSAGHead([192, 384, 768], 5)
    assert head.widths == dict(head_channels=256, key_channels=128, num_heads=4)
