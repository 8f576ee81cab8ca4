"""The shared dataset behaviour: load a pair, validate it, apply transforms, skip bad samples."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from gsag.data.errors import BadSampleError
from gsag.data.io import ClassInfo, check_labels, orient_mask, read_image_oriented, read_mask


class SegmentationDataset(Dataset):
    """Image/mask pairs listed by id. Subclasses fill `ids`, `info` and the two path methods.

    `__getitem__(i)` returns `(image, mask)`: without transforms image uint8 (3, H, W) and mask
    int64 (H, W); with transforms whatever they return (the gsag pipelines give a normalised
    float32 image and an int64 mask). A bad pair raises `BadSampleError`; with `skip_bad=True` it
    is skipped (the next good sample is returned), counted in `skipped` and warned about once.
    """

    ids: list[str]
    info: ClassInfo
    #: The split's name as the layout stores it (e.g. "train", ADE20K's "training").
    split: str
    #: Value written for each class index by `gsag predict` (e.g. Cityscapes labelIds); None
    #: writes the class index itself.
    prediction_ids: list[int] | None = None

    def __init__(self, transforms=None, skip_bad: bool = False) -> None:
        self.transforms = transforms
        self.skip_bad = skip_bad
        self.skipped: dict[str, str] = {}

    # -- subclasses ---------------------------------------------------------------------------
    def image_path(self, i: int) -> Path:
        raise NotImplementedError

    def mask_path(self, i: int) -> Path:
        raise NotImplementedError

    def map_mask(self, mask: np.ndarray, path: Path) -> np.ndarray:
        """Turn the stored mask (H, W) int64 into class indices (default: unchanged).

        Readers whose files use another encoding (ADE20K's 0 = "other") override it and raise
        `BadSampleError` naming `path` for values the encoding does not allow.
        """
        return mask

    # -- class description --------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        return self.info.classes

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        return self.info.palette

    @property
    def ignore_index(self) -> int:
        return self.info.ignore_index

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    # -- loading ------------------------------------------------------------------------------
    def load(self, i: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Read and validate pair `i`: image uint8 (H, W, 3), mask int64 (H, W), notes.

        Raises:
            BadSampleError: unreadable files, a size mismatch or out-of-range labels.
        """
        image_path, mask_path = self.image_path(i), self.mask_path(i)
        image, notes, orientation = read_image_oriented(image_path)
        mask = self.map_mask(read_mask(mask_path), mask_path)
        mask = orient_mask(mask, orientation, image.shape)
        if mask.shape != image.shape[:2]:
            raise BadSampleError(
                mask_path,
                f"mask is {mask.shape[1]}x{mask.shape[0]}, image {image_path.name} is "
                f"{image.shape[1]}x{image.shape[0]} (width x height); masks must match their image",
            )
        check_labels(mask, self.info, mask_path)
        return image, mask, notes

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} samples")
        i %= len(self)
        for attempt in range(len(self)):
            j = (i + attempt) % len(self)
            try:
                image, mask, _ = self.load(j)
                break
            except BadSampleError as e:
                if not self.skip_bad:
                    raise
                if self.ids[j] not in self.skipped:
                    self.skipped[self.ids[j]] = str(e)
                    warnings.warn(f"skipping bad sample: {e}", stacklevel=2)
        else:
            raise BadSampleError(self.image_path(i).parent, "every sample in the dataset is bad")
        image_t = torch.from_numpy(image).permute(2, 0, 1)  # (3, H, W)
        mask_t = torch.from_numpy(mask)  # (H, W) int64
        if self.transforms is not None:
            return self.transforms(image_t, mask_t)
        return image_t, mask_t

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} samples, {self.num_classes} classes, "
            f"ignore_index={self.ignore_index})"
        )
