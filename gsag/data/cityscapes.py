"""Cityscapes fine annotations (19 evaluation classes) in the official folder layout.

`gsag data prepare-cityscapes` unpacks `leftImg8bit_trainvaltest.zip` and
`gtFine_trainvaltest.zip` (downloaded by the user: the site needs a login) and writes
`*_gtFine_labelTrainIds.png` beside each `*_gtFine_labelIds.png`; the reader reads those.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gsag.data.base import SegmentationDataset
from gsag.data.errors import BadSampleError, DataError
from gsag.data.io import ClassInfo, read_mask, save_mask

#: (labelId, name, colour) of the 19 classes scored on Cityscapes, in trainId order.
_TRAIN_CLASSES: list[tuple[int, str, tuple[int, int, int]]] = [
    (7, "road", (128, 64, 128)),
    (8, "sidewalk", (244, 35, 232)),
    (11, "building", (70, 70, 70)),
    (12, "wall", (102, 102, 156)),
    (13, "fence", (190, 153, 153)),
    (17, "pole", (153, 153, 153)),
    (19, "traffic light", (250, 170, 30)),
    (20, "traffic sign", (220, 220, 0)),
    (21, "vegetation", (107, 142, 35)),
    (22, "terrain", (152, 251, 152)),
    (23, "sky", (70, 130, 180)),
    (24, "person", (220, 20, 60)),
    (25, "rider", (255, 0, 0)),
    (26, "car", (0, 0, 142)),
    (27, "truck", (0, 0, 70)),
    (28, "bus", (0, 60, 100)),
    (31, "train", (0, 80, 100)),
    (32, "motorcycle", (0, 0, 230)),
    (33, "bicycle", (119, 11, 32)),
]
CITYSCAPES_CLASSES: list[str] = [name for _, name, _ in _TRAIN_CLASSES]
CITYSCAPES_PALETTE: list[tuple[int, int, int]] = [colour for _, _, colour in _TRAIN_CLASSES]
#: labelId of each trainId: what the official evaluation scripts expect in prediction PNGs.
CITYSCAPES_LABEL_IDS: list[int] = [label_id for label_id, _, _ in _TRAIN_CLASSES]
#: The largest labelId (bicycle); a labelIds PNG holds 0..33.
MAX_LABEL_ID = 33

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"


def label_to_train_ids(label_ids: np.ndarray, path: str | Path) -> np.ndarray:
    """Map a labelIds mask (H, W) to trainIds (H, W) uint8: the 19 classes 0..18, the rest 255.

    Raises:
        BadSampleError: values above 33, which no Cityscapes labelIds file holds.
    """
    if label_ids.size and (label_ids.min() < 0 or label_ids.max() > MAX_LABEL_ID):
        raise BadSampleError(
            path,
            f"labelIds values {int(label_ids.min())}..{int(label_ids.max())} outside 0..33; "
            f"expected an official *{LABEL_IDS_SUFFIX} (not the colour or instanceIds file)",
        )
    lookup = np.full(MAX_LABEL_ID + 1, 255, dtype=np.uint8)
    lookup[CITYSCAPES_LABEL_IDS] = np.arange(len(CITYSCAPES_LABEL_IDS), dtype=np.uint8)
    return lookup[label_ids]


def find_cityscapes_root(root: str | Path) -> Path | None:
    """The folder holding `leftImg8bit/` and `gtFine/`: `root` or `root/cityscapes`."""
    root = Path(root)
    for candidate in (root, root / "cityscapes"):
        if (candidate / "leftImg8bit").is_dir() and (candidate / "gtFine").is_dir():
            return candidate
    return None


def cityscapes_splits(root: Path) -> list[str]:
    """The splits present under `leftImg8bit/` (train, val, test)."""
    return sorted(p.name for p in (root / "leftImg8bit").iterdir() if p.is_dir())


def write_train_ids(root: str | Path, progress=None) -> dict[str, int]:
    """Write `*_gtFine_labelTrainIds.png` beside every `*_gtFine_labelIds.png` under `gtFine/`.

    Files already written are kept, so an interrupted run resumes.

    Returns:
        Counts: masks (labelIds files found), written (new trainIds files).

    Raises:
        DataError: no `gtFine/` with labelIds files under `root`.
        BadSampleError: a labelIds file that is unreadable or holds values above 33.
    """
    found = find_cityscapes_root(root)
    if found is None:
        raise DataError(
            f"{root}: not a Cityscapes tree (expected leftImg8bit/ and gtFine/); unpack "
            "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip there"
        )
    sources = sorted((found / "gtFine").glob(f"*/*/*{LABEL_IDS_SUFFIX}"))
    if not sources:
        raise DataError(f"{found / 'gtFine'}: no */*/*{LABEL_IDS_SUFFIX} files")
    written = 0
    for done, source in enumerate(sources, 1):
        target = source.with_name(source.name[: -len(LABEL_IDS_SUFFIX)] + TRAIN_IDS_SUFFIX)
        if not target.is_file():
            save_mask(target, label_to_train_ids(read_mask(source), source), CITYSCAPES_PALETTE)
            written += 1
        if progress:
            progress(done, len(sources))
    return {"masks": len(sources), "written": written}


class CityscapesSegmentation(SegmentationDataset):
    """Cityscapes fine: `leftImg8bit/<split>/<city>/<name>_leftImg8bit.png` with
    `gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png` (trainIds 0..18, 255 = ignore).

    Args:
        root: the folder holding `leftImg8bit/` and `gtFine/` (or its parent `cityscapes/`).
        split: train, val or test.
        transforms, skip_bad: as in `SegmentationDataset`.
    """

    prediction_ids = CITYSCAPES_LABEL_IDS

    def __init__(
        self, root: str | Path, split: str = "train", transforms=None, skip_bad: bool = False
    ) -> None:
        super().__init__(transforms, skip_bad)
        found = find_cityscapes_root(root)
        if found is None:
            raise DataError(
                f"{root}: not a Cityscapes tree (expected leftImg8bit/ and gtFine/); make one "
                "with 'gsag data prepare-cityscapes'"
            )
        self.root, self.split = found, split
        image_dir = found / "leftImg8bit" / split
        if not image_dir.is_dir():
            raise DataError(
                f"{image_dir}: no such split; available: {', '.join(cityscapes_splits(found))}"
            )
        self.ids = sorted(
            f"{p.parent.name}/{p.name[: -len(IMAGE_SUFFIX)]}"
            for p in image_dir.glob(f"*/*{IMAGE_SUFFIX}")
        )
        if not self.ids:
            raise DataError(f"{image_dir}: no <city>/*{IMAGE_SUFFIX} images")
        if not any((found / "gtFine" / split).glob(f"*/*{TRAIN_IDS_SUFFIX}")):
            raise DataError(
                f"{found / 'gtFine' / split}: no *{TRAIN_IDS_SUFFIX} masks; run "
                f"'gsag data prepare-cityscapes --out {found}' to write them from the labelIds"
            )
        self.info = ClassInfo(list(CITYSCAPES_CLASSES), list(CITYSCAPES_PALETTE), 255)

    def image_path(self, i: int) -> Path:
        return self.root / "leftImg8bit" / self.split / f"{self.ids[i]}{IMAGE_SUFFIX}"

    def mask_path(self, i: int) -> Path:
        return self.root / "gtFine" / self.split / f"{self.ids[i]}{TRAIN_IDS_SUFFIX}"
