"""Necks: what sits between a backbone's levels and the head.

- `SimplePyramid` turns the single-resolution blocks of a plain ViT into levels at 1/8, 1/16 and
  1/32 (transposed convolutions up, max-pooling down), one block per level.
- `ResizeNeck` brings the levels of a backbone whose stride cannot be changed (Swin, MaxViT, a
  ViT's pyramid) to one working grid, 1/8 of the input, so that every head sees the levels of a
  dilated D8 backbone: same grids, same channels. Levels finer than the grid (the 1/4 level
  DeepLabV3+ reads) are kept, as a dilated backbone keeps them. It has no parameters
  (docs/model.md says why). Heads that read the native pyramid (UPerNet, SegFormer) get no neck.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from gsag.models.layers import resize

#: Stride of the grid `ResizeNeck` brings the levels to (the D8 setting of dilated backbones).
NECK_STRIDE = 8


def neck_size(size: Sequence[int], stride: int) -> tuple[int, int]:
    """The working grid of an input of `size` (H, W): ceil(H / stride), ceil(W / stride)."""
    return (-(-int(size[0]) // stride), -(-int(size[1]) // stride))


class ResizeNeck(nn.Module):
    """Bilinear resize of the levels coarser than 1/`stride` to the 1/`stride` grid of the
    input; finer levels (`reductions` below `stride`) pass unchanged; channels unchanged."""

    def __init__(self, stride: int = NECK_STRIDE, reductions: Sequence[int] = ()) -> None:
        super().__init__()
        self.stride = stride
        self.kept = tuple(r < stride for r in reductions)  # levels left as they are

    def forward(self, feats: Sequence[Tensor], size: Sequence[int]) -> list[Tensor]:
        grid = neck_size(size, self.stride)
        kept = self.kept or (False,) * len(feats)
        # [(B, C_i, H / 8, W / 8)], a finer level at its own grid
        return [f if keep else resize(f, grid) for f, keep in zip(feats, kept, strict=True)]

    def extra_repr(self) -> str:
        kept = f", kept={list(self.kept)}" if any(self.kept) else ""
        return f"stride={self.stride}{kept}"


def _up(channels: int, steps: int) -> tuple[nn.Module, int]:
    """`steps` transposed 2x2 convolutions, halving channels each time (BN + GELU between)."""
    layers: list[nn.Module] = []
    c = channels
    for i in range(steps):
        if i:
            layers += [nn.BatchNorm2d(c), nn.GELU()]
        layers.append(nn.ConvTranspose2d(c, c // 2, 2, stride=2))
        c //= 2
    return nn.Sequential(*layers), c


class SimplePyramid(nn.Module):
    """Levels at 1/(p * 2^s) from the blocks of a plain ViT of patch size p.

    `scales` holds s per level, e.g. (-1, 0, 1) for 1/8, 1/16 and 1/32 at p = 16: s < 0 upsamples
    by transposed convolutions (channels halved per step), s = 0 keeps the block, s > 0 max-pools.
    """

    def __init__(self, channels: int, scales: Sequence[int]) -> None:
        super().__init__()
        self.scales = tuple(scales)
        ops: list[nn.Module] = []
        self.channels: list[int] = []
        for s in self.scales:
            if s < 0:
                op, c = _up(channels, -s)
            elif s > 0:
                op, c = nn.MaxPool2d(2**s, 2**s, ceil_mode=True), channels
            else:
                op, c = nn.Identity(), channels
            ops.append(op)
            self.channels.append(c)
        self.ops = nn.ModuleList(ops)

    def forward(self, blocks: Sequence[Tensor]) -> list[Tensor]:
        # blocks: [(B, C, H / p, W / p)] -> [(B, C_i, H / (p 2^s_i), W / (p 2^s_i))]
        return [op(b) for op, b in zip(self.ops, blocks, strict=True)]
