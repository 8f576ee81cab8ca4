"""Cityscapes: labelIds -> trainIds, the reader, check, train and labelId predictions."""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from gsag.data import BadSampleError, DataError, open_dataset, read_mask
from gsag.data.cityscapes import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    CityscapesSegmentation,
    write_train_ids,
)
from tests.helpers.configs import tiny_config
from tests.helpers.datasets import CITYSCAPES_TRAIN_ID, make_cityscapes

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread per test


def naive_train_ids(label_ids: np.ndarray) -> np.ndarray:
    out = np.full(label_ids.shape, 255, dtype=np.int64)
    for (y, x), value in np.ndenumerate(label_ids):
        out[y, x] = CITYSCAPES_TRAIN_ID.get(int(value), 255)
    return out


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    root = make_cityscapes(tmp_path_factory.mktemp("cs") / "cityscapes")
    assert write_train_ids(root) == {"masks": 6, "written": 6}
    return root


def test_classes_and_colours():
    assert len(CITYSCAPES_CLASSES) == len(CITYSCAPES_PALETTE) == 19
    assert CITYSCAPES_CLASSES[0] == "road" and CITYSCAPES_PALETTE[0] == (128, 64, 128)
    assert CITYSCAPES_CLASSES[13] == "car" and CITYSCAPES_PALETTE[13] == (0, 0, 142)


def test_reader_returns_train_ids_pixel_for_pixel(cityscapes):
    dataset = open_dataset(cityscapes, "val")
    assert isinstance(dataset, CityscapesSegmentation) and len(dataset) == 3
    assert dataset.ids[0] == "frankfurt/frankfurt_000000_000019"
    assert dataset.num_classes == 19 and dataset.ignore_index == 255
    for i in range(len(dataset)):
        image, mask = dataset[i]
        label_path = dataset.mask_path(i).with_name(
            dataset.mask_path(i).name.replace("labelTrainIds", "labelIds")
        )
        label_ids = np.asarray(Image.open(label_path))
        assert image.shape == (3, 32, 64)
        assert np.array_equal(mask.numpy(), naive_train_ids(label_ids))
    assert {0, 18, 255} <= set(np.unique(mask.numpy()).tolist())  # ids 7, 33 and e.g. 0


def test_prepare_resumes_and_reads_the_zips(cityscapes, tmp_path):
    assert write_train_ids(cityscapes)["written"] == 0  # already there: kept
    from gsag.cli import main

    zips = {}
    for top in ("leftImg8bit", "gtFine"):
        zips[top] = tmp_path / f"{top}_trainvaltest.zip"
        with zipfile.ZipFile(zips[top], "w") as archive:
            pattern = "*labelIds.png" if top == "gtFine" else "*.png"
            for path in sorted((cityscapes / top).rglob(pattern)):
                archive.write(path, path.relative_to(cityscapes).as_posix())
            archive.writestr("README", "official archives hold a README too")
    root = tmp_path / "unpacked"
    argv = ["data", "prepare-cityscapes", "--out", str(root)]
    argv += ["--leftimg", str(zips["leftImg8bit"]), "--gtfine", str(zips["gtFine"])]
    assert main(argv) == 0
    first = CityscapesSegmentation(root, "train")
    ref = CityscapesSegmentation(cityscapes, "train")
    assert first.ids == ref.ids
    assert np.array_equal(first[1][1].numpy(), ref[1][1].numpy())


def test_malformed_trees_name_the_file(tmp_path):
    root = make_cityscapes(tmp_path / "cs", per_split=1)
    with pytest.raises(DataError, match="prepare-cityscapes"):
        CityscapesSegmentation(root, "train")  # trainIds not written yet
    bad = next((root / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    Image.fromarray(np.full((32, 64), 40, np.uint8)).save(bad)
    with pytest.raises(BadSampleError, match=re.escape(bad.name)) as info:
        write_train_ids(root)
    assert "outside 0..33" in str(info.value)
    with pytest.raises(DataError, match="no such split"):
        CityscapesSegmentation(root, "test")


def test_check_and_train_end_to_end(cityscapes, tmp_path, capsys):
    from gsag.cli import main
    from gsag.engine.train import train
    from gsag.trained.predict import Predictor, predict_files

    assert main(["data", "check", str(cityscapes)]) == 0
    out = capsys.readouterr().out
    assert "cityscapes layout" in out and "19 classes" in out and "6 pairs" in out
    cfg = tiny_config(
        cityscapes,
        tmp_path / "run",
        "data.layout=cityscapes",
        "data.crop_size=[16, 32]",
        "data.base_size=[64, 32]",
        "eval.mode=slide",
        "eval.crop_size=[16, 32]",
        "eval.stride=[8, 16]",
    )
    result = train(cfg, quiet=True)
    assert result["iteration"] == 4 and 0.0 <= result["best_miou"] <= 1.0
    predictor = Predictor(tmp_path / "run" / "best.pt", mode="slide")
    image = CityscapesSegmentation(cityscapes, "val").image_path(0)
    written = predict_files(predictor, [image], tmp_path / "pred", overlays=False)
    saved = np.asarray(Image.open(written[0].mask))
    trained_ids = predictor.predict(image)
    expected = np.array(sorted(CITYSCAPES_TRAIN_ID, key=CITYSCAPES_TRAIN_ID.get))[trained_ids]
    assert Image.open(written[0].mask).mode == "L"
    assert np.array_equal(saved, expected)  # trainId -> labelId, as the official scripts expect
    assert read_mask(written[0].mask).max() <= 33
