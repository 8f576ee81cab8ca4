"""`gsag data check`: open every image/mask pair of a dataset and report what is wrong."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gsag.data.base import SegmentationDataset
from gsag.data.counts import add_mask, median_frequency_weights
from gsag.data.errors import BadSampleError, DataError
from gsag.data.folder import ALL_SPLIT, FolderSegmentation
from gsag.data.io import ClassInfo, check_labels, orient_mask, read_image_oriented, read_mask
from gsag.data.layout import detect_layout, open_dataset
from gsag.data.voc import VOCSegmentation, find_voc_root, voc_splits


@dataclass
class Issue:
    """One problem with one file."""

    path: Path
    message: str
    error: bool = True


@dataclass
class CheckReport:
    """What `check_dataset` found."""

    root: Path
    layout: str
    info: ClassInfo
    splits: list[str]
    pairs: int = 0
    issues: list[Issue] = field(default_factory=list)
    conversions: Counter = field(default_factory=Counter)
    class_pixels: np.ndarray | None = None
    image_pixels: np.ndarray | None = None  # labelled pixels of the images holding each class
    ignore_pixels: int = 0

    def class_weights(self) -> list[float]:
        """The median-frequency weights of the pairs checked (`loss.class_weights: auto`)."""
        assert self.class_pixels is not None and self.image_pixels is not None
        return median_frequency_weights(self.class_pixels.tolist(), self.image_pixels.tolist())

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.error]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if not i.error]

    @property
    def ok(self) -> bool:
        return not self.errors


def check_pair(
    image_path: Path, mask_path: Path, info: ClassInfo, map_mask=None
) -> tuple[list[Issue], list[str], np.ndarray | None]:
    """Check one pair; every problem is reported, not just the first.

    `map_mask(mask, path)` turns the stored mask into class indices (a reader's `map_mask`).

    Returns:
        (issues, image conversion notes, the mask if it is usable for the histogram).
    """
    issues: list[Issue] = []
    notes: list[str] = []
    image = mask = None
    orientation = 1
    try:
        image, notes, orientation = read_image_oriented(image_path)
    except BadSampleError as e:
        issues.append(Issue(e.path, e.problem))
    try:
        mask = read_mask(mask_path)
        if map_mask is not None:
            mask = map_mask(mask, mask_path)
        if image is not None:
            mask = orient_mask(mask, orientation, image.shape)
    except BadSampleError as e:
        issues.append(Issue(e.path, e.problem))
    if mask is not None:
        try:
            check_labels(mask, info, mask_path)
        except BadSampleError as e:
            issues.append(Issue(e.path, e.problem))
            mask = None
    if image is not None and mask is not None and mask.shape != image.shape[:2]:
        issues.append(
            Issue(
                mask_path,
                f"mask is {mask.shape[1]}x{mask.shape[0]}, image {image_path.name} is "
                f"{image.shape[1]}x{image.shape[0]} (width x height); masks must match their image",
            )
        )
        mask = None
    for note in notes:
        issues.append(Issue(image_path, note, error=False))
    return issues, notes, mask


#: The splits checked by default for the layouts with fixed split names.
DEFAULT_SPLITS = {
    "cityscapes": ["train", "val"],
    "ade20k": ["training", "validation"],
    "context59": ["train", "val"],
    "context60": ["train", "val"],
}


def _datasets(
    root: Path, splits: list[str] | None, layout: str = "auto"
) -> tuple[str, list[SegmentationDataset]]:
    layout = detect_layout(root) if layout == "auto" else layout
    if layout in DEFAULT_SPLITS:
        return layout, [
            open_dataset(root, s, layout=layout) for s in splits or DEFAULT_SPLITS[layout]
        ]
    if layout == "voc":
        voc_root = find_voc_root(root)
        # voc_root is None only for an explicit layout="voc" on another folder: no lists to check
        names = splits or (voc_splits(voc_root) if voc_root is not None else [])
        return layout, [VOCSegmentation(root, s) for s in names]
    if splits:
        return layout, [FolderSegmentation(root, s) for s in splits]
    split_dir = root / "splits"
    names = sorted(p.stem for p in split_dir.glob("*.txt")) if split_dir.is_dir() else []
    names += [p.name for p in (root / "images").iterdir() if p.is_dir()]
    return layout, [FolderSegmentation(root, s) for s in (names or [ALL_SPLIT])]


def check_dataset(
    root: str | Path, splits: list[str] | None = None, progress=None, layout: str = "auto"
) -> CheckReport:
    """Open every pair listed by any split of `root` (or by `splits`) and report problems.

    Args:
        root: a dataset folder in one of the layouts of `gsag.data.layout.READERS`.
        splits: the splits to check; default all the dataset lists (train and val for
            Cityscapes, ADE20K and PASCAL-Context).
        progress: optional callable `(done, total)`.
        layout: the layout; "auto" detects it.

    Raises:
        DataError: the folder is not a dataset at all (no layout, no class list, ...).
    """
    root = Path(root)
    layout, datasets = _datasets(root, splits, layout)
    if not datasets:
        raise DataError(f"{root}: no split lists to check")
    info = datasets[0].info
    report = CheckReport(root, layout, info, [d.split for d in datasets])
    pairs: dict[tuple[Path, Path], None] = {}
    for dataset in datasets:
        for i in range(len(dataset)):
            pairs[(dataset.image_path(i), dataset.mask_path(i))] = None
    counts = np.zeros(256, np.int64)
    classes = np.zeros(info.num_classes, np.int64)
    image_pixels = np.zeros(info.num_classes, np.int64)
    for done, (image_path, mask_path) in enumerate(pairs, 1):
        issues, notes, mask = check_pair(image_path, mask_path, info, datasets[0].map_mask)
        report.issues += issues
        report.conversions.update(notes)
        if mask is not None:
            counts += np.bincount(mask.ravel(), minlength=256)[:256]
            add_mask(classes, image_pixels, mask)
        if progress:
            progress(done, len(pairs))
    report.pairs = len(pairs)
    report.class_pixels = counts[: info.num_classes]
    report.image_pixels = image_pixels
    report.ignore_pixels = int(counts[info.ignore_index])
    return report
