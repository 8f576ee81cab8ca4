"""ADE20K SceneParsing (150 classes) in the `ADEChallengeData2016` layout of the official zip.

Annotations store 0 for "other" and 1..150 for the classes. The reader reduces the zero label:
0 becomes the ignore index 255 and every class moves down by one (k -> k - 1), so class indices
are 0..149; no converted copy of the masks is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gsag.data.base import SegmentationDataset
from gsag.data.errors import BadSampleError, DataError
from gsag.data.io import ClassInfo, voc_colormap

ADE20K_CLASSES: list[str] = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug",
    "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning",
    "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole",
    "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van",
    "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool",
    "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle",
    "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase",
    "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
]  # fmt: skip
#: Colours from the VOC colour map, skipping its black entry 0 (not the devkit's colours).
ADE20K_PALETTE: list[tuple[int, int, int]] = voc_colormap(len(ADE20K_CLASSES) + 1)[1:]

#: Split names of the release, and the short names accepted for them.
SPLITS = {"training": "training", "validation": "validation", "train": "training",
          "val": "validation"}  # fmt: skip


def reduce_zero_label(mask: np.ndarray, num_classes: int, path: str | Path) -> np.ndarray:
    """Map stored labels 0..num_classes to class indices: 0 -> 255 (ignore), k -> k - 1.

    Raises:
        BadSampleError: a stored value above `num_classes`.
    """
    if mask.size and (mask.min() < 0 or mask.max() > num_classes):
        raise BadSampleError(
            path,
            f"label values {int(mask.min())}..{int(mask.max())} outside 0..{num_classes} "
            f"(0 = unlabelled, 1..{num_classes} = classes); is this the right annotation file?",
        )
    lookup = np.arange(-1, num_classes, dtype=np.int64)  # 0 -> -1, k -> k - 1
    lookup[0] = 255
    return lookup[mask]


def find_ade20k_root(root: str | Path) -> Path | None:
    """The folder holding `images/` and `annotations/` with `training/`: `root` or
    `root/ADEChallengeData2016`; None when there is none."""
    root = Path(root)
    for candidate in (root, root / "ADEChallengeData2016"):
        if (candidate / "images" / "training").is_dir() and (candidate / "annotations").is_dir():
            return candidate
    return None


class ADE20KSegmentation(SegmentationDataset):
    """ADE20K SceneParsing: `images/<split>/ADE_*.jpg` with `annotations/<split>/ADE_*.png`.

    Args:
        root: `ADEChallengeData2016` (or its parent).
        split: training or validation (train / val are accepted too).
        transforms, skip_bad: as in `SegmentationDataset`.
    """

    def __init__(
        self, root: str | Path, split: str = "training", transforms=None, skip_bad: bool = False
    ) -> None:
        super().__init__(transforms, skip_bad)
        found = find_ade20k_root(root)
        if found is None:
            raise DataError(
                f"{root}: not an ADE20K tree (expected images/training/ and annotations/ in it "
                "or in ADEChallengeData2016/); fetch it with 'gsag data prepare-ade20k --download'"
            )
        if split not in SPLITS:
            raise DataError(f"{found}: split {split!r} unknown; use training or validation")
        self.root, self.split = found, SPLITS[split]
        image_dir = found / "images" / self.split
        self.ids = sorted(p.stem for p in image_dir.glob("ADE_*.jpg"))
        if not self.ids:
            raise DataError(f"{image_dir}: no ADE_*.jpg images")
        self.info = ClassInfo(list(ADE20K_CLASSES), list(ADE20K_PALETTE), 255)

    def image_path(self, i: int) -> Path:
        return self.root / "images" / self.split / f"{self.ids[i]}.jpg"

    def mask_path(self, i: int) -> Path:
        return self.root / "annotations" / self.split / f"{self.ids[i]}.png"

    def map_mask(self, mask: np.ndarray, path: Path) -> np.ndarray:
        return reduce_zero_label(mask, len(ADE20K_CLASSES), path)
