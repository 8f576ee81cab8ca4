"""Which backbone levels a head reads, and on which grid.

Every head declares a `LevelSpec` (class attribute `levels`; heads without one read the
default): the native strides of the levels it reads and the output stride it runs at when the
user gives none. `create_model` reads it to pick the backbone's default levels (those at these
strides), its default output stride where timm can dilate it, and the neck of a backbone timm
cannot dilate (levels coarser than the output stride are resized to it; finer ones are kept).

- `D8` (every single-level head, GSAG): C3, C4, C5 at output stride 8, all on the 1/8 grid.
- `D8_WITH_C2` (DeepLabV3+): C2 at 1/4 besides, for the decoder's low-level features.
- `PYRAMID` (UPerNet, SegFormer): C2..C5 at their native strides 1/4..1/32, undilated, as
  mmsegmentation runs these heads on ResNets, ConvNeXt and Swin.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Strides of the default levels of hierarchical models (C3, C4, C5 of a ResNet).
LEVEL_STRIDES = (8, 16, 32)
#: Output stride of dilatable backbones when neither the user nor the head says otherwise.
DEFAULT_OUTPUT_STRIDE = 8


@dataclass(frozen=True)
class LevelSpec:
    """The levels a head reads.

    Attributes:
        strides: native strides of the levels read, finest first (a backbone without one of
            them gives the others: the head reads what it gets, finest first).
        output_stride: the grid of the coarse levels when the user gives no `output_stride`:
            timm dilates to it where it can, else the neck resizes coarser levels to it.
        min_levels: fewer levels than this (a user's `levels`) is an error.
    """

    strides: tuple[int, ...] = LEVEL_STRIDES
    output_stride: int = DEFAULT_OUTPUT_STRIDE
    min_levels: int = 1


D8 = LevelSpec()
D8_WITH_C2 = LevelSpec((4, *LEVEL_STRIDES), DEFAULT_OUTPUT_STRIDE, min_levels=2)
PYRAMID = LevelSpec((4, *LEVEL_STRIDES), 32, min_levels=2)
