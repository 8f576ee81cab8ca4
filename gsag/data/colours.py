"""A class mask in colours, the same way in every picture: class `i` in `palette[i]`, the
ignore label white, any other index black. (Mask files are palette PNGs instead:
`gsag.data.io.save_mask`.)"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Palette = Sequence[Sequence[int]]  # [(r, g, b), ...], one colour per class


def palette_lut(palette: Palette, ignore_index: int | None = 255) -> np.ndarray:
    """(256, 3) uint8 lookup table: the class colours, `ignore_index` white (None: not marked),
    every other index black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    if ignore_index is not None:
        lut[ignore_index] = (255, 255, 255)
    return lut


def colour_mask(mask, palette: Palette, ignore_index: int | None = 255) -> np.ndarray:
    """An index mask (H, W) (array or CPU tensor) -> RGB uint8 (H, W, 3), see `palette_lut`."""
    return palette_lut(palette, ignore_index)[np.clip(np.asarray(mask), 0, 255)]
