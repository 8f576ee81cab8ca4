"""Pixels per class of a split, and the median-frequency class weights they give
(`loss.class_weights: auto`; `gsag data check` prints them beside its histogram).

Median-frequency balancing (Eigen & Fergus, 2015; SegNet): the frequency of class c is its
pixel count over the labelled pixels of the images that hold it, and its weight is the median
of the frequencies of the classes present divided by its own. A class absent from the split
gets weight 0: it is never a target there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gsag.atomic import write_text
from gsag.data.base import SegmentationDataset
from gsag.data.errors import BadSampleError
from gsag.data.io import read_mask

#: The file of a run folder that holds the counts `loss.class_weights: auto` was computed from.
COUNTS_FILE = "class_counts.json"


@dataclass
class ClassCounts:
    """Labelled pixels per class of one split."""

    split: str
    images: int  # masks counted (unreadable ones skipped under train.skip_bad)
    pixels: list[int]  # pixels of each class
    image_pixels: list[int]  # labelled pixels of the images that hold each class

    def weights(self) -> list[float]:
        """Median-frequency weights, one per class (0 for a class with no pixel)."""
        return median_frequency_weights(self.pixels, self.image_pixels)


def median_frequency_weights(pixels: list[int], image_pixels: list[int]) -> list[float]:
    """`median(freq) / freq_c`, `freq_c = pixels_c / image_pixels_c`, over the classes present;
    0 for the others."""
    freq = np.array(pixels, float) / np.maximum(np.array(image_pixels, float), 1)
    present = np.array(pixels) > 0
    if not present.any():
        return [0.0] * len(pixels)
    median = float(np.median(freq[present]))
    return [median / f if p else 0.0 for f, p in zip(freq.tolist(), present, strict=True)]


def add_mask(pixels: np.ndarray, image_pixels: np.ndarray, mask: np.ndarray) -> None:
    """Add one class mask (H, W) to the running counts (labels >= len(pixels) are skipped)."""
    num_classes = len(pixels)
    counts = np.bincount(mask.ravel(), minlength=num_classes + 1)[:num_classes]
    pixels += counts
    image_pixels[counts > 0] += int(counts.sum())


def count_classes(
    dataset: SegmentationDataset, progress: Callable[[int, int], None] | None = None
) -> ClassCounts:
    """Read every mask of `dataset` (no image, no transform) and count its classes.

    Args:
        dataset: a split; masks it cannot read stop the count, unless it skips bad samples.
        progress: optional callable `(done, total)`.
    """
    num_classes = dataset.num_classes
    pixels = np.zeros(num_classes, np.int64)
    image_pixels = np.zeros(num_classes, np.int64)
    images = 0
    for i in range(len(dataset)):
        path = dataset.mask_path(i)
        try:
            mask = dataset.map_mask(read_mask(path), path)
        except BadSampleError:
            if not dataset.skip_bad:
                raise
        else:
            mask = np.where(mask < 0, num_classes, mask)
            add_mask(pixels, image_pixels, mask)
            images += 1
        if progress is not None:
            progress(i + 1, len(dataset))
    return ClassCounts(dataset.split, images, pixels.tolist(), image_pixels.tolist())


def save_counts(counts: ClassCounts, path: Path, classes: list[str]) -> None:
    """Write `counts`, the class names and the weights they give as JSON, atomically."""
    record = {**asdict(counts), "classes": classes, "weights": counts.weights()}
    write_text(path, json.dumps(record, indent=1) + "\n")


def read_counts(path: Path) -> ClassCounts | None:
    """The counts of a `save_counts` file; None when it is missing or not such a file."""
    try:
        record = json.loads(path.read_text())
        return ClassCounts(
            str(record["split"]),
            int(record["images"]),
            [int(v) for v in record["pixels"]],
            [int(v) for v in record["image_pixels"]],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
