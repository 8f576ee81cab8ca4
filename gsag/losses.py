"""Pixel-wise losses: softmax cross-entropy and its online hard example mining (OHEM) variant.

Both take logits (B, C, H, W) and targets (B, H, W) and skip pixels labelled `ignore_index`.
A batch with no valid pixel gives a loss of 0 (still attached to the graph), never NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropy(nn.Module):
    """Mean softmax cross-entropy over the valid (non-ignored) pixels.

    Args:
        ignore_index: target value that never counts.
    """

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(
            logits.float(), target, ignore_index=self.ignore_index, reduction="sum"
        )
        count = (target != self.ignore_index).sum().clamp(min=1)
        return loss / count


class OhemCrossEntropy(nn.Module):
    """Cross-entropy over the hard pixels of a batch.

    For every valid pixel, `p` is the softmax probability of its true class. The threshold is
    `max(thresh, p of the min_kept-th lowest valid pixel)`; pixels with `p <= threshold` are kept,
    so all pixels below `thresh` count and at least `min_kept` pixels (or every valid pixel, if
    fewer) count. The loss is the mean cross-entropy over the kept pixels.

    Args:
        thresh: probability under which a pixel is hard.
        min_kept: least number of pixels kept per batch.
        ignore_index: target value that never counts.
    """

    def __init__(self, thresh: float = 0.7, min_kept: int = 100_000, ignore_index: int = 255):
        super().__init__()
        if not 0.0 < thresh <= 1.0:
            raise ValueError(f"OHEM thresh is {thresh}; it must be in (0, 1]")
        if min_kept < 1:
            raise ValueError(f"OHEM min_kept is {min_kept}; it must be >= 1")
        self.thresh = thresh
        self.min_kept = min_kept
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        valid = target != self.ignore_index  # (B, H, W)
        ce = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        num_valid = int(valid.sum())
        if num_valid == 0:
            return ce.sum() * 0.0
        with torch.no_grad():
            prob = torch.exp(-ce[valid])  # softmax probability of the true class, (num_valid,)
            k = min(self.min_kept, num_valid)
            kth = torch.kthvalue(prob, k).values
            threshold = torch.clamp(kth, min=self.thresh)
            keep = valid.clone()
            keep[valid] = prob <= threshold
        return ce[keep].mean()


def build_loss(kind: str, thresh: float, min_kept: int, ignore_index: int) -> nn.Module:
    """The loss named by the config (`ce` or `ohem`)."""
    if kind == "ce":
        return CrossEntropy(ignore_index)
    if kind == "ohem":
        return OhemCrossEntropy(thresh, min_kept, ignore_index)
    raise ValueError(f"unknown loss type {kind!r}; choose ce or ohem")
