"""Which supported layout a folder holds, and `open_dataset` to open it."""

from __future__ import annotations

import os
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


def dataset_at(folder: str | os.PathLike) -> str | None:
    """The layout of the dataset whose root is `folder` itself, or None.

    Stricter than `detect_layout`, which also looks one or two folders down and takes any folder
    with images/ for the folder layout: here the folder layout needs images/ and masks/ or
    classes.yaml. Used to keep every command's output out of datasets (`dataset_holding`).
    """
    root = Path(folder)
    if not root.is_dir():
        return None
    finders = {
        "cityscapes": find_cityscapes_root,
        "ade20k": find_ade20k_root,
        "context59": find_context_root,
        "voc": find_voc_root,
    }
    for layout, find in finders.items():
        if find(root) == root:
            return layout
    if (root / "images").is_dir() and (
        (root / "masks").is_dir() or (root / "classes.yaml").is_file()
    ):
        return "folder"
    return None


def dataset_holding(path: str | os.PathLike) -> tuple[Path, str] | None:
    """(root, layout) of the dataset that `path` (resolved: links, `..`) is or lies inside,
    or None when neither it nor any folder above it is a dataset root (`dataset_at`)."""
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError):  # a link loop: judge the path as written
        real = Path(os.path.abspath(path))
    for folder in (real, *real.parents):
        layout = dataset_at(folder)
        if layout is not None:
            return folder, layout
    return None


def open_dataset(
    root: str | Path, split: str, transforms=None, skip_bad: bool = False, layout: str = "auto"
) -> SegmentationDataset:
    """Open `root` with the reader of `layout` ("auto" detects it; see `READERS`)."""
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in READERS:
        raise DataError(f"layout {layout!r} unknown; choose one of {', '.join(LAYOUTS)}")
    return READERS[layout](root, split, transforms=transforms, skip_bad=skip_bad)
