"""Which supported layout a folder holds, and `open_dataset` to open it."""

from __future__ import annotations

from pathlib import Path

from gsag.data.base import SegmentationDataset
from gsag.data.errors import DataError
from gsag.data.folder import FolderSegmentation
from gsag.data.voc import VOCSegmentation, find_voc_root


def detect_layout(root: str | Path) -> str:
    """Return "voc" (a VOC tree) or "folder" (images/ + masks/ + classes.yaml).

    Raises:
        DataError: neither layout is found.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    if find_voc_root(root) is not None:
        return "voc"
    if (root / "images").is_dir():
        return "folder"
    raise DataError(
        f"{root}: not a dataset gsag can read; expected a VOC tree (JPEGImages/, "
        "SegmentationClass/, ImageSets/Segmentation/) or images/ + masks/ + classes.yaml "
        "(see docs/data.md)"
    )


def open_dataset(
    root: str | Path, split: str, transforms=None, skip_bad: bool = False
) -> SegmentationDataset:
    """Open `root` as a `VOCSegmentation` or a `FolderSegmentation`, whichever it holds."""
    cls = VOCSegmentation if detect_layout(root) == "voc" else FolderSegmentation
    return cls(root, split, transforms=transforms, skip_bad=skip_bad)
