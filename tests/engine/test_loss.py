"""The loss a config describes (`gsag.engine.loss`): the class weights reach every term, `auto`
counts the training split by hand's formula once, and a resumed run reads class_counts.json
back instead of counting again."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gsag.config import ConfigError
from gsag.data.counts import COUNTS_FILE
from gsag.data.layout import open_dataset
from gsag.engine.distributed import DistInfo
from gsag.engine.loss import config_loss
from tests.helpers.configs import tiny_config


def hand_weights(train_set) -> np.ndarray:
    """Median-frequency weights counted with numpy: pixels of c over the labelled pixels of
    the images holding c, the median of those over each one."""
    pixels = np.zeros(train_set.num_classes)
    image_pixels = np.zeros(train_set.num_classes)
    for i in range(len(train_set)):
        mask = np.asarray(train_set.load(i)[1])
        labelled = mask[mask != train_set.ignore_index]
        found = np.bincount(labelled, minlength=train_set.num_classes)
        pixels += found
        image_pixels += (found > 0) * labelled.size
    present = pixels > 0
    freq = pixels[present] / image_pixels[present]
    weights = np.zeros(train_set.num_classes)
    weights[present] = np.median(freq) / freq
    return weights


def test_auto_weights_reach_every_term_and_a_resume_reads_them_back(synth_root, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(synth_root, run, "loss.type=ce+focal+dice", "loss.class_weights=auto")
    train_set = open_dataset(synth_root, "train")
    loss = config_loss(cfg, train_set, DistInfo(), show=False)
    expected = hand_weights(train_set)
    for term in loss.terms:
        np.testing.assert_allclose(term.class_weights.numpy(), expected, rtol=1e-6)
    record = json.loads((run / COUNTS_FILE).read_text())
    assert record["split"] == "train" and record["weights"] == pytest.approx(list(expected))
    record["pixels"][1] *= 4  # a changed count shows whether the file is read or recounted
    (run / COUNTS_FILE).write_text(json.dumps(record))
    again = config_loss(cfg, train_set, DistInfo(), show=False)
    freq = np.array(record["pixels"]) / np.array(record["image_pixels"])
    np.testing.assert_allclose(
        again.terms[0].class_weights.numpy(), np.median(freq) / freq, rtol=1e-6
    )


def test_given_weights_are_used_and_all_zero_is_refused(synth_root, tmp_path):
    train_set = open_dataset(synth_root, "train")
    given = [float(i + 1) for i in range(train_set.num_classes)]
    cfg = tiny_config(synth_root, tmp_path / "run", f"loss.class_weights={given}")
    (term,) = config_loss(cfg, train_set, DistInfo(), show=False).terms
    assert term.class_weights.tolist() == given
    zero = tiny_config(
        synth_root, tmp_path / "run", f"loss.class_weights={[0] * train_set.num_classes}"
    )
    with pytest.raises(ConfigError, match="every class of split 'train' weight 0"):
        config_loss(zero, train_set, DistInfo(), show=False)
