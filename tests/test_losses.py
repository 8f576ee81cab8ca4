"""Losses against direct formulas: softmax cross-entropy and OHEM on random data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gsag.losses import CrossEntropy, OhemCrossEntropy

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
