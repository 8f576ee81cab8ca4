"""Heads that fuse several backbone levels at 1/4: DeepLabV3+, UPerNet and SegFormer's MLP head.

Each reads the levels of its `LevelSpec` (gsag/models/levels.py), finest first, and returns
logits on the grid of the finest level it is given (1/4 of the input on the usual backbones).
The auxiliary FCN head still reads the second-to-last level (C4).

Upsampling between levels always calls `F.interpolate` (the identity where the sizes already
agree, as at output stride 8): comparing symbolic sizes would make `torch.export` specialise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsag.models.heads import ASPP, ASPP_RATES, PyramidPooling
from gsag.models.layers import ConvBNReLU
from gsag.models.levels import D8_WITH_C2, PYRAMID, LevelSpec


def upsample(x: Tensor, like: Tensor) -> Tensor:
    """Bilinear resize of `x` (B, C, h, w) to the grid of `like` (B, *, H, W)."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def _check_levels(name: str, in_channels: Sequence[int]) -> None:
    if len(in_channels) < 2:
        raise ValueError(
            f"{name} fuses several levels but got {len(in_channels)}; give at least two levels "
            "(a fine one first, the last one last)"
        )


class DeepLabV3PlusHead(nn.Module):
    """DeepLabV3+ (Chen et al., 2018): ASPP on the last level, upsampled to the finest level
    (C2 at 1/4), concatenated with a 1x1 projection of it (48 channels), then two 3x3
    conv-BN-ReLU of `head_channels`, dropout and a 1x1 classifier.

    The ASPP is DeepLabV3's (`gsag.models.heads.ASPP`: 256 channels, rates 12/24/36 at output
    stride 8, 6/12/18 at 16, image pooling, 1x1 projection with dropout 0.5). Convolutions are
    dense, as in the paper's ResNet-101 experiments (its depthwise-separable ones come with the
    Xception backbone; mmsegmentation uses separable ones of width 512).
    """

    levels: ClassVar[LevelSpec] = D8_WITH_C2

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        output_stride: int = 8,
        rates: Sequence[int] | None = None,
        head_channels: int = 256,
        low_channels: int = 48,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        _check_levels("deeplabv3plus", in_channels)
        c = head_channels
        self.aspp = ASPP(in_channels[-1], rates or ASPP_RATES[output_stride], c)
        self.low = ConvBNReLU(in_channels[0], low_channels, 1)
        self.decoder = nn.Sequential(ConvBNReLU(c + low_channels, c, 3), ConvBNReLU(c, c, 3))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        low = self.low(feats[0])  # (B, 48, H/4, W/4)
        high = upsample(self.aspp(feats[-1]), low)  # (B, C, H/4, W/4)
        fused = self.decoder(torch.cat([high, low], dim=1))  # (B, C, H/4, W/4)
        return self.classifier(self.dropout(fused))


class UPerHead(nn.Module):
    """UPerNet (Xiao et al., 2018) as in mmsegmentation's UPerHead: pyramid pooling (bins 1, 2,
    3, 6, PSPNet's module with 1x1 branches of `head_channels`) and a 3x3 bottleneck on the last
    level; an FPN over the others (1x1 lateral conv-BN-ReLU, top-down sums, 3x3 conv-BN-ReLU);
    every output upsampled to the finest level, concatenated and fused by a 3x3 conv-BN-ReLU,
    then dropout and a 1x1 classifier. Width 512 as in mmsegmentation's configs."""

    levels: ClassVar[LevelSpec] = PYRAMID

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        head_channels: int = 512,
        bins: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        _check_levels("upernet", in_channels)
        if not bins or any(int(b) < 1 for b in bins):
            raise ValueError(f"bins is {list(bins)}; give one or more positive cell counts")
        c, n = head_channels, len(in_channels)
        self.ppm = PyramidPooling(in_channels[-1], c, bins)
        self.ppm_bottleneck = ConvBNReLU(self.ppm.out_channels, c, 3)
        self.laterals = nn.ModuleList(ConvBNReLU(ci, c, 1) for ci in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(c, c, 3) for _ in range(n - 1))
        self.fuse = ConvBNReLU(n * c, c, 3)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        top = self.ppm_bottleneck(self.ppm(feats[-1]))  # (B, C, H/32, W/32)
        paths = [lat(f) for lat, f in zip(self.laterals, feats[:-1], strict=True)] + [top]
        for i in range(len(paths) - 1, 0, -1):  # top-down: each level gets the coarser sum
            paths[i - 1] = paths[i - 1] + upsample(paths[i], paths[i - 1])
        outs = [conv(p) for conv, p in zip(self.fpn_convs, paths[:-1], strict=True)] + [top]
        fused = self.fuse(torch.cat([outs[0], *(upsample(o, outs[0]) for o in outs[1:])], 1))
        return self.classifier(self.dropout(fused))  # (B, K, H/4, W/4)


class SegFormerHead(nn.Module):
    """SegFormer's all-MLP decoder (Xie et al., 2021): each level linearly projected (a 1x1
    conv with bias, no norm, as the paper's MLP layer) to `head_channels`, upsampled to the
    finest level, concatenated, fused by a 1x1 conv-BN-ReLU, dropout and a 1x1 classifier.
    Width 256 as in SegFormer-B0/B1 and in mmsegmentation's configs for every MiT size (the
    paper uses 768 for B2-B5: `head_channels=768`). The head adds no context of its own: every
    position sees only its own features at each level (SegFormer's context comes from its
    encoder's attention)."""

    levels: ClassVar[LevelSpec] = PYRAMID

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        head_channels: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        _check_levels("segformer", in_channels)
        c = head_channels
        self.projections = nn.ModuleList(nn.Conv2d(ci, c, 1) for ci in in_channels)
        self.fuse = ConvBNReLU(len(in_channels) * c, c, 1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        first = self.projections[0](feats[0])  # (B, C, H/4, W/4)
        rest = [upsample(p(f), first) for p, f in zip(self.projections[1:], feats[1:], strict=True)]
        fused = self.fuse(torch.cat([first, *rest], dim=1))  # (B, C, H/4, W/4)
        return self.classifier(self.dropout(fused))
