"""Pictures of a trained model and its run: overlays of predictions on photos, titled image |
truth | prediction | overlay figures with a class legend, and the training curve of a run's
metrics.jsonl. Masks are coloured by `gsag.data.colours`; figures are drawn with matplotlib's
Agg backend and written atomically (`gsag.atomic`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from gsag.atomic import atomic_path
from gsag.data.colours import Palette, colour_mask, palette_lut
from gsag.engine.run_log import read_metrics_log, record_iteration


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
    caller saves and closes the figure (`save_figure`).
    """
    pictures = (
        rgb,
        colour_mask(truth, palette, ignore_index),
        colour_mask(pred, palette, ignore_index),
        np.asarray(overlay(rgb, pred, palette, alpha=OVERLAY_ALPHA, outline=True)),
    )
    height, width = rgb.shape[:2]
    side = 2.6  # inches per picture
    fig, axes = pyplot().subplots(1, 4, figsize=(4 * side, side * height / width + 0.9))
    for ax, title, picture in zip(axes, REPORT_TITLES, pictures, strict=True):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title)
        ax.set_axis_off()
    add_class_legend(fig, classes, palette, (truth, pred), ignore_index, ncol=6)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.88, bottom=0.2, wspace=0.04)
    return fig


#: the weight of the class colours in every drawn overlay (the report's and predict's)
OVERLAY_ALPHA = 0.6
#: an overlay figure narrower than this (pixels) is enlarged by a whole factor, so that its
#: legend fits under it; wider images keep their own pixels
OVERLAY_MIN_WIDTH = 480
_LEGEND_ROW_PX, _LEGEND_ENTRY_PX, _DPI = 24, 150, 100


def add_class_legend(
    fig,
    classes: Sequence[str],
    palette: Palette,
    masks: Sequence[np.ndarray],
    ignore_index: int = 255,
    ncol: int = 6,
):
    """The legend of every picture gsag draws, at the bottom of `fig`: one patch in its class
    colour for each class present in any of `masks`, and a white "ignore" patch where a mask
    holds `ignore_index`, in at most `ncol` columns. Returns the matplotlib legend."""
    from matplotlib.patches import Patch

    present = sorted(set().union(*(np.unique(m).tolist() for m in masks)))
    handles = [
        Patch(facecolor=_rgb01(palette[c]), edgecolor="black", label=classes[c])
        for c in present
        if 0 <= c < len(classes)
    ]
    if ignore_index in present:
        handles.append(Patch(facecolor="white", edgecolor="black", label="ignore"))
    return fig.legend(
        handles=handles, loc="lower center", ncol=max(min(len(handles), ncol), 1), frameon=False
    )


def overlay_figure(rgb: np.ndarray, pred: np.ndarray, classes: Sequence[str], palette: Palette):
    """`gsag predict`'s overlay: the prediction blended over the image as in the report's
    overlay panel, with the report's class legend under it (`add_class_legend`).

    The image keeps its pixels one to one (images narrower than `OVERLAY_MIN_WIDTH` are enlarged
    by a whole factor, each pixel a block); the legend takes rows of `_LEGEND_ROW_PX` below.
    Save it with `save_figure(fig, path, tight=False)`.
    """
    picture = np.asarray(overlay(rgb, pred, palette, alpha=OVERLAY_ALPHA, outline=True))
    factor = -(-OVERLAY_MIN_WIDTH // picture.shape[1])  # ceil; 1 for wide images
    picture = picture.repeat(factor, axis=0).repeat(factor, axis=1)  # (H k, W k, 3)
    height, width = picture.shape[:2]
    entries = len(np.unique(pred)) + 1
    ncol = max(min(entries, width // _LEGEND_ENTRY_PX), 1)
    legend_px = _LEGEND_ROW_PX * (-(-entries // ncol)) + 12
    total = height + legend_px
    fig = pyplot().figure(figsize=(width / _DPI, total / _DPI), dpi=_DPI)
    ax = fig.add_axes((0.0, legend_px / total, 1.0, height / total))
    ax.imshow(picture, interpolation="nearest")
    ax.set_axis_off()
    add_class_legend(fig, classes, palette, (pred,), ncol=ncol)
    return fig


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 100, tight: bool = True) -> Path:
    """Save a matplotlib figure atomically and close it (`tight`: cropped to what is drawn;
    else at the figure's own size)."""
    plt = pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return Path(path)


def plot_training_curve(
    metrics_log: str | os.PathLike, path: str | os.PathLike, title: str = "", split: str = "val"
) -> Path:
    """Training loss and the evaluated `split`'s mIoU against iteration, from one
    `metrics.jsonl`."""
    plt = pyplot()
    train, evals = read_metrics_log(metrics_log)
    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot([record_iteration(r) for r in train], [r["loss"] for r in train], lw=1.2)
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("training loss")
    ax_miou.plot([record_iteration(r) for r in evals], [100 * r["mIoU"] for r in evals], "o-")
    ax_miou.set_xlabel("iteration")
    ax_miou.set_ylabel(f"{split} mIoU (%)")
    for ax in (ax_loss, ax_miou):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
