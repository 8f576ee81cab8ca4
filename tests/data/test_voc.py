"""VOC and folder datasets, layout detection, class descriptions and mask writing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gsag.data import (
    VOC_CLASSES,
    VOC_PALETTE,
    DataError,
    FolderSegmentation,
    VOCSegmentation,
    colorize,
    open_dataset,
    read_classes_yaml,
    read_mask,
    rgb_to_index,
    save_mask,
    voc_colormap,
)
from gsag.data.synth import SYNTH_CLASSES


def test_voc_palette_matches_the_published_colours():
    # from the VOC devkit's VOClabelcolormap: aeroplane, person, tvmonitor, the ignore border
    assert VOC_PALETTE[1] == (128, 0, 0)
    assert VOC_PALETTE[15] == (192, 128, 128)
    assert VOC_PALETTE[20] == (0, 64, 128)
    assert voc_colormap()[255] == (224, 224, 192)
    assert len(VOC_CLASSES) == len(VOC_PALETTE) == 21 and VOC_CLASSES[15] == "person"


def test_voc_dataset_reads_pairs(synth_root):
    dataset = VOCSegmentation(synth_root, "train")
    assert len(dataset) == 8 and dataset.ids[0] == "train_00000"
    assert dataset.classes == SYNTH_CLASSES and dataset.num_classes == len(SYNTH_CLASSES)
    assert dataset.ignore_index == 255
    image, mask = dataset[2]
    assert image.dtype == torch.uint8 and image.shape == (3, 64, 64)
    assert mask.dtype == torch.int64 and mask.shape == (64, 64)
    expected = np.asarray(Image.open(synth_root / "SegmentationClass" / "train_00002.png"))
    assert np.array_equal(mask.numpy(), expected)
    pixels = np.asarray(Image.open(synth_root / "JPEGImages" / "train_00002.jpg"))
    assert np.array_equal(image.permute(1, 2, 0).numpy(), pixels)


def test_voc_defaults_and_nested_roots(tmp_path, synth_root):
    tree = tmp_path / "VOCdevkit" / "VOC2012"
    shutil.copytree(synth_root, tree)
    (tree / "classes.yaml").unlink()
    dataset = VOCSegmentation(tmp_path, "val")  # found under VOCdevkit/VOC2012
    assert dataset.root == tree and dataset.classes == VOC_CLASSES
    assert dataset.palette == VOC_PALETTE and len(dataset) == 4
    available = r"available: test, train, trainval, val"  # the generated tree's lists
    with pytest.raises(DataError, match=rf"train_aug.*{available}.*prepare-voc"):
        VOCSegmentation(tree, "train_aug")
    with pytest.raises(DataError, match="not a VOC tree"):
        VOCSegmentation(tmp_path / "nowhere", "train")


def test_open_dataset_detects_layouts(tmp_path, synth_root):
    assert isinstance(open_dataset(synth_root, "val"), VOCSegmentation)
    folder = tmp_path / "mine"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    (folder / "classes.yaml").write_text("classes: [background, thing]\n")
    Image.new("RGB", (10, 8)).save(folder / "images" / "x.png")
    Image.fromarray(np.eye(8, 10, dtype=np.uint8)).save(folder / "masks" / "x.png")  # mode L
    dataset = open_dataset(folder, "all")
    assert isinstance(dataset, FolderSegmentation)
    _, mask = dataset[0]
    assert torch.equal(mask, torch.eye(8, 10, dtype=torch.int64))
    assert dataset.palette[:2] == VOC_PALETTE[:2]  # palette defaults to the VOC colours
    with pytest.raises(DataError, match=r"no split 'train'.*available: all"):
        open_dataset(folder, "train")
    with pytest.raises(DataError, match="not a dataset gsag can read"):
        open_dataset(tmp_path, "train")


def test_folder_split_lists_and_subfolders(tmp_path):
    root = tmp_path / "d"
    for sub in ("images/train", "masks/train", "images/val", "masks/val"):
        (root / sub).mkdir(parents=True)
    (root / "classes.yaml").write_text(
        "classes: [bg, a, b]\npalette: [[0, 0, 0], [10, 20, 30]]\nignore_index: 255\n"
    )
    for split, n in (("train", 3), ("val", 2)):
        for i in range(n):
            Image.new("RGB", (6, 5), (i, i, i)).save(root / "images" / split / f"{i}.jpg")
            save_mask(root / "masks" / split / f"{i}.png", np.full((5, 6), i), [(0, 0, 0)])
    train, val = FolderSegmentation(root, "train"), FolderSegmentation(root, "val")
    assert (len(train), len(val)) == (3, 2)
    assert train.palette == [(0, 0, 0), (10, 20, 30), VOC_PALETTE[2]]
    assert int(train[2][1][0, 0]) == 2

    flat = tmp_path / "flat"
    (flat / "images").mkdir(parents=True)
    (flat / "splits").mkdir()
    shutil.copy(root / "classes.yaml", flat)
    for i in range(3):
        Image.new("RGB", (6, 5)).save(flat / "images" / f"im{i}.png")
    (flat / "splits" / "val.txt").write_text("im2\nim0\n")
    assert FolderSegmentation(flat, "val").ids == ["im2", "im0"]
    (flat / "splits" / "bad.txt").write_text("im9\n")
    with pytest.raises(DataError, match=r"ids without an image.*im9"):
        FolderSegmentation(flat, "bad")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[a, b]", "expected a mapping"),
        ("classes: [a, b]\nignore_index: 1\n", "also a class index"),
        ("classes: [a]\npalette: [[1, 2]]\n", "palette entry 0"),
    ],
)
def test_bad_classes_yaml_is_explained(tmp_path, text, problem):
    path = tmp_path / "classes.yaml"
    path.write_text(text)
    with pytest.raises(DataError, match=problem):
        read_classes_yaml(path)


def test_colorize_and_save_mask_round_trip(tmp_path):
    mask = torch.tensor([[0, 1, 2], [15, 255, 20]])
    image = colorize(mask, VOC_PALETTE)
    assert image.mode == "P"
    rgb = np.asarray(image.convert("RGB"))
    assert tuple(rgb[1, 0]) == VOC_PALETTE[15] and tuple(rgb[1, 1]) == (224, 224, 192)
    path = tmp_path / "out" / "m.png"
    save_mask(path, mask, VOC_PALETTE)
    assert np.array_equal(read_mask(path), mask.numpy())
    assert [p.name for p in path.parent.iterdir()] == ["m.png"]  # no temp file left
    assert np.array_equal(rgb_to_index(rgb, VOC_PALETTE), np.where(mask == 255, 255, mask))
    with pytest.raises(ValueError, match=r"0\.\.255"):
        colorize(torch.tensor([[300]]), VOC_PALETTE)


def test_iteration_stops_at_the_end(synth_root):
    ds = VOCSegmentation(synth_root, "val")
    assert len(list(iter(ds))) == len(ds)
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert torch.equal(ds[-1][1], ds[len(ds) - 1][1])


@pytest.mark.parametrize(
    "line", ["../JPEGImages/train_00000", "/etc/passwd", "a/../../outside", "..\\windows"]
)
def test_split_ids_cannot_leave_the_dataset(tmp_path, synth_root, line):
    root = shutil.copytree(synth_root, tmp_path / "voc")
    lists = root / "ImageSets" / "Segmentation"
    (lists / "evil.txt").write_text(f"train_00000\n{line}\n")
    with pytest.raises(DataError, match=r"evil.txt: id .* \(line 2\) points outside the dataset"):
        VOCSegmentation(root, "evil")
    (lists / "latin.txt").write_bytes("train_00000 Größe\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.txt: not UTF-8 text"):
        VOCSegmentation(root, "latin")


@pytest.mark.parametrize("layout", ["voc", "folder"])
def test_an_image_listed_twice_in_a_split_is_refused_naming_the_lines(tmp_path, synth_root, layout):
    """Listed three times, an image was scored three times (a different mIoU, no warning)."""
    root = Path(shutil.copytree(synth_root, tmp_path / "voc"))
    lists = root / "ImageSets" / "Segmentation"
    if layout == "folder":  # the same files as images/ + masks/ + splits/
        (root / "JPEGImages").rename(root / "images")
        (root / "SegmentationClass").rename(root / "masks")
        lists = root / "splits"
        lists.mkdir()
    (lists / "dup.txt").write_text("val_00000\nval_00001\n\nval_00000\nval_00001\nval_00000\n")
    reader = VOCSegmentation if layout == "voc" else FolderSegmentation
    with pytest.raises(DataError, match=r"dup.txt: id 'val_00000' is listed 3 times \(lines 1, 4, "
                       r"6\), and 1 more ids repeat; list each image once"):  # fmt: skip
        reader(root, "dup")
    (lists / "dup.txt").write_text("val_00000\nval_00001\n")
    assert reader(root, "dup").ids == ["val_00000", "val_00001"]
