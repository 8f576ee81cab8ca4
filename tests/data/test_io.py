"""Reading images as displayed: EXIF orientation, transparency, and the mask alignment rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gsag.data import ClassInfo, FolderSegmentation, write_classes_yaml
from gsag.data.check import check_dataset
from gsag.data.errors import BadSampleError
from gsag.data.io import BACKGROUND_RGB, orient_mask, read_image, save_mask

PALETTE = [(0, 0, 0), (128, 0, 0)]


def _with_orientation(path: Path, rgb: np.ndarray, orientation: int) -> None:
    """Save a lossless PNG whose EXIF says how to turn it upright."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, exif=exif)


def _stored(h: int = 6, w: int = 10) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("orientation", "upright"),
    [
        (1, lambda a: a),
        (3, lambda a: a[::-1, ::-1]),
        (6, lambda a: np.rot90(a, -1)),  # stored turned 90 degrees counter-clockwise
        (8, lambda a: np.rot90(a, 1)),
        (2, lambda a: a[:, ::-1]),
    ],
)
def test_exif_orientation_is_applied_on_read(tmp_path, orientation, upright):
    stored = _stored()
    _with_orientation(tmp_path / "a.png", stored, orientation)
    rgb, notes = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(rgb, upright(stored))
    assert any("EXIF orientation" in n for n in notes) == (orientation != 1)


def test_transparent_pixels_become_the_documented_background(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., :3] = (200, 10, 30)
    rgba[:2, :, 3] = 255  # top half opaque, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    rgb, _ = read_image(tmp_path / "rgba.png")
    assert (rgb[:2] == (200, 10, 30)).all() and (rgb[2:] == BACKGROUND_RGB).all()
    la = Image.fromarray(np.dstack([np.full((3, 3), 90, np.uint8), np.zeros((3, 3), np.uint8)]))
    la.convert("LA").save(tmp_path / "la.png")
    assert (read_image(tmp_path / "la.png")[0] == BACKGROUND_RGB).all()
    p = Image.new("P", (3, 3), 1)
    p.putpalette([0, 0, 0, 250, 250, 250] + [0] * 762)
    p.save(tmp_path / "p.png", transparency=1)
    assert (read_image(tmp_path / "p.png")[0] == BACKGROUND_RGB).all()


def test_mask_follows_a_turned_image_only_when_drawn_on_the_stored_pixels():
    stored = np.arange(6 * 10).reshape(6, 10) % 2  # (H, W) of the stored image
    upright_shape = (10, 6, 3)
    np.testing.assert_array_equal(orient_mask(stored, 6, upright_shape), np.rot90(stored, -1))
    drawn_upright = np.rot90(stored, -1)
    assert orient_mask(drawn_upright, 6, upright_shape) is drawn_upright
    assert orient_mask(stored, 3, (6, 10, 3)) is stored  # 180 degrees: taken as displayed
    assert orient_mask(stored, 1, (10, 6, 3)) is stored


def test_dataset_and_check_line_a_stored_size_mask_up_with_a_turned_photo(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    write_classes_yaml(root / "classes.yaml", ClassInfo(["bg", "thing"], PALETTE))
    stored = _stored(6, 10)
    _with_orientation(root / "images" / "a.png", stored, 6)
    mask = np.zeros((6, 10), np.uint8)
    mask[0, :3] = 1  # top-left of the stored image -> top-right once turned clockwise
    save_mask(root / "masks" / "a.png", mask, PALETTE)
    image, label = FolderSegmentation(root, "all")[0]
    assert tuple(image.shape) == (3, 10, 6)
    np.testing.assert_array_equal(label.numpy(), np.rot90(mask, -1))
    assert check_dataset(root).ok


def test_text_file_named_jpg_is_a_bad_sample_naming_the_file(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_text("not an image")
    with pytest.raises(BadSampleError, match=r"photo\.jpg"):
        read_image(path)


def test_predictor_inputs_follow_the_same_rules(tmp_path):
    from gsag.trained.predict import to_rgb_array

    stored = _stored()
    _with_orientation(tmp_path / "a.png", stored, 6)
    with Image.open(tmp_path / "a.png") as pil:
        np.testing.assert_array_equal(to_rgb_array(pil), np.rot90(stored, -1))
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, :, :] = (9, 8, 7, 255)
    out = to_rgb_array(rgba)
    assert (out[0] == (9, 8, 7)).all() and (out[1] == BACKGROUND_RGB).all()
    np.testing.assert_array_equal(to_rgb_array(rgba.astype(np.float32) / 255), out)


def test_a_class_named_twice_in_classes_yaml_is_refused(tmp_path):
    """Named twice, two classes collapsed into one entry of the name-keyed IoU table."""
    from gsag.data.errors import DataError
    from gsag.data.io import read_classes_yaml

    path = tmp_path / "classes.yaml"
    path.write_text("classes: [background, cat, dog, cat, car]\n")
    with pytest.raises(DataError, match=r"class 'cat' is named 2 times \(indices 1, 3\); every "
                       r"class needs its own name, e.g. cat_3"):  # fmt: skip
        read_classes_yaml(path)
    path.write_text("classes: [background, cat, dog, cat_3, car]\n")
    assert read_classes_yaml(path).classes[3] == "cat_3"
