"""Baseline heads on the last level: FCN, FCN + one pooled vector (the global-context
control), PSPNet (pyramid pooling), DeepLabV3 (ASPP) and DANet (position + channel attention).

Every head takes the list of backbone feature maps and returns logits on the feature grid;
these heads read the last level (C5), the auxiliary FCN head reads the one before (C4).
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


class ImagePooling(nn.Module):
    """One image-level vector: global average, 1x1 conv-BN-ReLU, broadcast over the grid.

    The image-pooling branch of ASPP and the context vector of `FCNPoolHead`.
    """

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.conv(F.adaptive_avg_pool2d(x, 1))  # (B, C, 1, 1)
        return pooled.expand(-1, -1, x.shape[-2], x.shape[-1])  # (B, C, H, W)


class FCNPoolHead(nn.Module):
    """FCN plus one global vector, the simplest global-context head (ParseNet's idea).

    The FCN branch (conv3x3 C -> C/4-BN-ReLU) sees a neighbourhood; one image-level vector
    (global average of C5, 1x1 conv-BN-ReLU to C/4) is broadcast to every position and
    concatenated (`fuse="concat"`, as ParseNet) or added (`fuse="add"`) before the dropout and the
    1x1 classifier. It is the control for every claim that a head's context machinery helps:
    whatever it does beyond "one vector about the whole image" has to beat this.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        head_channels: int | None = None,
        fuse: str = "concat",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if fuse not in ("concat", "add"):
            raise ValueError(f"fuse is {fuse!r}; use 'concat' or 'add'")
        c = in_channels[-1]
        inter = head_channels or c // 4
        self.fuse = fuse
        self.local = ConvBNReLU(c, inter, 3)
        self.context = ImagePooling(c, inter)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(2 * inter if fuse == "concat" else inter, num_classes, 1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        x = feats[-1]  # (B, C, H, W)
        local, context = self.local(x), self.context(x)  # (B, C/4, H, W) each
        fused = torch.cat([local, context], 1) if self.fuse == "concat" else local + context
        return self.classifier(self.dropout(fused))


def bin_edges(size: int, bins: int) -> list[tuple[int, int]]:
    """[start, end) of each of `bins` cells along a side of `size`, as adaptive pooling cuts it:
    floor(i * size / bins) to ceil((i + 1) * size / bins) (cells overlap where bins > size)."""
    return [((i * size) // bins, ((i + 1) * size + bins - 1) // bins) for i in range(bins)]


def _pool_axis(x: Tensor, bins: int, dim: int) -> Tensor:
    """Means of `x` over the `bins` cells of `bin_edges` along `dim`, from a running sum."""
    size = x.shape[dim]
    i = torch.arange(bins, device=x.device)
    start, end = (i * size) // bins, ((i + 1) * size + bins - 1) // bins  # (bins,) each
    zero = torch.zeros_like(x.narrow(dim, 0, 1))
    running = torch.cat([zero, x.cumsum(dim)], dim)  # size + 1 along dim, starting at 0
    total = running.index_select(dim, end) - running.index_select(dim, start)
    shape = [1] * x.dim()
    shape[dim] = bins
    return total / (end - start).to(x.dtype).view(shape)


def adaptive_avg_pool(x: Tensor, bins: int) -> Tensor:
    """`F.adaptive_avg_pool2d(x, bins)`: the same cells, as differences of running sums.

    Written out because it then exports with a dynamic height and width: the ONNX exporters
    cannot translate an adaptive pool whose output size does not divide the input's, and slicing
    cells of symbolic size makes `torch.export` specialise on sizes of 1.
    """
    if bins == 1:
        return x.mean(dim=(-2, -1), keepdim=True)  # (B, C, 1, 1)
    return _pool_axis(_pool_axis(x, bins, -2), bins, -1)  # (B, C, bins, bins)


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling: average pools to `bins` x `bins` cells, 1x1 conv-BN-ReLU each,
    upsampled back and concatenated with the input (C + len(bins) * channels channels)."""

    def __init__(self, in_channels: int, channels: int, bins: Sequence[int]) -> None:
        super().__init__()
        self.bins = tuple(int(b) for b in bins)
        self.convs = nn.ModuleList(ConvBNReLU(in_channels, channels, 1) for _ in self.bins)
        self.out_channels = in_channels + len(self.bins) * channels

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        # always interpolate (the identity where the grid has `b` cells): `resize` skips equal
        # sizes, a comparison that makes torch.export specialise on grids of 2, 3 or 6 cells
        pooled = [
            F.interpolate(conv(adaptive_avg_pool(x, b)), size, mode="bilinear", align_corners=False)
            for conv, b in zip(self.convs, self.bins, strict=True)
        ]
        return torch.cat([x, *pooled], dim=1)  # (B, C + n * channels, H, W)


class PSPHead(nn.Module):
    """PSPNet head as in the paper and mmsegmentation: pyramid pooling (bins 1, 2, 3, 6; each
    branch reduced to C/4 channels, 1/N of C5 for N = 4 bins), a 3x3 conv-BN-ReLU bottleneck to
    C/4, dropout 0.1 and a 1x1 classifier. On ResNet-50 (C5 = 2048) the widths are 512, as in
    the paper's and mmsegmentation's PSPNet R50-D8."""

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        bins: Sequence[int] = (1, 2, 3, 6),
        head_channels: int | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not bins or any(int(b) < 1 for b in bins):
            raise ValueError(f"bins is {list(bins)}; give one or more positive cell counts")
        c = in_channels[-1]
        inter = head_channels or c // 4
        self.ppm = PyramidPooling(c, inter, bins)
        self.bottleneck = ConvBNReLU(self.ppm.out_channels, inter, 3)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(inter, num_classes, 1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        return self.classifier(self.dropout(self.bottleneck(self.ppm(feats[-1]))))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3 and image pooling, projected."""

    def __init__(
        self, in_channels: int, rates: Sequence[int], channels: int = 256, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_channels, channels, 1)]
            + [ConvBNReLU(in_channels, channels, 3, dilation=r) for r in rates]
            + [ImagePooling(in_channels, channels)]
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
