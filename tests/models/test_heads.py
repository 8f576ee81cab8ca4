"""The baseline heads against independent references: PyTorch's adaptive pooling, the layer
widths of the reference implementations (parameter counts by formula), and which heads see the
whole image (an input change far away moves a position's logits exactly for those)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import gsag
from gsag.models.heads import FCNPoolHead, PSPHead, adaptive_avg_pool, bin_edges

R50 = [512, 1024, 2048]  # C3, C4, C5 channels of ResNet-50


@pytest.mark.parametrize("size", [(5, 7), (64, 64), (17, 3), (1, 1), (13, 29)])
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_adaptive_avg_pool_matches_pytorch(size, bins):
    torch.manual_seed(0)
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    torch.testing.assert_close(adaptive_avg_pool(x, bins), F.adaptive_avg_pool2d(x, bins))


def test_bin_edges_cover_the_side_like_adaptive_pooling():
    # 7 pixels in 3 cells: PyTorch's cells are [0, 3), [2, 5), [4, 7) (they overlap)
    assert bin_edges(7, 3) == [(0, 3), (2, 5), (4, 7)]
    assert bin_edges(6, 6) == [(i, i + 1) for i in range(6)]


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _conv_bn(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + 2 * cout  # conv without bias, BN weight and bias


def test_pspnet_widths_are_the_papers_on_resnet50():
    # PSPNet R50-D8: four 1x1 branches 2048 -> 512, a 3x3 bottleneck (2048 + 4 * 512) -> 512
    head = PSPHead(R50, 21)
    expected = 4 * _conv_bn(2048, 512, 1) + _conv_bn(2048 + 4 * 512, 512, 3) + 512 * 21 + 21
    assert _params(head) == expected
    assert head.ppm.bins == (1, 2, 3, 6)


@pytest.mark.parametrize(("fuse", "classifier_in"), [("concat", 1024), ("add", 512)])
def test_fcn_pool_is_fcn_plus_one_pooled_vector(fuse, classifier_in):
    head = FCNPoolHead(R50, 21, fuse=fuse)
    fcn = _conv_bn(2048, 512, 3)  # the FCN branch, as torchvision's FCN head
    vector = _conv_bn(2048, 512, 1)
    assert _params(head) == fcn + vector + classifier_in * 21 + 21


def test_fcn_pool_refuses_an_unknown_fuse():
    with pytest.raises(ValueError, match="fuse"):
        gsag.create_model("fcn_pool", 5, backbone="test_resnet", fuse="mul")


#: model (and head options) -> whether it claims context from the whole image. SegFormer's MLP
#: head does not: 1x1 convolutions and upsampling only (its context comes from its encoder);
#: UPerNet's comes from the 1x1 cell of its pyramid pooling: without it (bins 2, 3, 6) the top-left
#: corner no longer sees the far corner.
GLOBAL = {
    "fcn": False,
    "fcn_pool": True,
    "pspnet": True,
    "deeplabv3": True,
    "deeplabv3plus": True,
    "upernet": True,
    "upernet-bins_2_3_6": False,
    "segformer": False,
}
OPTIONS = {"upernet-bins_2_3_6": {"bins": [2, 3, 6]}}


@pytest.mark.parametrize(("name", "is_global"), GLOBAL.items())
def test_far_away_change_reaches_only_global_heads(name, is_global):
    torch.manual_seed(0)
    model = gsag.create_model(
        name.split("-")[0], 5, backbone="test_resnet", aux=False, **OPTIONS.get(name, {})
    ).eval()
    x = torch.randn(1, 3, 320, 320)
    far = x.clone()
    far[..., 224:, 224:] += 5.0  # a region well outside the top-left corner's receptive field
    with torch.no_grad():
        near_a = model(x)["out"][..., :16, :16]
        near_b = model(far)["out"][..., :16, :16]
    change = (near_a - near_b).abs().max().item()
    if is_global:
        assert change > 1e-3
    else:
        assert change < 1e-5
