"""Masks in colour: class colours for index masks, overlays on photos, titled image | truth |
prediction | overlay report figures with a class legend (matplotlib) and TensorBoard panels.

Every picture colours a mask the same way (`colour_mask`): class `i` in `palette[i]`, the ignore
label white, any other index black. (Mask files are palette PNGs instead: `gsag.data.save_mask`.)
"""

from __future__ import annotations

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


def overlay(
    rgb: np.ndarray, mask: np.ndarray, palette: Palette, alpha: float = 0.5, outline: bool = False
) -> Image.Image:
    """Blend each foreground pixel's class colour over the image (alpha = weight of the colour).

    Background (class 0) and pixels outside the palette (the ignore label 255) are left
    untinted, so the photo is not dimmed where nothing was found. `outline` draws the edge of
    every foreground region in black or white, whichever contrasts with its class colour, so
    that dull colours (the grey of VOC's class 7) stay visible on a photo.
    """
    colours = palette_lut(palette, ignore_index=None).astype(np.float32)
    index = np.clip(mask, 0, 255)  # (H, W)
    foreground = (index > 0) & (index < len(palette))
    weight = np.where(foreground, alpha, 0.0)[..., None]  # (H, W, 1)
    blended = (1.0 - weight) * rgb.astype(np.float32) + weight * colours[index]
    if outline:
        edge = foreground & _edges(index)
        light = colours[index] @ np.array([0.299, 0.587, 0.114], dtype=np.float32) > 100
        blended[edge & light] = 0.0
        blended[edge & ~light] = 255.0
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


def _edges(index: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels with a 4-neighbour of another index (the image border is no edge)."""
    edge = np.zeros(index.shape, dtype=bool)
    vertical = index[1:] != index[:-1]
    horizontal = index[:, 1:] != index[:, :-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge


def _rgb01(colour: Sequence[int]) -> tuple[float, float, float]:
    r, g, b = (float(v) / 255 for v in colour)
    return (r, g, b)


#: the titles of the four pictures of `report_figure`
REPORT_TITLES = ("image", "truth", "prediction", "overlay")


def report_figure(
    rgb: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    classes: Sequence[str],
    palette: Palette,
    ignore_index: int = 255,
):
    """A matplotlib figure: image | truth | prediction | overlay, titled, with a legend of the
    classes present in the truth or the prediction (and "ignore", white, where the truth has it).

    The overlay blends the prediction over the image (alpha 0.6) with outlined regions; the
    caller saves and closes the figure (`gsag.report.save_figure`).
    """
    from matplotlib.patches import Patch

    from gsag.report import pyplot

    pictures = (
        rgb,
        colour_mask(truth, palette, ignore_index),
        colour_mask(pred, palette, ignore_index),
        np.asarray(overlay(rgb, pred, palette, alpha=0.6, outline=True)),
    )
    height, width = rgb.shape[:2]
    side = 2.6  # inches per picture
    fig, axes = pyplot().subplots(1, 4, figsize=(4 * side, side * height / width + 0.9))
    for ax, title, picture in zip(axes, REPORT_TITLES, pictures, strict=True):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title)
        ax.set_axis_off()
    present = sorted(set(np.unique(truth).tolist()) | set(np.unique(pred).tolist()))
    handles = [
        Patch(facecolor=_rgb01(palette[c]), edgecolor="black", label=classes[c])
        for c in present
        if 0 <= c < len(classes)
    ]
    if ignore_index in present:
        handles.append(Patch(facecolor="white", edgecolor="black", label="ignore"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.88, bottom=0.2, wspace=0.04)
    return fig


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
