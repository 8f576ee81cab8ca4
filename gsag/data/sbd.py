"""`gsag data prepare-voc`: VOC 2012 + SBD -> the 10 582-image `train_aug` split.

The split is (VOC train ∪ SBD train ∪ SBD val) − VOC val. Its masks go to
`SegmentationClassAug/`: VOC's own mask where VOC has one (it carries the 255 ignore borders),
else the SBD `cls/<id>.mat` `GTcls.Segmentation` converted to a palette PNG.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import scipy.io

from gsag.atomic import atomic_path
from gsag.atomic import write_bytes as atomic_write_bytes
from gsag.data.errors import BadSampleError, DataError
from gsag.data.io import save_mask
from gsag.data.voc import AUG_MASKS, AUG_SPLIT, VOC_CLASSES, VOC_PALETTE, find_voc_root, read_split


def find_sbd_root(root: str | Path) -> Path | None:
    """The SBD folder holding `cls/`, `train.txt` and `val.txt`: `root`, `root/dataset` or
    `root/benchmark_RELEASE/dataset`; None when there is none."""
    root = Path(root)
    for candidate in (root, root / "dataset", root / "benchmark_RELEASE" / "dataset"):
        if (candidate / "cls").is_dir() and (candidate / "train.txt").is_file():
            return candidate
    return None


def read_sbd_mat(path: str | Path) -> np.ndarray:
    """The class mask (H, W) uint8 stored in an SBD `cls/*.mat` as `GTcls.Segmentation`."""
    path = Path(path)
    try:
        data = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
        segmentation = np.asarray(data["GTcls"].Segmentation)
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:
        raise BadSampleError(path, f"not an SBD class file with GTcls.Segmentation ({e})") from e
    if segmentation.ndim != 2:
        raise BadSampleError(path, f"GTcls.Segmentation has shape {segmentation.shape}, not (H, W)")
    bad = np.setdiff1d(np.unique(segmentation), np.arange(len(VOC_CLASSES)))
    if bad.size:
        raise BadSampleError(path, f"labels {bad.tolist()} outside 0..{len(VOC_CLASSES) - 1}")
    return segmentation.astype(np.uint8)


def _copy_atomic(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def prepare_voc(voc: str | Path, sbd: str | Path, progress=None) -> dict[str, int]:
    """Write `SegmentationClassAug/` and `ImageSets/Segmentation/train_aug.txt` into the VOC tree.

    Masks already written are kept, so an interrupted run resumes. Images SBD has and the VOC
    tree lacks are copied into `JPEGImages/`.

    Args:
        voc: the VOC2012 folder (or a parent of `VOC2012/` or `VOCdevkit/VOC2012/`).
        sbd: the SBD folder (`benchmark_RELEASE`, its `dataset/`, or their parent).
        progress: optional callable `(done, total)`.

    Returns:
        Counts: voc_train, voc_val, sbd_train, sbd_val, train_aug, from_voc, from_sbd.

    Raises:
        DataError: a folder is not VOC / SBD, or a listed id has no mask anywhere.
    """
    voc_root = find_voc_root(voc)
    if voc_root is None:
        raise DataError(f"{voc}: not a VOC tree (expected JPEGImages/ and ImageSets/Segmentation/)")
    sbd_root = find_sbd_root(sbd)
    if sbd_root is None:
        raise DataError(
            f"{sbd}: not an SBD folder (expected cls/, train.txt, val.txt, as in "
            "benchmark_RELEASE/dataset from benchmark.tgz)"
        )
    lists = voc_root / "ImageSets" / "Segmentation"
    voc_train, voc_val = read_split(lists / "train.txt"), read_split(lists / "val.txt")
    sbd_train = read_split(sbd_root / "train.txt")
    sbd_val = read_split(sbd_root / "val.txt") if (sbd_root / "val.txt").is_file() else []
    aug = sorted((set(voc_train) | set(sbd_train) | set(sbd_val)) - set(voc_val))

    out_dir = voc_root / AUG_MASKS
    out_dir.mkdir(exist_ok=True)
    voc_masks, images = voc_root / "SegmentationClass", voc_root / "JPEGImages"
    from_voc = from_sbd = 0
    for done, name in enumerate(aug, 1):
        target = out_dir / f"{name}.png"
        voc_mask, mat = voc_masks / f"{name}.png", sbd_root / "cls" / f"{name}.mat"
        if voc_mask.is_file():
            from_voc += 1
            if not target.is_file():
                _copy_atomic(voc_mask, target)
        elif mat.is_file():
            from_sbd += 1
            if not target.is_file():
                save_mask(target, read_sbd_mat(mat), VOC_PALETTE)
        else:
            raise DataError(f"{name}: listed for train_aug but neither {voc_mask} nor {mat} exists")
        image = images / f"{name}.jpg"
        if not image.is_file():
            sbd_image = sbd_root / "img" / f"{name}.jpg"
            if not sbd_image.is_file():
                raise DataError(f"{name}: no image in {images} nor in {sbd_root / 'img'}")
            _copy_atomic(sbd_image, image)
        if progress:
            progress(done, len(aug))
    atomic_write_bytes(lists / f"{AUG_SPLIT}.txt", "".join(f"{n}\n" for n in aug).encode())
    return {
        "voc_train": len(voc_train),
        "voc_val": len(voc_val),
        "sbd_train": len(sbd_train),
        "sbd_val": len(sbd_val),
        "train_aug": len(aug),
        "from_voc": from_voc,
        "from_sbd": from_sbd,
    }
