"""Users' own data: `images/` + `masks/` + `classes.yaml`, with optional split lists."""

from __future__ import annotations

from pathlib import Path

from gsag.data.base import SegmentationDataset
from gsag.data.errors import DataError
from gsag.data.io import IMAGE_SUFFIXES, read_classes_yaml
from gsag.data.voc import read_split

ALL_SPLIT = "all"


def _images_in(folder: Path) -> dict[str, Path]:
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    }


class FolderSegmentation(SegmentationDataset):
    """A folder of images and index masks described by a `classes.yaml`.

    Layout (`<id>` is the file name without suffix; masks are PNGs, palette or single-channel,
    whose stored value is the class index)::

        root/classes.yaml            classes: [...], palette: [[r, g, b], ...], ignore_index: 255
        root/images/<id>.jpg|png     and root/masks/<id>.png
        root/splits/<split>.txt      optional: one id per line
        root/images/<split>/...      or: one sub-folder per split in images/ and masks/

    Without split lists or sub-folders use `split="all"` (every image).

    Args:
        root: the dataset folder.
        split: split name, or "all".
        transforms: callable `(image, mask) -> (image, mask)`.
        skip_bad: skip (and count in `skipped`) bad samples instead of raising.
    """

    def __init__(
        self, root: str | Path, split: str = "train", transforms=None, skip_bad: bool = False
    ) -> None:
        super().__init__(transforms, skip_bad)
        self.root = Path(root)
        self.split = split
        classes_yaml = self.root / "classes.yaml"
        if not classes_yaml.is_file():
            raise DataError(
                f"{classes_yaml}: missing; write one, e.g. 'classes: [background, road, car]' "
                "with optional 'palette: [[0, 0, 0], ...]' and 'ignore_index: 255'"
            )
        self.info = read_classes_yaml(classes_yaml)
        images, masks = self.root / "images", self.root / "masks"
        if not images.is_dir():
            raise DataError(f"{images}: missing; put the images there and masks in {masks}")
        list_path = self.root / "splits" / f"{split}.txt"
        if (images / split).is_dir():
            self.image_dir, self.mask_dir = images / split, masks / split
            found = _images_in(self.image_dir)
            self.ids = list(found)
        else:
            self.image_dir, self.mask_dir = images, masks
            found = _images_in(images)
            if list_path.is_file():
                self.ids = read_split(list_path)
                missing = [i for i in self.ids if i not in found]
                if missing:
                    raise DataError(
                        f"{list_path}: ids without an image in {images}: {', '.join(missing[:5])}"
                        + (" ..." if len(missing) > 5 else "")
                    )
            elif split == ALL_SPLIT:
                self.ids = list(found)
            else:
                have = sorted(p.stem for p in (self.root / "splits").glob("*.txt"))
                raise DataError(
                    f"{self.root}: no split '{split}' (no {list_path} and no {images / split}/); "
                    f"available: {', '.join([*have, ALL_SPLIT])}"
                )
        if not self.ids:
            raise DataError(f"{self.image_dir}: no images for split '{split}'")
        self._image_paths = found

    def image_path(self, i: int) -> Path:
        return self._image_paths[self.ids[i]]

    def mask_path(self, i: int) -> Path:
        return self.mask_dir / f"{self.ids[i]}.png"
