"""Dice, Focal and Lovász-Softmax against other libraries' implementations (test-only extras):
segmentation_models_pytorch for Dice and Lovász, kornia for the softmax Focal loss
(segmentation_models_pytorch's FocalLoss is a per-class sigmoid loss, another definition)."""

from __future__ import annotations

import pytest
import torch

from gsag.losses import DiceLoss, FocalLoss, LovaszSoftmax

pytestmark = pytest.mark.usefixtures("single_thread")

IGNORE = 255
WEIGHTS = [0.5, 2.0, 1.0, 3.0, 0.25]


def batch(seed: int, ignore_frac: float = 0.2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 5, 9, 11, generator=g) * 3
    target = torch.randint(0, 5, (2, 9, 11), generator=g)
    target[torch.rand(2, 9, 11, generator=g) < ignore_frac] = IGNORE
    assert len(torch.unique(target)) == 6  # every class present (and ignored pixels)
    return logits, target


@pytest.mark.parametrize("weights", [None, WEIGHTS])
def test_dice_matches_segmentation_models_pytorch(weights):
    losses = pytest.importorskip(
        "segmentation_models_pytorch.losses", reason="pip install gsag[test]"
    )
    logits, target = batch(0)
    reference = losses.DiceLoss(
        "multiclass", ignore_index=IGNORE, class_weights=weights, smooth=0.0
    )(logits, target)
    torch.testing.assert_close(DiceLoss(IGNORE, weights)(logits, target), reference)


def test_lovasz_matches_segmentation_models_pytorch():
    losses = pytest.importorskip(
        "segmentation_models_pytorch.losses", reason="pip install gsag[test]"
    )
    for seed in range(3):
        logits, target = batch(seed)
        reference = losses.LovaszLoss("multiclass", ignore_index=IGNORE)(logits, target)
        torch.testing.assert_close(LovaszSoftmax(IGNORE)(logits, target), reference)


def test_lovasz_gradient_matches_segmentation_models_pytorch():
    losses = pytest.importorskip(
        "segmentation_models_pytorch.losses", reason="pip install gsag[test]"
    )
    logits, target = batch(4)
    ours = logits.clone().requires_grad_(True)
    theirs = logits.clone().requires_grad_(True)
    LovaszSoftmax(IGNORE)(ours, target).backward()
    losses.LovaszLoss("multiclass", ignore_index=IGNORE)(theirs, target).backward()
    torch.testing.assert_close(ours.grad, theirs.grad)


@pytest.mark.parametrize(("gamma", "weights"), [(2.0, None), (1.5, WEIGHTS), (0.0, WEIGHTS)])
def test_focal_matches_kornia(gamma, weights):
    kornia_losses = pytest.importorskip("kornia.losses", reason="pip install gsag[test]")
    logits, target = batch(5)
    w = None if weights is None else torch.tensor(WEIGHTS)
    per_pixel = kornia_losses.focal_loss(
        logits, target, alpha=None, gamma=gamma, reduction="none", weight=w, ignore_index=IGNORE
    ).sum(1)  # (B, H, W): the target class's term, 0 where ignored
    valid = target != IGNORE
    total = valid.sum() if w is None else w[target[valid]].sum()
    reference = per_pixel.sum() / total
    # float32 sums in another order: kornia 0.8.3 (what pip picks at torch 2.4) is 5e-6 off
    ours = FocalLoss(gamma, IGNORE, weights)(logits, target)
    torch.testing.assert_close(ours, reference, rtol=2e-5, atol=1e-6)
