"""PASCAL-Context: .mat conversion to 60-class PNGs, the 59/60 readers, check and train."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.io

from gsag.data import BadSampleError, DataError, open_dataset
from gsag.data.context_prepare import prepare_context
from gsag.data.pascal_context import (
    CONTEXT59_CLASSES,
    CONTEXT60_CLASSES,
    PascalContextSegmentation,
)
from tests.helpers.configs import tiny_config
from tests.helpers.context_labels import CONTEXT59_LABELS_TXT, PUBLISHED_ID_ORDER
from tests.helpers.datasets import CONTEXT_FULL_ID, make_context_release

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread per test


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_context_release(tmp_path_factory.mktemp("ctx"))


@pytest.fixture(scope="module")
def context(release, tmp_path_factory):
    from gsag.cli import main

    voc, archive, labels = release
    argv = ["data", "prepare-context", "--voc2010", str(voc), "--annotations", str(archive)]
    assert main([*argv, "--labels", str(labels)]) == 0
    return voc / "VOC2010"


def naive_context(label_map: np.ndarray, classes: list[str], background: int) -> np.ndarray:
    """Class index of each pixel by name lookup; ids outside the table -> `background`."""
    name_of = {v: k for k, v in CONTEXT_FULL_ID.items()}
    out = np.empty(label_map.shape, dtype=np.int64)
    for (y, x), value in np.ndenumerate(label_map):
        name = name_of.get(int(value))
        out[y, x] = classes.index(name) if name else background
    return out


def test_class_lists():
    assert len(CONTEXT59_CLASSES) == 59 and len(set(CONTEXT59_CLASSES)) == 59
    assert CONTEXT60_CLASSES[0] == "background" and CONTEXT60_CLASSES[1:] == CONTEXT59_CLASSES
    assert CONTEXT59_CLASSES[0] == "aeroplane" and CONTEXT59_CLASSES[-1] == "wood"


def test_both_variants_pixel_for_pixel(context, release):
    mats = release[1].parent / "trainval"  # unpacked beside the archive by prepare
    ds59 = open_dataset(context, "train")  # auto-detected as the 59-class variant
    ds60 = open_dataset(context, "train", layout="context60")
    assert (ds59.num_classes, ds60.num_classes) == (59, 60)
    assert ds59.ids == ds60.ids == ["2008_000002", "2008_000003", "2008_000007"]
    for i, name in enumerate(ds59.ids):
        label_map = scipy.io.loadmat(mats / f"{name}.mat")["LabelMap"]
        assert np.array_equal(ds59[i][1].numpy(), naive_context(label_map, CONTEXT59_CLASSES, 255))
        assert np.array_equal(ds60[i][1].numpy(), naive_context(label_map, CONTEXT60_CLASSES, 0))
    # the VOC val list names 2008_000010, which has no annotation: it is left out
    assert PascalContextSegmentation(context, "val").ids == ["2008_000009"]


def test_bad_annotations_are_named(tmp_path):
    voc, archive, labels = make_context_release(tmp_path)
    bad_labels = tmp_path / "labels.txt"
    bad_labels.write_text(labels.read_text().replace("284: person", "284: people"))
    with pytest.raises(DataError, match=r"labels\.txt disagrees"):
        prepare_context(voc, archive, bad_labels)
    assert prepare_context(voc, archive, labels) == {"masks": 4, "written": 4, "train": 3, "val": 1}
    for png in (voc / "VOC2010" / "SegmentationClassContext").glob("*.png"):
        png.unlink()  # convert again from the tampered annotations below
    mat = archive.parent / "trainval" / "2008_000003.mat"
    scipy.io.savemat(mat, {"LabelMap": np.full((40, 56), 460, np.uint16)})
    with pytest.raises(BadSampleError, match=re.escape(mat.name)) as info:
        prepare_context(voc, archive.parent / "trainval")
    assert "0..459" in str(info.value)
    scipy.io.savemat(mat, {"LabelMap": np.zeros((41, 56), np.uint16)})
    with pytest.raises(BadSampleError, match="another image"):
        prepare_context(voc, archive.parent / "trainval")
    with pytest.raises(DataError, match="prepare-context"):
        PascalContextSegmentation(tmp_path / "nowhere")


def test_check_and_train_end_to_end(context, tmp_path, capsys):
    from gsag.cli import main
    from gsag.engine.train import train

    assert main(["data", "check", str(context), "--layout", "context60"]) == 0
    out = capsys.readouterr().out
    assert "context60 layout" in out and "60 classes" in out and "4 pairs" in out
    cfg = tiny_config(
        context,
        tmp_path / "run",
        "data.layout=context59",
        "eval.mode=slide",
        "eval.crop_size=32",
        "eval.stride=16",
    )
    result = train(cfg, quiet=True)
    assert result["iteration"] == 4 and 0.0 <= result["best_miou"] <= 1.0


def test_code_table_equals_the_pinned_labels_txt_copy():
    from gsag.data.pascal_context import CONTEXT_FULL_IDS

    assert sorted(CONTEXT59_LABELS_TXT.items()) == CONTEXT_FULL_IDS
    # the same 59 ids as the release's converter keeps (0 there is unlabelled)
    assert sorted(PUBLISHED_ID_ORDER) == [0, *CONTEXT59_LABELS_TXT]
    assert len(CONTEXT59_LABELS_TXT) == 59


@pytest.mark.parametrize("wrong", [(104, "cup", 103, "cup"), (105, "curtain", 105, "cup")])
def test_one_wrong_entry_in_the_code_table_is_refused(tmp_path, monkeypatch, wrong):
    import gsag.data.pascal_context as pc

    old_id, old_name, new_id, new_name = wrong
    table = [(new_id, new_name) if e == (old_id, old_name) else e for e in pc.CONTEXT_FULL_IDS]
    assert table != pc.CONTEXT_FULL_IDS
    monkeypatch.setattr(pc, "CONTEXT_FULL_IDS", table)
    voc, archive, labels = make_context_release(tmp_path)
    with pytest.raises(DataError, match=r"labels\.txt disagrees"):
        prepare_context(voc, archive, labels)
