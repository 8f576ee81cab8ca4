"""Confusion-matrix metrics: a hand-computed example and torchmetrics as a reference."""

from __future__ import annotations

import math

import pytest
import torch

from gsag.metrics import ConfusionMatrix

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread per test


def test_hand_computed_example():
    # 4 classes; class 3 appears in neither target nor prediction; 255 is ignored.
    target = torch.tensor([[0, 0, 0, 1], [1, 1, 2, 255]])
    pred = torch.tensor([[0, 0, 1, 1], [1, 2, 2, 3]])
    cm = ConfusionMatrix(4, ignore_index=255)
    cm.update(pred, target)
    m = cm.compute()
    # class 0: TP 2, FN 1, FP 0 -> IoU 2/3, Acc 2/3
    # class 1: TP 2, FN 1, FP 1 -> IoU 2/4, Acc 2/3
    # class 2: TP 1, FN 0, FP 1 -> IoU 1/2, Acc 1
    # class 3: absent (its only prediction sits on an ignored pixel) -> NaN, excluded
    assert m["IoU"][:3] == pytest.approx([2 / 3, 1 / 2, 1 / 2])
    assert math.isnan(m["IoU"][3]) and math.isnan(m["Acc"][3])
    assert m["mIoU"] == pytest.approx((2 / 3 + 1 / 2 + 1 / 2) / 3)
    assert m["Acc"][:3] == pytest.approx([2 / 3, 2 / 3, 1.0])
    assert m["mAcc"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert m["aAcc"] == pytest.approx(5 / 7)
    assert m["FWIoU"] == pytest.approx(3 / 7 * 2 / 3 + 3 / 7 * 1 / 2 + 1 / 7 * 1 / 2)
    assert m["pixels"] == 7


def test_class_only_predicted_counts_with_zero_iou():
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(torch.tensor([0, 2]), torch.tensor([0, 0]))
    m = cm.compute()
    assert m["IoU"][2] == 0.0  # predicted but never true: a real mistake, it counts
    assert math.isnan(m["IoU"][1])  # absent from both: left out
    assert m["mIoU"] == pytest.approx((0.5 + 0.0) / 2)


def test_matches_torchmetrics_on_random_batches():
    tm = pytest.importorskip("torchmetrics.classification")
    g = torch.Generator().manual_seed(0)
    n = 6
    cm = ConfusionMatrix(n, ignore_index=255)
    jaccard = tm.MulticlassJaccardIndex(n, average=None, ignore_index=255)
    accuracy = tm.MulticlassAccuracy(n, average="micro", ignore_index=255)
    recall = tm.MulticlassRecall(n, average=None, ignore_index=255)
    for _ in range(3):
        logits = torch.randn(2, n, 9, 11, generator=g)
        target = torch.randint(0, n, (2, 9, 11), generator=g)
        target[torch.rand(2, 9, 11, generator=g) < 0.2] = 255
        cm.update(logits, target)  # logits: argmax over the class axis
        pred = logits.argmax(1)
        jaccard.update(pred, target)
        accuracy.update(pred, target)
        recall.update(pred, target)
    m = cm.compute()
    torch.testing.assert_close(
        torch.tensor(m["IoU"], dtype=torch.float64), jaccard.compute().double(), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        torch.tensor(m["Acc"], dtype=torch.float64), recall.compute().double(), atol=1e-6, rtol=0
    )
    assert m["aAcc"] == pytest.approx(accuracy.compute().item())
    assert m["mIoU"] == pytest.approx(jaccard.compute().mean().item())


def test_bad_target_value_is_named():
    cm = ConfusionMatrix(3, ignore_index=255)
    with pytest.raises(ValueError, match="class id 7"):
        cm.update(torch.tensor([0, 1]), torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(2, 3), torch.zeros(3, 2))


def test_reset_and_accumulation():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 0]))
    cm.update(torch.tensor([1]), torch.tensor([1]))
    assert cm.mat.tolist() == [[1, 1], [0, 1]]
    cm.reset()
    assert cm.mat.sum() == 0 and math.isnan(cm.compute()["mIoU"])
