"""Which supported layout a folder holds, and `open_dataset` to open it."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from gsag.data.ade20k import ADE20KSegmentation, find_ade20k_root
from gsag.data.base import SegmentationDataset
from gsag.data.cityscapes import CityscapesSegmentation, find_cityscapes_root
from gsag.data.errors import DataError
from gsag.data.folder import FolderSegmentation
from gsag.data.pascal_context import LISTS, PascalContextSegmentation, find_context_root
from gsag.data.voc import VOCSegmentation, find_voc_root

#: Layout name -> reader `(root, split, transforms=..., skip_bad=...)`.
READERS: dict[str, Callable[..., SegmentationDataset]] = {
    "voc": VOCSegmentation,
    "folder": FolderSegmentation,
    "cityscapes": CityscapesSegmentation,
    "ade20k": ADE20KSegmentation,
    "context59": partial(PascalContextSegmentation, num_classes=59),
    "context60": partial(PascalContextSegmentation, num_classes=60),
}
LAYOUTS = ("auto", *READERS)


def detect_layout(root: str | Path) -> str:
    """Return the layout `root` holds: "cityscapes", "ade20k", "context59" (a VOC 2010 tree with
    PASCAL-Context masks; name "context60" yourself for the 60-class variant), "voc" or "folder".

    Raises:
        DataError: no layout is found.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    context = find_context_root(root)
    if find_cityscapes_root(root) is not None:
        return "cityscapes"
    if find_ade20k_root(root) is not None:
        return "ade20k"
    if context is not None and (context / LISTS).is_dir():
        return "context59"
    if find_voc_root(root) is not None:
        return "voc"
    if (root / "images").is_dir():
        return "folder"
    raise DataError(
        f"{root}: not a dataset gsag can read; expected a VOC tree (JPEGImages/, "
        "SegmentationClass/, ImageSets/Segmentation/), images/ + masks/ + classes.yaml, or a "
        "Cityscapes, ADE20K or PASCAL-Context tree (see docs/data.md)"
    )


def open_dataset(
    root: str | Path, split: str, transforms=None, skip_bad: bool = False, layout: str = "auto"
) -> SegmentationDataset:
    """Open `root` with the reader of `layout` ("auto" detects it; see `READERS`)."""
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in READERS:
        raise DataError(f"layout {layout!r} unknown; choose one of {', '.join(LAYOUTS)}")
    return READERS[layout](root, split, transforms=transforms, skip_bad=skip_bad)
