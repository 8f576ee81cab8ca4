"""Baseline heads: FCN, DeepLabV3 (ASPP) and DANet (position + channel attention).

Every head takes the list of backbone feature maps and returns logits on the feature grid;
the baselines read the last level (C5), the auxiliary FCN head reads the one before (C4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsag.models.layers import ConvBNReLU

# ASPP dilation rates per output stride (DeepLabV3 paper: 6/12/18 at 16, doubled at 8).
ASPP_RATES: dict[int, tuple[int, int, int]] = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}


class FCNHead(nn.Module):
    """Classic FCN head as in torchvision: conv3x3 (C -> C/4)-BN-ReLU, dropout, 1x1 classifier.

    Used as the `fcn` baseline on C5 and as the auxiliary head on C4 (`in_index=-2`).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        dropout: float = 0.1,
        in_index: int = -1,
        head_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.in_index = in_index
        c = in_channels[in_index]
        inter = head_channels or c // 4
        self.conv = ConvBNReLU(c, inter, 3)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(inter, num_classes, 1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        return self.classifier(self.dropout(self.conv(feats[self.in_index])))


class ASPPPooling(nn.Module):
    """Image-level branch of ASPP: global average, 1x1 conv-BN-ReLU, upsampled back."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.conv(F.adaptive_avg_pool2d(x, 1))  # (B, C, 1, 1)
        return pooled.expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3 and image pooling, projected."""

    def __init__(
        self, in_channels: int, rates: Sequence[int], channels: int = 256, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_channels, channels, 1)]
            + [ConvBNReLU(in_channels, channels, 3, dilation=r) for r in rates]
            + [ASPPPooling(in_channels, channels)]
        )
        self.project = nn.Sequential(
            ConvBNReLU(channels * len(self.branches), channels, 1), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))


class DeepLabV3Head(nn.Module):
    """DeepLabV3 head as in the paper and torchvision: ASPP, conv3x3-BN-ReLU, 1x1 classifier."""

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        output_stride: int = 8,
        rates: Sequence[int] | None = None,
        head_channels: int = 256,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.aspp = ASPP(
            in_channels[-1], rates or ASPP_RATES[output_stride], head_channels, dropout
        )
        self.conv = ConvBNReLU(head_channels, head_channels, 3)
        self.classifier = nn.Conv2d(head_channels, num_classes, 1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        return self.classifier(self.conv(self.aspp(feats[-1])))


class PositionAttention(nn.Module):
    """DANet position attention: every position attends to all positions (unscaled, as in DANet).

    Single head, queries/keys of C/8 channels; computed with `scaled_dot_product_attention`
    (scale=1), and as an explicit softmax(Q K^T) V while exporting to ONNX (torch 2.4's exporter
    cannot translate a constant `scale`). The output is `gamma * attention + x` with `gamma`
    starting at 0.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, max(channels // 8, 1), 1)
        self.key = nn.Conv2d(channels, max(channels // 8, 1), 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape

        def tokens(t: Tensor) -> Tensor:
            return t.flatten(2).transpose(1, 2).contiguous().unsqueeze(1)  # (B, 1, N, C')

        q, k, v = tokens(self.query(x)), tokens(self.key(x)), tokens(self.value(x))
        if torch.onnx.is_in_onnx_export():  # the same product, as MatMul/Softmax/MatMul nodes
            out = (q @ k.transpose(-2, -1)).softmax(dim=-1) @ v  # (B, 1, N, C)
        else:
            out = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # (B, 1, N, C)
        out = out.squeeze(1).transpose(1, 2).reshape(b, c, h, w)
        return self.gamma * out + x


class ChannelAttention(nn.Module):
    """DANet channel attention: each channel attends to all channels (a C x C matrix)."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        flat = x.flatten(2)  # (B, C, N)
        energy = flat @ flat.transpose(1, 2)  # (B, C, C)
        energy = energy.amax(dim=-1, keepdim=True) - energy  # as in DANet
        out = (energy.softmax(dim=-1) @ flat).view(b, c, h, w)
        return self.gamma * out + x


class DANetHead(nn.Module):
    """DANet head: two branches (position / channel attention), each between conv3x3-BN-ReLUs,
    summed, then dropout and a 1x1 classifier. Width C5/4 as in DANet."""

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        head_channels: int | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        c = in_channels[-1]
        inter = head_channels or c // 4
        self.pam_in = ConvBNReLU(c, inter, 3)
        self.pam = PositionAttention(inter)
        self.pam_out = ConvBNReLU(inter, inter, 3)
        self.cam_in = ConvBNReLU(c, inter, 3)
        self.cam = ChannelAttention()
        self.cam_out = ConvBNReLU(inter, inter, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(inter, num_classes, 1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        x = feats[-1]
        fused = self.pam_out(self.pam(self.pam_in(x))) + self.cam_out(self.cam(self.cam_in(x)))
        return self.classifier(self.dropout(fused))
