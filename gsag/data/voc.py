"""PASCAL VOC 2012 segmentation (and the SBD-augmented `train_aug` split) in VOC's own layout."""

from __future__ import annotations

from pathlib import Path

from gsag.data.base import SegmentationDataset
from gsag.data.errors import DataError
from gsag.data.io import ClassInfo, read_classes_yaml, voc_colormap

VOC_CLASSES: list[str] = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]
VOC_PALETTE: list[tuple[int, int, int]] = voc_colormap(len(VOC_CLASSES))

AUG_SPLIT = "train_aug"
AUG_MASKS = "SegmentationClassAug"


def find_voc_root(root: str | Path) -> Path | None:
    """The folder holding `JPEGImages/` and `ImageSets/Segmentation/`: `root` itself,
    `root/VOC2012` or `root/VOCdevkit/VOC2012`; None when there is none."""
    root = Path(root)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir() and (
            candidate / "ImageSets" / "Segmentation"
        ).is_dir():
            return candidate
    return None


def voc_splits(root: Path) -> list[str]:
    """The split lists present under `ImageSets/Segmentation`."""
    return sorted(p.stem for p in (root / "ImageSets" / "Segmentation").glob("*.txt"))


def read_split(path: Path) -> list[str]:
    """Ids listed one per line (blank lines and anything after the first word ignored).

    Raises:
        DataError: the list is not UTF-8 text, an id is an absolute path or climbs out with
            `..` (reads stay inside the dataset root), or an id is listed more than once.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (offset {e.start}); one id per line") from e
    lines: dict[str, list[int]] = {}  # id -> the lines naming it
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        sample_id = line.split()[0]
        parts = sample_id.replace("\\", "/").split("/")
        if sample_id.startswith(("/", "\\")) or ".." in parts or Path(sample_id).is_absolute():
            raise DataError(
                f"{path}: id {sample_id!r} (line {number}) points outside the dataset; ids are "
                "file names inside it, like 2007_000032"
            )
        lines.setdefault(sample_id, []).append(number)
    twice = {i: n for i, n in lines.items() if len(n) > 1}
    if twice:
        sample_id, numbers = next(iter(twice.items()))
        more = f", and {len(twice) - 1} more ids repeat" if len(twice) > 1 else ""
        raise DataError(
            f"{path}: id {sample_id!r} is listed {len(numbers)} times (lines "
            f"{', '.join(map(str, numbers[:5]))}){more}; list each image once, or it is "
            "trained on and scored that many times"
        )
    return list(lines)


class VOCSegmentation(SegmentationDataset):
    """PASCAL VOC 2012 segmentation, or any dataset in its on-disk layout.

    Reads `JPEGImages/<id>.jpg`, `SegmentationClass/<id>.png` (palette PNGs whose stored index is
    the label; 255 = ignore) and `ImageSets/Segmentation/<split>.txt`. Split `train_aug` reads the
    masks in `SegmentationClassAug/` written by `gsag data prepare-voc`. A `classes.yaml` next to
    the folders (as written by `gsag data synth`) overrides VOC's 21 classes.

    Args:
        root: the VOC2012 folder (or a parent holding `VOC2012/` or `VOCdevkit/VOC2012/`).
        split: a list name in `ImageSets/Segmentation` (train, val, trainval, train_aug, ...).
        transforms: callable `(image, mask) -> (image, mask)`, e.g. `train_transforms()`.
        skip_bad: skip (and count in `skipped`) bad samples instead of raising.
    """

    def __init__(
        self, root: str | Path, split: str = "train", transforms=None, skip_bad: bool = False
    ) -> None:
        super().__init__(transforms, skip_bad)
        found = find_voc_root(root)
        if found is None:
            raise DataError(
                f"{root}: not a VOC tree (expected JPEGImages/ and ImageSets/Segmentation/ in it "
                "or in VOC2012/ or VOCdevkit/VOC2012/); make one with 'gsag data prepare-voc' or "
                "'gsag data synth'"
            )
        self.root = found
        self.split = split
        list_path = found / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_path.is_file():
            hint = (
                " run 'gsag data prepare-voc --voc DIR --sbd DIR' to make it"
                if split == AUG_SPLIT
                else ""
            )
            raise DataError(
                f"{list_path}: no such split list; available: {', '.join(voc_splits(found))}.{hint}"
            )
        self.ids = read_split(list_path)
        if not self.ids:
            raise DataError(f"{list_path}: the split list is empty")
        self.mask_dir = found / (AUG_MASKS if split == AUG_SPLIT else "SegmentationClass")
        classes_yaml = found / "classes.yaml"
        self.info = (
            read_classes_yaml(classes_yaml)
            if classes_yaml.is_file()
            else ClassInfo(list(VOC_CLASSES), list(VOC_PALETTE), 255)
        )

    def image_path(self, i: int) -> Path:
        return self.root / "JPEGImages" / f"{self.ids[i]}.jpg"

    def mask_path(self, i: int) -> Path:
        return self.mask_dir / f"{self.ids[i]}.png"
