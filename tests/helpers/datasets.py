"""Tiny trees in the real on-disk formats of Cityscapes, ADE20K and PASCAL-Context."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from tests.helpers.context_labels import CONTEXT59_LABELS_TXT

# Cityscapes labelId -> trainId for the 19 scored classes (from the official labels table)
CITYSCAPES_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
                       23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip
#: name -> id in the 459-class labels.txt, from the tests' own pinned copy (every one of the 59)
CONTEXT_FULL_ID = {name: i for i, name in CONTEXT59_LABELS_TXT.items()}


def _image(rng, height: int, width: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _blocks(rng, values, height: int, width: int) -> np.ndarray:
    """A mask of 8x8 blocks drawn from `values` (so resized crops keep several classes)."""
    grid = rng.choice(np.asarray(values), size=(height // 8, width // 8))
    return np.kron(grid, np.ones((8, 8), dtype=grid.dtype))


def make_cityscapes(root: Path, seed: int = 0, per_split: int = 3) -> Path:
    """`leftImg8bit/` + `gtFine/` with labelIds masks (values 0..33) of 32x64 images."""
    rng = np.random.default_rng(seed)
    for split, city in (("train", "aachen"), ("val", "frankfurt")):
        for n in range(per_split):
            name = f"{city}_{n:06d}_000019"
            image_dir = root / "leftImg8bit" / split / city
            label_dir = root / "gtFine" / split / city
            image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            _image(rng, 32, 64).save(image_dir / f"{name}_leftImg8bit.png")
            label_ids = _blocks(rng, np.arange(34), 32, 64).astype(np.uint8)
            label_ids[:8, :24] = np.repeat([7, 33, 0], 8)  # first, last and an ignored id
            Image.fromarray(label_ids).save(label_dir / f"{name}_gtFine_labelIds.png")
    return root


def make_ade20k(root: Path, seed: int = 0, per_split: int = 3) -> Path:
    """`ADEChallengeData2016/` with JPEG images and PNG annotations holding 0..150."""
    rng = np.random.default_rng(seed)
    base = root / "ADEChallengeData2016"
    for split, tag in (("training", "train"), ("validation", "val")):
        (base / "images" / split).mkdir(parents=True)
        (base / "annotations" / split).mkdir(parents=True)
        for n in range(1, per_split + 1):
            name = f"ADE_{tag}_{n:08d}"
            _image(rng, 48, 64).save(base / "images" / split / f"{name}.jpg", quality=95)
            mask = _blocks(rng, [0, 1, 2, 13, 150], 48, 64).astype(np.uint8)
            Image.fromarray(mask).save(base / "annotations" / split / f"{name}.png")
    return base


def make_context_release(root: Path, seed: int = 0) -> tuple[Path, Path, Path]:
    """A VOC 2010 tree, a `trainval.tar.gz` of `trainval/<id>.mat` LabelMaps and a `labels.txt`.

    Returns:
        (VOCdevkit folder, trainval.tar.gz, labels.txt).
    """
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2010"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    mats = root / "release" / "trainval"
    mats.mkdir(parents=True)
    ids = {"train": ["2008_000002", "2008_000003", "2008_000007"], "val": ["2008_000009"]}
    ids["val"].append("2008_000010")
    full_values = [0, 1, 5, *CONTEXT_FULL_ID.values()]  # 1 and 5: classes outside the 59
    for split, names in ids.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
        for name in names:
            _image(rng, 40, 56).save(voc / "JPEGImages" / f"{name}.jpg", quality=95)
            if name == "2008_000010":
                continue  # in the VOC list, not annotated: left out of the Context split
            label_map = _blocks(rng, full_values, 40, 56).astype(np.uint16)
            scipy.io.savemat(mats / f"{name}.mat", {"LabelMap": label_map})
    archive = root / "release" / "trainval.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(mats, arcname="trainval")
    shutil.rmtree(mats)  # users start from the archive
    from tests.helpers.context_labels import labels_txt

    labels = root / "release" / "labels.txt"
    labels.write_text(labels_txt())  # from the pinned copy, not the code's own table
    return root / "VOCdevkit", archive, labels
