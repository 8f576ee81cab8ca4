"""Masks in colour: class colours for index masks, overlays on photos, image | truth | prediction
panels for reports (PIL) and TensorBoard (tensors).

Every picture colours a mask the same way (`colour_mask`): class `i` in `palette[i]`, the ignore
label white, any other index black. (Mask files are palette PNGs instead: `gsag.data.save_mask`.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

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


def overlay(rgb: np.ndarray, mask: np.ndarray, palette: Palette, alpha: float = 0.5) -> Image.Image:
    """Blend each foreground pixel's class colour over the image (alpha = weight of the colour).

    Background (class 0) and pixels outside the palette (the ignore label 255) are left
    untinted, so the photo is not dimmed where nothing was found.
    """
    colours = palette_lut(palette, ignore_index=None).astype(np.float32)
    index = np.clip(mask, 0, 255)  # (H, W)
    weight = np.where((index > 0) & (index < len(palette)), alpha, 0.0)[..., None]  # (H, W, 1)
    blended = (1.0 - weight) * rgb.astype(np.float32) + weight * colours[index]
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


def prediction_panel(
    rgb: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    palette: Palette,
    ignore_index: int = 255,
    min_height: int = 192,
) -> Image.Image:
    """PIL image: the input | ground truth in colour | prediction overlaid on the input (alpha
    0.6), side by side; panels lower than `min_height` are enlarged (nearest, by a whole factor)
    so that small images can be read."""
    panel = Image.fromarray(_side_by_side(rgb, truth, pred, palette, ignore_index, alpha=0.6))
    if panel.height < min_height:
        factor = math.ceil(min_height / panel.height)
        panel = panel.resize(
            (panel.width * factor, panel.height * factor), Image.Resampling.NEAREST
        )
    return panel


def tensorboard_panel(
    image: torch.Tensor,
    mask: torch.Tensor,
    pred: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    palette: Palette,
    ignore_index: int = 255,
) -> torch.Tensor:
    """(3, H, 3W) uint8 for `SummaryWriter.add_image`: the image | ground truth | prediction,
    both masks in plain colours.

    Args:
        image: the normalised input (3, h, w) float; un-normalised with `mean`/`std` ([0, 1]
            scale) and resized (nearest) to the masks' size when that differs.
        mask, pred: index masks (H, W) on the CPU.
        palette, ignore_index: as for `colour_mask`.
    """
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    img = ((image.float() * s + m).clamp(0, 1) * 255).to(torch.uint8)  # (3, h, w)
    if img.shape[-2:] != mask.shape[-2:]:
        img = F.interpolate(img[None].float(), size=mask.shape[-2:])[0].to(torch.uint8)
    rgb = img.permute(1, 2, 0).numpy()  # (H, W, 3)
    panel = _side_by_side(rgb, mask, pred, palette, ignore_index, alpha=None)  # (H, 3W, 3)
    return torch.from_numpy(panel).permute(2, 0, 1)


def _side_by_side(
    rgb: np.ndarray, truth, pred, palette: Palette, ignore_index: int, alpha: float | None
) -> np.ndarray:
    """(H, 3W, 3) uint8: rgb | truth coloured | pred overlaid with `alpha` (None: coloured)."""
    truth_rgb = colour_mask(truth, palette, ignore_index)
    if alpha is None:
        pred_rgb = colour_mask(pred, palette, ignore_index)
    else:
        pred_rgb = np.asarray(overlay(rgb, pred, palette, alpha=alpha))
    return np.concatenate([rgb, truth_rgb, pred_rgb], axis=1)
