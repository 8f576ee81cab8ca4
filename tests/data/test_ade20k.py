"""ADE20K: reduce-zero-label reading, the prepare step (zip, sha1), check and train."""

from __future__ import annotations

import hashlib
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from gsag.data import BadSampleError, DataError, open_dataset
from gsag.data.ade20k import ADE20K_CLASSES, ADE20K_PALETTE, ADE20KSegmentation
from gsag.data.download import Archive, download
from tests.helpers.configs import tiny_config
from tests.helpers.datasets import make_ade20k

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread per test


@pytest.fixture(scope="module")
def ade(tmp_path_factory):
    return make_ade20k(tmp_path_factory.mktemp("ade"))


def test_classes():
    assert len(ADE20K_CLASSES) == len(set(ADE20K_PALETTE)) == 150
    assert ADE20K_CLASSES[:3] == ["wall", "building", "sky"] and ADE20K_CLASSES[-1] == "flag"


def test_reader_reduces_the_zero_label_pixel_for_pixel(ade):
    dataset = open_dataset(ade.parent, "validation")
    assert isinstance(dataset, ADE20KSegmentation) and dataset.ids[0] == "ADE_val_00000001"
    assert len(ADE20KSegmentation(ade, "train")) == 3  # short split names work too
    for i in range(len(dataset)):
        stored = np.asarray(Image.open(dataset.mask_path(i))).astype(np.int64)
        expected = np.where(stored == 0, 255, stored - 1)  # 0 = other -> ignore, k -> k - 1
        assert np.array_equal(dataset[i][1].numpy(), expected)
        assert dataset[i][0].shape == (3, 48, 64)


def test_malformed_annotation_is_named(tmp_path):
    root = make_ade20k(tmp_path, per_split=1)
    bad = root / "annotations" / "training" / "ADE_train_00000001.png"
    Image.fromarray(np.full((48, 64), 151, np.uint8)).save(bad)
    with pytest.raises(BadSampleError, match=re.escape(bad.name)) as info:
        ADE20KSegmentation(root, "training")[0]
    assert "outside 0..150" in str(info.value)
    (root / "annotations" / "validation" / "ADE_val_00000001.png").unlink()
    with pytest.raises(BadSampleError, match=r"ADE_val_00000001\.png"):
        ADE20KSegmentation(root, "validation")[0]
    with pytest.raises(DataError, match="not an ADE20K tree"):
        ADE20KSegmentation(tmp_path / "nowhere", "training")


def test_prepare_unpacks_a_sha1_checked_zip(ade, tmp_path, capsys):
    from gsag.cli import main

    archive = tmp_path / "ADEChallengeData2016.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(ade.rglob("*.*")):
            z.write(path, path.relative_to(ade.parent).as_posix())
    sha1 = hashlib.sha1(archive.read_bytes()).hexdigest()
    mirror = Archive(archive.name, (archive.as_uri(),), "", "ADEChallengeData2016", sha1=sha1)
    fetched = download(mirror, tmp_path / "dl")  # file:// URL: no network
    assert fetched.read_bytes() == archive.read_bytes()
    out = tmp_path / "data"
    assert main(["data", "prepare-ade20k", "--data-dir", str(out), "--zip", str(fetched)]) == 0
    assert "training 3, validation 3" in capsys.readouterr().out
    a, b = ADE20KSegmentation(out, "training"), ADE20KSegmentation(ade, "training")
    assert np.array_equal(a[2][1].numpy(), b[2][1].numpy())


def test_check_and_train_end_to_end(ade, tmp_path, capsys):
    from gsag.cli import main
    from gsag.engine.train import train

    assert main(["data", "check", str(ade)]) == 0
    out = capsys.readouterr().out
    assert "ade20k layout" in out and "150 classes" in out and "6 pairs" in out
    cfg = tiny_config(
        ade,
        tmp_path / "run",
        "data.layout=ade20k",
        "data.train_split=training",
        "data.val_split=validation",
        "data.base_size=[128, 32]",
        "data.eval_scale=[128, 32]",  # whole-image evaluation with the short side 32
    )
    result = train(cfg, quiet=True)
    assert result["iteration"] == 4 and 0.0 <= result["best_miou"] <= 1.0
