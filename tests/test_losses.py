"""Losses against direct formulas: softmax cross-entropy and OHEM on random data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gsag.losses import (
    CrossEntropy,
    DiceLoss,
    FocalLoss,
    LovaszSoftmax,
    OhemCrossEntropy,
    build_loss,
    lovasz_softmax_probs,
)

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread per test

IGNORE = 255


def random_batch(seed: int, ignore_frac: float = 0.2, shape=(2, 5, 6, 7)):
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    logits = torch.randn(b, c, h, w, generator=g) * 3
    target = torch.randint(0, c, (b, h, w), generator=g)
    target[torch.rand(b, h, w, generator=g) < ignore_frac] = IGNORE
    return logits, target


def true_class_prob(logits: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per valid pixel: softmax probability of the true class, with numpy (float64)."""
    x = logits.double().numpy().transpose(0, 2, 3, 1).reshape(-1, logits.shape[1])  # (N, C)
    t = target.numpy().reshape(-1)
    valid = t != IGNORE
    e = np.exp(x - x.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    return p[valid, t[valid]], valid


def ohem_reference(logits, target, thresh, min_kept) -> float:
    p, _ = true_class_prob(logits, target)
    if p.size == 0:
        return 0.0
    k = min(min_kept, p.size)
    threshold = max(thresh, np.sort(p)[k - 1])
    kept = p[p <= threshold]
    return float(np.mean(-np.log(kept)))


def test_cross_entropy_matches_formula():
    logits, target = random_batch(0)
    p, _ = true_class_prob(logits, target)
    expected = float(np.mean(-np.log(p)))
    assert CrossEntropy(IGNORE)(logits, target).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss", [CrossEntropy(IGNORE), OhemCrossEntropy(0.7, 10, IGNORE)])
def test_all_ignored_batch_gives_zero_not_nan(loss):
    logits, target = random_batch(1)
    target[:] = IGNORE
    logits.requires_grad_(True)
    value = loss(logits, target)
    value.backward()
    assert value.item() == 0.0
    assert torch.all(logits.grad == 0)


@pytest.mark.parametrize(
    ("thresh", "min_kept", "seed"),
    [
        (0.7, 10, 2),  # plenty of hard pixels: the threshold is 0.7
        (0.05, 60, 3),  # few below 0.05: the 60th lowest probability sets the threshold
        (0.3, 10_000, 4),  # fewer valid pixels than min_kept: every valid pixel is kept
        (1.0, 1, 5),  # thresh 1 keeps everything: plain cross-entropy
    ],
)
def test_ohem_matches_formula(thresh, min_kept, seed):
    logits, target = random_batch(seed)
    value = OhemCrossEntropy(thresh, min_kept, IGNORE)(logits, target).item()
    assert value == pytest.approx(ohem_reference(logits, target, thresh, min_kept), rel=1e-5)


def test_ohem_keeps_at_least_min_kept_and_only_hard_pixels_get_gradient():
    logits, target = random_batch(6, ignore_frac=0.3)
    logits.requires_grad_(True)
    OhemCrossEntropy(thresh=0.01, min_kept=25, ignore_index=IGNORE)(logits, target).backward()
    touched = logits.grad.abs().sum(1) > 0  # (B, H, W)
    p, valid = true_class_prob(logits.detach(), target)
    assert int(touched.sum()) == max(25, int((p <= 0.01).sum()))
    assert not touched.reshape(-1)[torch.from_numpy(~valid)].any()  # ignored pixels never count
    kept_p = torch.from_numpy(p)[touched.reshape(-1)[torch.from_numpy(valid)]]
    assert kept_p.max() <= np.sort(p)[24] + 1e-12  # the kept ones are the lowest


def test_ohem_ce_equal_when_everything_is_hard():
    logits, target = random_batch(7)
    ce = CrossEntropy(IGNORE)(logits, target)
    ohem = OhemCrossEntropy(thresh=1.0, min_kept=1, ignore_index=IGNORE)(logits, target)
    torch.testing.assert_close(ohem, ce)


@pytest.mark.parametrize(("thresh", "min_kept"), [(0.0, 10), (1.5, 10), (0.7, 0)])
def test_ohem_rejects_bad_arguments(thresh, min_kept):
    with pytest.raises(ValueError):
        OhemCrossEntropy(thresh, min_kept)


# -- class weights, label smoothing, Dice, Focal, Lovász, sums: direct formulas ---------------
def softmax_np(logits: torch.Tensor) -> np.ndarray:
    """(N, C) softmax probabilities of the pixels, in float64, with numpy."""
    x = logits.double().numpy().transpose(0, 2, 3, 1).reshape(-1, logits.shape[1])
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


WEIGHTS = [0.5, 2.0, 1.0, 3.0, 0.25]


@pytest.mark.parametrize(("weights", "smoothing"), [(None, 0.1), (WEIGHTS, 0.0), (WEIGHTS, 0.2)])
def test_weighted_smoothed_cross_entropy_matches_formula(weights, smoothing):
    logits, target = random_batch(8)
    p = softmax_np(logits)
    t = target.numpy().reshape(-1)
    valid = t != IGNORE
    w = np.ones(5) if weights is None else np.array(weights)
    p, t = p[valid], t[valid]
    # per pixel: (1 - s) w_t (-log p_t) + s / C sum_c w_c (-log p_c); mean weighted by w_t
    per_pixel = (1 - smoothing) * w[t] * -np.log(p[np.arange(len(t)), t])
    per_pixel += smoothing / 5 * (-np.log(p) * w).sum(1)
    expected = per_pixel.sum() / w[t].sum()
    value = CrossEntropy(IGNORE, weights, smoothing)(logits, target).item()
    assert value == pytest.approx(expected, rel=1e-5)


def test_weighted_ohem_matches_formula():
    logits, target = random_batch(9)
    p_all = softmax_np(logits)
    t = target.numpy().reshape(-1)
    valid = t != IGNORE
    p_all, t = p_all[valid], t[valid]
    p = p_all[np.arange(len(t)), t]
    threshold = max(0.3, np.sort(p)[20 - 1])
    kept = p <= threshold
    w = np.array(WEIGHTS)[t]
    expected = (w * -np.log(p))[kept].sum() / w[kept].sum()
    value = OhemCrossEntropy(0.3, 20, IGNORE, WEIGHTS)(logits, target).item()
    assert value == pytest.approx(expected, rel=1e-5)


def dice_reference(logits, target, weights=None) -> float:
    """1 - dice per class present in the target, over the valid pixels; weighted mean."""
    p = softmax_np(logits)
    t = target.numpy().reshape(-1)
    valid = t != IGNORE
    p, t = p[valid], t[valid]
    losses, ws = [], []
    for c in range(p.shape[1]):
        y = (t == c).astype(float)
        if y.sum() == 0:
            continue
        losses.append(1 - 2 * (p[:, c] * y).sum() / (p[:, c].sum() + y.sum()))
        ws.append(1.0 if weights is None else weights[c])
    return float(np.dot(losses, ws) / np.sum(ws))


@pytest.mark.parametrize("weights", [None, WEIGHTS])
def test_dice_matches_formula_with_an_absent_class(weights):
    logits, target = random_batch(10)
    target[target == 3] = 1  # class 3 absent: it leaves the mean
    value = DiceLoss(IGNORE, weights)(logits, target).item()
    assert value == pytest.approx(dice_reference(logits, target, weights), rel=1e-5)


@pytest.mark.parametrize(("gamma", "weights"), [(2.0, None), (0.5, WEIGHTS), (0.0, None)])
def test_focal_matches_formula(gamma, weights):
    logits, target = random_batch(11)
    p = softmax_np(logits)
    t = target.numpy().reshape(-1)
    valid = t != IGNORE
    p, t = p[valid], t[valid]
    pt = p[np.arange(len(t)), t]
    w = np.ones(5)[t] if weights is None else np.array(weights)[t]
    expected = (w * -((1 - pt) ** gamma) * np.log(pt)).sum() / w.sum()
    value = FocalLoss(gamma, IGNORE, weights)(logits, target).item()
    assert value == pytest.approx(expected, rel=1e-5)


def test_focal_with_gamma_0_is_cross_entropy():
    logits, target = random_batch(12)
    torch.testing.assert_close(
        FocalLoss(0.0, IGNORE, WEIGHTS)(logits, target),
        CrossEntropy(IGNORE, WEIGHTS)(logits, target),
    )


def test_lovasz_of_hard_predictions_is_one_minus_iou():
    """At 0/1 probabilities the Lovász extension equals the Jaccard loss itself: the mean over
    the present classes of 1 - IoU of the predicted labels (counted here from the masks)."""
    g = torch.Generator().manual_seed(13)
    target = torch.randint(0, 4, (300,), generator=g)
    pred = torch.where(
        torch.rand(300, generator=g) < 0.6, target, torch.randint(0, 4, (300,), generator=g)
    )
    target[target == 2] = 0  # class 2 absent from the targets: left out of the mean
    prob = torch.nn.functional.one_hot(pred, 4).float()
    ious = []
    for c in (0, 1, 3):
        inter = int(((pred == c) & (target == c)).sum())
        union = int(((pred == c) | (target == c)).sum())
        ious.append(inter / union)
    expected = float(np.mean([1 - iou for iou in ious]))
    assert lovasz_softmax_probs(prob, target, 4).item() == pytest.approx(expected, rel=1e-6)


def test_lovasz_is_linear_along_a_ray():
    """The Lovász extension is positively homogeneous: errors t x (0/1 errors) give t x the
    Jaccard loss of those errors."""
    target = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    wrong = torch.tensor([1, 0, 1, 0, 0, 1, 0]).bool()  # pixels predicted as the other class
    t = 0.3
    prob = torch.nn.functional.one_hot(target, 2).float()
    prob[wrong] = prob[wrong] * (1 - t) + (1 - prob[wrong]) * t  # error t on the wrong pixels
    # class 0: 3 pixels, 2 missed; 1 pixel of class 1 wrong -> union 4, intersection 1
    # class 1: 4 pixels, 1 missed; 2 pixels of class 0 wrong -> union 6, intersection 3
    expected = t * ((1 - 1 / 4) + (1 - 3 / 6)) / 2
    assert lovasz_softmax_probs(prob, target, 2).item() == pytest.approx(expected, rel=1e-6)


def test_lovasz_ignores_pixels_and_weights_classes():
    logits, target = random_batch(14)
    valid = target != IGNORE
    prob = logits.softmax(1).permute(0, 2, 3, 1)[valid]
    weights = torch.tensor(WEIGHTS)
    value = LovaszSoftmax(IGNORE, WEIGHTS)(logits, target)
    per_class = [
        lovasz_softmax_probs(prob, target[valid], 5, torch.eye(5)[c]).item() for c in range(5)
    ]
    present = torch.bincount(target[valid], minlength=5) > 0
    expected = sum(w * v for w, v, p in zip(WEIGHTS, per_class, present, strict=True) if p)
    expected /= float(weights[present].sum())
    assert value.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kind", ["dice", "focal", "lovasz", "ce+dice"])
def test_all_ignored_batch_gives_zero_for_every_loss(kind):
    logits, target = random_batch(15)
    target[:] = IGNORE
    logits.requires_grad_(True)
    value = build_loss(kind, ignore_index=IGNORE, class_weights=WEIGHTS)(logits, target)
    value.backward()
    assert value.item() == 0.0 and torch.all(logits.grad == 0)


def test_a_sum_is_its_weighted_terms_in_any_order():
    logits, target = random_batch(16)
    ce = CrossEntropy(IGNORE)(logits, target)
    dice = DiceLoss(IGNORE)(logits, target)
    lovasz = LovaszSoftmax(IGNORE)(logits, target)
    one = build_loss("ce+dice", ignore_index=IGNORE, weights=[0.5, 2.0])(logits, target)
    other = build_loss("dice+ce", ignore_index=IGNORE, weights=[2.0, 0.5])(logits, target)
    torch.testing.assert_close(one, 0.5 * ce + 2.0 * dice)
    torch.testing.assert_close(other, one)
    three = build_loss("lovasz + ohem", ignore_index=IGNORE, min_kept=10**6)(logits, target)
    torch.testing.assert_close(three, lovasz + ce)  # min_kept above the pixels: plain CE


def test_build_loss_refuses_unknown_terms_and_wrong_weights():
    with pytest.raises(ValueError, match="unknown loss 'dcie'; choose from ce, ohem"):
        build_loss("ce+dcie")
    with pytest.raises(ValueError, match="3 loss weights for the 2 terms"):
        build_loss("ce+dice", weights=[1, 2, 3])


# -- mixed precision: the loss is computed in float32 -------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["ce", "ohem", "dice", "focal", "lovasz", "ce+dice"])
def test_half_logits_are_cast_before_the_softmax(kind, dtype):
    """Under CPU autocast the loss of bf16/fp16 logits is the float32 loss of the same values (a
    softmax in half precision would differ), and a half-precision forward gives the float32 loss
    within the rounding of the logits."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 5, 3, padding=1)
    images = torch.randn(2, 3, 12, 12)
    target = torch.randint(0, 5, (2, 12, 12))
    target[:, :2] = IGNORE
    loss = build_loss(kind, ignore_index=IGNORE, min_kept=50)
    with torch.autocast("cpu", dtype=dtype):
        logits = model(images)
        assert logits.dtype == dtype
        mixed = loss(logits, target)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, loss(logits.float(), target), rtol=1e-6, atol=1e-7)
    full = loss(model(images), target)
    torch.testing.assert_close(mixed, full, rtol=2e-2, atol=2e-3)
