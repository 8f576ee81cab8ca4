"""`gsag data prepare-context`: PASCAL-Context full annotations -> 60-class palette PNGs.

Inputs, as released: the VOC 2010 tree (`VOCtrainval_03-May-2010.tar`: `JPEGImages/`,
`ImageSets/Main/{train,val}.txt`) and the PASCAL-Context `trainval.tar.gz` (`trainval/<id>.mat`
with a `LabelMap` of 459-class ids), optionally its `labels.txt` ("<id>: <name>" per line) to
check the id table. Output, inside the VOC 2010 folder: `SegmentationClassContext/<id>.png`
(0 = background, 1..59) and `ImageSets/SegmentationContext/{train,val}.txt`: the VOC 2010
Main train/val lists restricted to annotated images (4998 / 5105 on the release).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from gsag.atomic import write_bytes
from gsag.data.download import extract
from gsag.data.errors import BadSampleError, DataError
from gsag.data.io import save_mask
from gsag.data.pascal_context import (
    CONTEXT60_PALETTE,
    FULL_CLASSES,
    LISTS,
    MASKS,
    full_ids,
    full_to_context60,
)
from gsag.data.voc import read_split


def read_label_map(path: str | Path) -> np.ndarray:
    """The `LabelMap` (H, W) int64 of a PASCAL-Context `.mat` file, checked to hold 0..459."""
    path = Path(path)
    try:
        label_map = np.asarray(scipy.io.loadmat(path)["LabelMap"]).astype(np.int64)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadSampleError(path, f"not a PASCAL-Context annotation with LabelMap ({e})") from e
    if label_map.ndim != 2:
        raise BadSampleError(path, f"LabelMap has shape {label_map.shape}, not (H, W)")
    if label_map.size and (label_map.min() < 0 or label_map.max() > FULL_CLASSES):
        raise BadSampleError(
            path,
            f"LabelMap values {int(label_map.min())}..{int(label_map.max())} outside "
            f"0..{FULL_CLASSES}; expected the 459-class full annotations (trainval.tar.gz)",
        )
    return label_map


def read_labels_txt(path: str | Path) -> dict[int, str]:
    """Parse the release's `labels.txt` ("<id>: <name>" per line)."""
    path = Path(path)
    labels = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, sep, name = line.partition(":")
        if not sep or not key.strip().isdigit():
            raise DataError(f"{path}:{number}: {line!r} is not '<id>: <name>'")
        labels[int(key)] = name.strip()
    return labels


def find_annotations(source: str | Path) -> Path:
    """The folder of `<id>.mat` files: `source`, `source/trainval`, or, for a `trainval.tar.gz`,
    its `trainval/` unpacked beside it."""
    source = Path(source)
    if source.is_file():
        extract(source, source.parent)
        source = source.parent
    for candidate in (source, source / "trainval"):
        if candidate.is_dir() and any(candidate.glob("*.mat")):
            return candidate
    raise DataError(
        f"{source}: no <id>.mat annotations (expected trainval.tar.gz or its trainval/ folder "
        "from the PASCAL-Context release)"
    )


def find_voc2010(root: str | Path) -> Path:
    """The VOC 2010 folder with `JPEGImages/` and `ImageSets/Main/`."""
    root = Path(root)
    for candidate in (root, root / "VOC2010", root / "VOCdevkit" / "VOC2010"):
        if (candidate / "JPEGImages").is_dir() and (candidate / "ImageSets" / "Main").is_dir():
            return candidate
    raise DataError(
        f"{root}: not a VOC 2010 tree (expected JPEGImages/ and ImageSets/Main/ in it or in "
        "VOC2010/ or VOCdevkit/VOC2010/, from VOCtrainval_03-May-2010.tar)"
    )


def _convert(mat: Path, image: Path, target: Path) -> None:
    label_map = read_label_map(mat)
    if not image.is_file():
        raise DataError(f"{mat}: annotated image {image} is missing from the VOC 2010 tree")
    with Image.open(image) as im:
        width, height = im.size
    if label_map.shape != (height, width):
        raise BadSampleError(
            mat,
            f"LabelMap is {label_map.shape[1]}x{label_map.shape[0]}, image {image.name} is "
            f"{width}x{height} (width x height); the annotation belongs to another image",
        )
    save_mask(target, full_to_context60(label_map), CONTEXT60_PALETTE)


def prepare_context(
    voc2010: str | Path, annotations: str | Path, labels: str | Path | None = None, progress=None
) -> dict[str, int]:
    """Write the 60-class masks and the train/val lists into the VOC 2010 folder.

    Masks already written are kept, so an interrupted run resumes.

    Returns:
        Counts: masks (annotations found), written (new PNGs), train, val.

    Raises:
        DataError: a folder is not what it should be, or `labels` disagrees with the id table.
        BadSampleError: an unreadable annotation or one that does not fit its image.
    """
    root = find_voc2010(voc2010)
    full_ids(read_labels_txt(labels) if labels else None)
    mats = sorted(find_annotations(annotations).glob("*.mat"))
    out = root / MASKS
    out.mkdir(exist_ok=True)
    written = 0
    for done, mat in enumerate(mats, 1):
        target = out / f"{mat.stem}.png"
        if not target.is_file():
            _convert(mat, root / "JPEGImages" / f"{mat.stem}.jpg", target)
            written += 1
        if progress:
            progress(done, len(mats))
    annotated = {m.stem for m in mats}
    counts = {"masks": len(mats), "written": written}
    for split in ("train", "val"):
        source = root / "ImageSets" / "Main" / f"{split}.txt"
        if not source.is_file():
            raise DataError(f"{source}: missing; it is part of the VOC 2010 release")
        ids = [i for i in read_split(source) if i in annotated]
        write_bytes(root / LISTS / f"{split}.txt", "".join(f"{i}\n" for i in ids).encode())
        counts[split] = len(ids)
    return counts
