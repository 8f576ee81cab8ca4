"""PASCAL-Context (59 classes, and the 60-class variant with background) on VOC 2010 images.

`gsag data prepare-context` converts the released full annotations (`trainval.tar.gz`: one
`trainval/<id>.mat` per image, whose `LabelMap` (H, W) holds ids 0..459 of the 459-class
`labels.txt`) into palette PNGs `SegmentationClassContext/<id>.png` holding 0 = background
(every unlisted class) and 1..59 for the 59 classes. The 60-class reader reads them as they are;
the 59-class reader ignores background (0 -> 255) and shifts the classes down (k -> k - 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gsag.data.ade20k import reduce_zero_label
from gsag.data.base import SegmentationDataset
from gsag.data.errors import DataError
from gsag.data.io import ClassInfo, voc_colormap
from gsag.data.voc import read_split

#: (id in the 459-class labels.txt, name) of the 59 classes, in class-index order.
CONTEXT_FULL_IDS: list[tuple[int, str]] = [
    (2, "aeroplane"), (9, "bag"), (18, "bed"), (19, "bedclothes"), (22, "bench"),
    (23, "bicycle"), (25, "bird"), (31, "boat"), (33, "book"), (34, "bottle"), (44, "building"),
    (45, "bus"), (46, "cabinet"), (59, "car"), (65, "cat"), (68, "ceiling"), (72, "chair"),
    (80, "cloth"), (85, "computer"), (98, "cow"), (104, "cup"), (105, "curtain"), (113, "dog"),
    (115, "door"), (144, "fence"), (158, "floor"), (159, "flower"), (162, "food"),
    (187, "grass"), (189, "ground"), (207, "horse"), (220, "keyboard"), (232, "light"),
    (258, "motorbike"), (259, "mountain"), (260, "mouse"), (284, "person"), (295, "plate"),
    (296, "platform"), (308, "pottedplant"), (324, "road"), (326, "rock"), (347, "sheep"),
    (349, "shelves"), (354, "sidewalk"), (355, "sign"), (360, "sky"), (366, "snow"),
    (368, "sofa"), (397, "table"), (415, "track"), (416, "train"), (420, "tree"),
    (424, "truck"), (427, "tvmonitor"), (440, "wall"), (445, "water"), (454, "window"),
    (458, "wood"),
]  # fmt: skip
CONTEXT59_CLASSES: list[str] = [name for _, name in CONTEXT_FULL_IDS]
CONTEXT60_CLASSES: list[str] = ["background", *CONTEXT59_CLASSES]
#: The VOC colour map (background black), so shared classes look as they do in VOC masks.
CONTEXT60_PALETTE: list[tuple[int, int, int]] = voc_colormap(len(CONTEXT60_CLASSES))
CONTEXT59_PALETTE: list[tuple[int, int, int]] = CONTEXT60_PALETTE[1:]
#: Ids in the full annotations go up to this (labels.txt lists 1..459; 0 = unlabelled).
FULL_CLASSES = 459

MASKS = "SegmentationClassContext"
LISTS = Path("ImageSets") / "SegmentationContext"


def full_ids(labels: dict[int, str] | None = None) -> list[int]:
    """The 459-class ids of the 59 classes: the built-in table, checked against `labels`
    (a parsed labels.txt) when given.

    Raises:
        DataError: `labels` names another class at one of the ids.
    """
    ids = [full_id for full_id, _ in CONTEXT_FULL_IDS]
    if labels is not None:
        wrong = [
            f"{i}: {labels.get(i)!r} != {n!r}" for i, n in CONTEXT_FULL_IDS if labels.get(i) != n
        ]
        if wrong:
            raise DataError(
                f"labels.txt disagrees with the 59-class table ({'; '.join(wrong[:5])}); "
                "pass the labels.txt of the PASCAL-Context release (459 classes)"
            )
    return ids


def full_to_context60(label_map: np.ndarray) -> np.ndarray:
    """Map a full `LabelMap` (H, W), ids 0..459, to 60-class indices (H, W) uint8
    (0 = background for every id outside the 59)."""
    lookup = np.zeros(FULL_CLASSES + 1, dtype=np.uint8)
    lookup[full_ids()] = np.arange(1, len(CONTEXT_FULL_IDS) + 1, dtype=np.uint8)
    return lookup[label_map]


def find_context_root(root: str | Path) -> Path | None:
    """The VOC 2010 folder holding `JPEGImages/` and `SegmentationClassContext/`: `root`,
    `root/VOC2010` or `root/VOCdevkit/VOC2010`; None when there is none."""
    root = Path(root)
    for candidate in (root, root / "VOC2010", root / "VOCdevkit" / "VOC2010"):
        if (candidate / "JPEGImages").is_dir() and (candidate / MASKS).is_dir():
            return candidate
    return None


class PascalContextSegmentation(SegmentationDataset):
    """PASCAL-Context: `JPEGImages/<id>.jpg` with `SegmentationClassContext/<id>.png`, split
    lists in `ImageSets/SegmentationContext/<split>.txt` (train 4998, val 5105 on the release).

    Args:
        root: the VOC2010 folder (or a parent of `VOC2010/` or `VOCdevkit/VOC2010/`).
        split: train or val.
        num_classes: 59 (background ignored, the usual benchmark) or 60 (background scored).
        transforms, skip_bad: as in `SegmentationDataset`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transforms=None,
        skip_bad: bool = False,
        num_classes: int = 59,
    ) -> None:
        super().__init__(transforms, skip_bad)
        if num_classes not in (59, 60):
            raise ValueError(f"PASCAL-Context has 59 or 60 classes, not {num_classes}")
        found = find_context_root(root)
        if found is None:
            raise DataError(
                f"{root}: no PASCAL-Context masks (expected JPEGImages/ and {MASKS}/ in it or in "
                "VOC2010/ or VOCdevkit/VOC2010/); make them with 'gsag data prepare-context'"
            )
        self.root, self.split = found, split
        list_path = found / LISTS / f"{split}.txt"
        if not list_path.is_file():
            raise DataError(f"{list_path}: no such split list; rerun 'gsag data prepare-context'")
        self.ids = read_split(list_path)
        if not self.ids:
            raise DataError(f"{list_path}: the split list is empty")
        self.reduce_zero = num_classes == 59
        self.info = (
            ClassInfo(list(CONTEXT59_CLASSES), list(CONTEXT59_PALETTE), 255)
            if self.reduce_zero
            else ClassInfo(list(CONTEXT60_CLASSES), list(CONTEXT60_PALETTE), 255)
        )

    def image_path(self, i: int) -> Path:
        return self.root / "JPEGImages" / f"{self.ids[i]}.jpg"

    def mask_path(self, i: int) -> Path:
        return self.root / MASKS / f"{self.ids[i]}.png"

    def map_mask(self, mask: np.ndarray, path: Path) -> np.ndarray:
        return reduce_zero_label(mask, len(CONTEXT59_CLASSES), path) if self.reduce_zero else mask
