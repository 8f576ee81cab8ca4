"""Class counts and median-frequency weights (`loss.class_weights: auto`): a hand case, masks
counted by hand, the run folder's class_counts.json and `gsag data check`'s weight column."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gsag.data.counts import count_classes, median_frequency_weights, read_counts, save_counts
from gsag.data.folder import FolderSegmentation
from gsag.data.io import ClassInfo, save_mask, write_classes_yaml

PALETTE = [(0, 0, 0), (200, 0, 0), (0, 200, 0)]


def test_median_frequency_weights_by_hand():
    # freq = pixels / labelled pixels of the images holding the class: 0.1, -, 0.5, 0.1
    weights = median_frequency_weights([10, 0, 30, 5], [100, 0, 60, 50])
    assert weights == pytest.approx([1.0, 0.0, 0.2, 1.0])  # median 0.1; absent class: 0


def folder(root, masks: list[np.ndarray]) -> FolderSegmentation:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    classes = ["a", "b", "c"]
    write_classes_yaml(root / "classes.yaml", ClassInfo(classes, PALETTE))
    for i, mask in enumerate(masks):
        h, w = mask.shape
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(root / "images" / f"{i}.png")
        save_mask(root / "masks" / f"{i}.png", mask.astype(np.uint8), PALETTE)
    return FolderSegmentation(root, "all")


def test_count_classes_of_a_split(tmp_path):
    one = np.zeros((4, 5), int)  # 20 pixels: 12 of a, 6 of b, 2 ignored
    one[:2, :3] = 1
    one[3, 3:] = 255
    two = np.full((4, 5), 2)  # 20 pixels: 19 of c, 1 of a
    two[0, 0] = 0
    counts = count_classes(folder(tmp_path / "data", [one, two]))
    assert counts.images == 2
    assert counts.pixels == [13, 6, 19]
    assert counts.image_pixels == [18 + 20, 18, 20]  # labelled pixels of the images holding it
    freq = np.array([13 / 38, 6 / 18, 19 / 20])
    assert counts.weights() == pytest.approx(list(np.median(freq) / freq))
    save_counts(counts, tmp_path / "class_counts.json", ["a", "b", "c"])
    record = json.loads((tmp_path / "class_counts.json").read_text())
    assert record["classes"] == ["a", "b", "c"] and record["weights"] == counts.weights()
    assert read_counts(tmp_path / "class_counts.json") == counts
    assert read_counts(tmp_path / "nothing.json") is None


def test_data_check_prints_the_weights(tmp_path, capsys):
    from gsag.cli import main

    one = np.zeros((4, 5), int)
    one[:2, :3] = 1
    folder(tmp_path / "data", [one, np.full((4, 5), 2)])
    assert main(["data", "check", str(tmp_path / "data"), "--quiet"]) == 0
    out = capsys.readouterr().out
    freq = np.array([14 / 20, 6 / 20, 20 / 20])  # every class: in one image of 20 pixels
    weights = np.median(freq) / freq
    rows = [line for line in out.splitlines() if line.startswith("│") and "│ a " in line]
    assert rows and f"{weights[0]:.3f}" in rows[0], out
    assert "weight: loss.class_weights auto (median frequency)" in " ".join(out.split())
