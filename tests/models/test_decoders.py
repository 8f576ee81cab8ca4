"""The multi-level heads (DeepLabV3+, UPerNet, SegFormer) against the layer widths of their
papers and reference implementations (parameter counts by formula), the levels they read, the
grid they predict on, and what they do with fewer levels."""

from __future__ import annotations

import pytest
import torch

import gsag
from gsag.models import ModelArgError
from gsag.models.decoders import DeepLabV3PlusHead, SegFormerHead, UPerHead
from gsag.models.levels import D8, D8_WITH_C2, PYRAMID
from gsag.models.segmentor import head_levels

R50 = [256, 512, 1024, 2048]  # C2, C3, C4, C5 channels of ResNet-50
CONVNEXT_T = [96, 192, 384, 768]  # stages 1-4 of ConvNeXt-T (and Swin-T)
K = 150  # ADE20K classes


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _conv_bn(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + 2 * cout  # conv without bias, BN weight and bias


def _classifier(c: int) -> int:
    return c * K + K


def test_deeplabv3plus_widths_are_the_papers_on_resnet50():
    # ASPP of 256 (1x1, three 3x3 at rates 12/24/36, image pool; 1x1 projection of the five),
    # C2 projected to 48, two 3x3 convs of 256 over the 256 + 48 concatenation
    aspp = 2 * _conv_bn(2048, 256, 1) + 3 * _conv_bn(2048, 256, 3) + _conv_bn(5 * 256, 256, 1)
    decoder = _conv_bn(256, 48, 1) + _conv_bn(256 + 48, 256, 3) + _conv_bn(256, 256, 3)
    head = DeepLabV3PlusHead(R50, K)
    assert _params(head) == aspp + decoder + _classifier(256)
    assert [b[0].dilation[0] for b in head.aspp.branches[1:4]] == [12, 24, 36]
    os16 = DeepLabV3PlusHead(R50, K, output_stride=16)
    assert [b[0].dilation[0] for b in os16.aspp.branches[1:4]] == [6, 12, 18]


@pytest.mark.parametrize("channels", [R50, CONVNEXT_T])
def test_upernet_widths_are_mmsegmentations(channels):
    # UPerHead, channels 512: PPM (four 1x1 branches) + 3x3 bottleneck on the last level, 1x1
    # laterals and 3x3 FPN convs on the other three, a 3x3 fuse over the four 512-maps
    c, last = 512, channels[-1]
    ppm = 4 * _conv_bn(last, c, 1) + _conv_bn(last + 4 * c, c, 3)
    fpn = sum(_conv_bn(ci, c, 1) for ci in channels[:-1]) + 3 * _conv_bn(c, c, 3)
    expected = ppm + fpn + _conv_bn(4 * c, c, 3) + _classifier(c)
    head = UPerHead(channels, K)
    assert _params(head) == expected
    assert head.ppm.bins == (1, 2, 3, 6)


@pytest.mark.parametrize(("width", "channels"), [(256, R50), (768, CONVNEXT_T)])
def test_segformer_widths_are_the_papers(width, channels):
    # one linear projection (weight and bias) per level, a 1x1 conv-BN-ReLU fuse of the four
    projections = sum(ci * width + width for ci in channels)
    expected = projections + _conv_bn(4 * width, width, 1) + _classifier(width)
    head = SegFormerHead(channels, K, head_channels=width)
    assert _params(head) == expected
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in head.projections.modules())


def test_heads_declare_the_levels_they_read():
    assert head_levels("deeplabv3plus") == D8_WITH_C2
    assert head_levels("upernet") == head_levels("segformer") == PYRAMID
    for name in ("fcn", "fcn_pool", "pspnet", "deeplabv3", "danet", "gsag_hybrid"):
        assert head_levels(name) == D8
    assert PYRAMID.strides == D8_WITH_C2.strides == (4, 8, 16, 32)
    assert (PYRAMID.output_stride, D8_WITH_C2.output_stride) == (32, 8)


@pytest.mark.parametrize(
    ("name", "reductions", "output_stride"),
    [
        ("deeplabv3plus", [4, 8, 8, 8], 8),  # C2 at 1/4, C3..C5 dilated to 1/8
        ("upernet", [4, 8, 16, 32], 32),  # undilated, as mmsegmentation's upernet_r50
        ("segformer", [4, 8, 16, 32], 32),
        ("fcn", [8, 8, 8], 8),
    ],
)
def test_default_levels_and_stride_come_from_the_head(name, reductions, output_stride):
    model = gsag.create_model(name, 3, backbone="test_resnet")
    assert model.backbone.reductions == reductions
    assert model.model_args["output_stride"] == output_stride
    assert model.model_args["levels"] == ([1, 2, 3, 4] if len(reductions) == 4 else [2, 3, 4])
    assert model.aux_head.in_index == -2  # the aux FCN head reads C4 whatever the head reads


@pytest.mark.parametrize("name", ["deeplabv3plus", "upernet", "segformer"])
def test_logits_on_the_finest_level_read(name):
    """The heads predict on the grid of their finest level: 1/4 by default, 1/8 when given
    only the levels from C3 on (a backbone without a 1/4 level)."""
    for levels, stride in ((None, 4), ([2, 3, 4], 8)):
        torch.manual_seed(0)
        model = gsag.create_model(name, 3, backbone="test_resnet", levels=levels, head_channels=8)
        x = torch.randn(1, 3, 97, 131)
        with torch.no_grad():
            feats = model.eval().features(x)
            logits = model.head(feats)
        assert logits.shape[-2:] == feats[0].shape[-2:]
        assert model.backbone.reductions[0] == stride


@pytest.mark.parametrize("name", ["deeplabv3plus", "upernet", "segformer"])
def test_one_level_is_refused_naming_the_option(name):
    with pytest.raises(ModelArgError, match=rf"levels is \[4\]; {name} fuses at least 2 levels"):
        gsag.create_model(name, 3, backbone="test_resnet", levels=[4], aux=False)


def test_one_level_gives_one_error_line_from_the_cli(capsys):
    from gsag.cli import main

    code = main(["models", "--config", "configs/demo.yaml", "--set", "model.name=upernet",
                 "--set", "model.kwargs={levels: [4]}"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and "model.kwargs.levels" in err[0]


def test_deeplabv3plus_on_a_backbone_timm_cannot_dilate_keeps_c2_at_a_quarter():
    model = gsag.create_model("deeplabv3plus", 3, backbone="test_vit", head_channels=8).eval()
    assert model.neck is not None and model.neck.kept == (True, False, False, False)
    x = torch.randn(1, 3, 64, 96)  # a multiple of the patch size 16
    with torch.no_grad():
        native = model.backbone(x)
        seen = model.features(x)
    assert torch.equal(seen[0], native[0])  # C2 (1/4, 16 x 24) untouched
    assert [tuple(f.shape[-2:]) for f in seen] == [(16, 24)] + [(8, 12)] * 3
    assert model.head.aspp.branches[1][0].dilation == (12, 12)  # the rates of stride 8
