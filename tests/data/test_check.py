"""Bad input: each case is named with its file by the dataset, by `skip_bad` and by the checker."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gsag.data import (
    VOC_CLASSES,
    VOC_PALETTE,
    BadSampleError,
    ClassInfo,
    FolderSegmentation,
    save_mask,
    write_classes_yaml,
)
from gsag.data.check import check_dataset


def _good_pair(root: Path, name: str, size=(24, 16), label: int = 3) -> None:
    """Write images/<name>.jpg and masks/<name>.png (a block of `label` with a 255 border)."""
    w, h = size
    rng = np.random.default_rng(len(name))
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
        root / "images" / f"{name}.jpg"
    )
    mask = np.zeros((h, w), np.uint8)
    mask[4:10, 4:12] = label
    mask[3, 3:13] = 255
    save_mask(root / "masks" / f"{name}.png", mask, VOC_PALETTE)


def _voc21_folder(root: Path, names=("a", "b")) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    write_classes_yaml(root / "classes.yaml", ClassInfo(list(VOC_CLASSES), list(VOC_PALETTE)))
    for name in names:
        _good_pair(root, name)
    return root


def _break(root: Path, case: str) -> Path:
    """Damage pair `b` in one way; return the file that should be named."""
    image, mask = root / "images" / "b.jpg", root / "masks" / "b.png"
    if case == "truncated":
        data = image.read_bytes()
        image.write_bytes(data[: len(data) // 2])
        return image
    if case == "wrong_size":
        save_mask(mask, np.zeros((16, 20), np.uint8), VOC_PALETTE)
        return mask
    if case == "label_42":
        m = np.zeros((16, 24), np.uint8)
        m[2:5, 2:5] = 42
        save_mask(mask, m, VOC_PALETTE)
        return mask
    if case == "missing_mask":
        mask.unlink()
        return mask
    if case == "rgb_mask":
        Image.new("RGB", (24, 16), (128, 0, 0)).save(mask)
        return mask
    raise ValueError(case)


CASES = {
    "truncated": "truncated",
    "wrong_size": "20x16",
    "label_42": "42",
    "missing_mask": "missing",
    "rgb_mask": "index masks are expected",
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_sample_raises_naming_file_and_problem(tmp_path, case):
    root = _voc21_folder(tmp_path / "d")
    culprit = _break(root, case)
    dataset = FolderSegmentation(root, "all")
    dataset[0]  # "a" is fine
    with pytest.raises(BadSampleError) as info:
        dataset[1]
    assert info.value.path == culprit
    assert CASES[case] in str(info.value) and culprit.name in str(info.value)


@pytest.mark.parametrize("case", list(CASES))
def test_checker_reports_each_case(tmp_path, case):
    root = _voc21_folder(tmp_path / "d", names=("a", "b", "c"))
    culprit = _break(root, case)
    report = check_dataset(root)
    assert report.pairs == 3 and not report.ok
    assert [e.path for e in report.errors] == [culprit]
    assert CASES[case] in report.errors[0].message


def test_skip_bad_skips_and_counts(tmp_path):
    root = _voc21_folder(tmp_path / "d", names=("a", "b", "c"))
    _break(root, "label_42")
    dataset = FolderSegmentation(root, "all", skip_bad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, mask_b = dataset[1]
        dataset[1]
    _, mask_c = FolderSegmentation(root, "all")[2]
    assert np.array_equal(mask_b.numpy(), mask_c.numpy())  # "b" replaced by the next good one
    assert list(dataset.skipped) == ["b"] and "42" in dataset.skipped["b"]
    assert sum("skipping bad sample" in str(w.message) for w in caught) == 1


def test_histogram_counts_pixels_per_class(tmp_path):
    root = _voc21_folder(tmp_path / "d", names=("a", "b"))
    report = check_dataset(root)
    assert report.ok
    expected = np.zeros(21, np.int64)
    for name in ("a", "b"):
        m = np.asarray(Image.open(root / "masks" / f"{name}.png"))
        expected += np.bincount(m[m != 255], minlength=21)[:21]
    assert np.array_equal(report.class_pixels, expected)
    assert report.ignore_pixels == 2 * 10


@pytest.mark.parametrize(
    ("mode", "note"),
    [("L", "grayscale"), ("CMYK", "CMYK"), ("RGBA", "RGBA"), ("I;16", "16-bit")],
)
def test_odd_image_modes_are_converted_and_counted(tmp_path, mode, note):
    root = _voc21_folder(tmp_path / "d", names=("a", "b"))
    path = root / "images" / "b.png"
    (root / "images" / "b.jpg").unlink()
    if mode == "I;16":
        Image.fromarray(np.full((16, 24), 40000, np.uint16)).save(path)
    else:
        Image.new("RGB", (24, 16), (10, 200, 30)).convert(mode).save(
            path.with_suffix(".tif") if mode == "CMYK" else path
        )
        if mode == "CMYK":
            path = path.with_suffix(".tif")
    report = check_dataset(root)
    assert report.ok
    assert report.conversions == {f"converted {note} image to RGB": 1}
    assert [w.path for w in report.warnings] == [path]
    image, _ = FolderSegmentation(root, "all")[1]
    assert image.shape == (3, 16, 24)
    if mode == "I;16":  # 40000 / 65535 of full scale
        assert int(image[0, 0, 0]) == round(40000 / 65535 * 255)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    root = _voc21_folder(tmp_path / "d", names=("a",))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 24x16 = 384 > 2 * 100
    report = check_dataset(root)
    assert {e.path.name for e in report.errors} == {"a.jpg", "a.png"}
    assert all("decompression bomb" in e.message for e in report.errors)
    with pytest.raises(BadSampleError, match="decompression bomb"):
        FolderSegmentation(root, "all")[0]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 300 < 384 < 600: a warning only
    report = check_dataset(root)
    assert report.ok and "very large image" in report.warnings[0].message
