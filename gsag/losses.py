"""Pixel-wise losses: cross-entropy, OHEM, Dice, Focal, Lovász-Softmax, and weighted sums of them.

Each takes logits (B, C, H, W) and targets (B, H, W), skips pixels labelled `ignore_index`, and
may weight the classes (`class_weights`, one per class). A batch with no valid pixel gives a
loss of 0 (still attached to the graph), never NaN. `LossSum`, what the engine trains with,
computes every term in float32 outside autocast: under bf16/fp16 training the logits are cast
before the softmax.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gsag.config import LOSS_NAMES, loss_terms


class _PixelLoss(nn.Module):
    """What every loss here shares: the ignore index and the class weights (a buffer, so that
    `.to(device)` moves it; None weighs every class 1)."""

    class_weights: torch.Tensor | None

    def __init__(
        self, ignore_index: int = 255, class_weights: Sequence[float] | None = None
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        weights = None if class_weights is None else torch.tensor(class_weights).float()
        self.register_buffer("class_weights", weights, persistent=False)

    def _valid(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask of the valid pixels (B, H, W), target with ignored pixels set to class 0)."""
        valid = target != self.ignore_index
        return valid, torch.where(valid, target, torch.zeros_like(target))

    def _pixel_weights(self, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The weight of each pixel's true class, 0 where ignored: (B, H, W)."""
        if self.class_weights is None:
            return valid.float()
        return self.class_weights[target] * valid


class CrossEntropy(_PixelLoss):
    """Softmax cross-entropy, averaged over the valid pixels weighted by their true class's
    weight (`F.cross_entropy`'s weighted mean); `label_smoothing` as in `F.cross_entropy`."""

    def __init__(
        self,
        ignore_index: int = 255,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(ignore_index, class_weights)
        self.label_smoothing = label_smoothing

    def pixel_losses(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted (and smoothed) cross-entropy of each pixel, 0 where ignored: (B, H, W)."""
        return F.cross_entropy(
            logits.float(),
            target,
            weight=self.class_weights,
            ignore_index=self.ignore_index,
            reduction="none",
            label_smoothing=self.label_smoothing,
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid, safe = self._valid(target)
        total = self._pixel_weights(safe, valid).sum()
        return self.pixel_losses(logits, target).sum() / total.clamp(min=1e-12)


class OhemCrossEntropy(CrossEntropy):
    """Cross-entropy over the hard pixels of a batch.

    For every valid pixel, `p` is the softmax probability of its true class. The threshold is
    `max(thresh, p of the min_kept-th lowest valid pixel)`; pixels with `p <= threshold` are kept,
    so all pixels below `thresh` count and at least `min_kept` pixels (or every valid pixel, if
    fewer) count. The loss is the (class-weighted) mean cross-entropy over the kept pixels.

    Args:
        thresh: probability under which a pixel is hard.
        min_kept: least number of pixels kept per batch.
        ignore_index, class_weights, label_smoothing: as for `CrossEntropy`.
    """

    def __init__(
        self,
        thresh: float = 0.7,
        min_kept: int = 100_000,
        ignore_index: int = 255,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
    ):
        super().__init__(ignore_index, class_weights, label_smoothing)
        if not 0.0 < thresh <= 1.0:
            raise ValueError(f"OHEM thresh is {thresh}; it must be in (0, 1]")
        if min_kept < 1:
            raise ValueError(f"OHEM min_kept is {min_kept}; it must be >= 1")
        self.thresh = thresh
        self.min_kept = min_kept

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        valid, safe = self._valid(target)  # (B, H, W)
        ce = self.pixel_losses(logits, target)
        num_valid = int(valid.sum())
        if num_valid == 0:
            return ce.sum() * 0.0
        with torch.no_grad():  # the softmax probability of the true class, (num_valid,)
            if self.class_weights is None and self.label_smoothing == 0:
                prob = torch.exp(-ce[valid])  # ce is -log p here
            else:
                prob = logits.log_softmax(1).gather(1, safe[:, None])[:, 0][valid].exp()
            k = min(self.min_kept, num_valid)
            kth = torch.kthvalue(prob, k).values
            threshold = torch.clamp(kth, min=self.thresh)
            keep = valid.clone()
            keep[valid] = prob <= threshold
        weights = self._pixel_weights(safe, keep)
        return ce[keep].sum() / weights.sum().clamp(min=1e-12)


class DiceLoss(_PixelLoss):
    """Soft Dice loss of the softmax: `1 - dice_c` for each class c present in the batch's
    targets, `dice_c = 2 sum(p_c y_c) / (sum(p_c) + sum(y_c))` over the valid pixels of the
    whole batch, averaged over the present classes (weighted by `class_weights`).

    Classes absent from the targets leave the average (segmentation_models_pytorch counts them
    as 0 and divides by every class, so its value is smaller when classes are missing)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        prob = logits.float().softmax(1)  # (B, C, H, W)
        valid, safe = self._valid(target)
        p_true = prob.gather(1, safe[:, None])[:, 0][valid]  # (P,) for the valid pixels
        labels = safe[valid]  # (P,)
        overlap = prob.new_zeros(num_classes).index_add(0, labels, p_true)  # sum(p_c y_c)
        counts = torch.bincount(labels, minlength=num_classes).float()  # sum(y_c)
        predicted = (prob * valid[:, None]).sum((0, 2, 3))  # sum(p_c)
        dice = 2 * overlap / (predicted + counts).clamp(min=1e-7)  # (C,)
        return _present_mean(1 - dice, counts, self.class_weights)


class FocalLoss(_PixelLoss):
    """Softmax focal loss: `-(1 - p_t) ** gamma * log(p_t)` per valid pixel, `p_t` the softmax
    probability of its true class, averaged with the class weights as `CrossEntropy` is
    (gamma 0 gives the cross-entropy)."""

    def __init__(
        self,
        gamma: float = 2.0,
        ignore_index: int = 255,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__(ignore_index, class_weights)
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid, safe = self._valid(target)
        log_p = logits.float().log_softmax(1).gather(1, safe[:, None])[:, 0]  # (B, H, W)
        # clamped away from 0: (1 - p) ** gamma has no finite slope there for gamma < 1
        hard = (1 - log_p.exp()).clamp(min=torch.finfo(torch.float32).tiny) ** self.gamma
        weights = self._pixel_weights(safe, valid)
        return (-hard * log_p * weights).sum() / weights.sum().clamp(min=1e-12)


class LovaszSoftmax(_PixelLoss):
    """Lovász-Softmax (Berman et al., 2018): for each class present in the batch's targets, the
    Lovász extension of its Jaccard loss evaluated at the errors `|y_c - p_c|` of the valid
    pixels of the whole batch; averaged over those classes (weighted by `class_weights`)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        prob = logits.float().softmax(1)
        valid, _ = self._valid(target)
        return lovasz_softmax_probs(
            prob.permute(0, 2, 3, 1)[valid], target[valid], num_classes, self.class_weights
        )


def lovasz_softmax_probs(
    prob: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Lovász-Softmax of class probabilities `prob` (P, C) against `labels` (P,) (valid pixels
    only); 0 when there are none."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    losses = prob.new_zeros(num_classes) + prob.sum() * 0  # attached even with no pixel
    for c in torch.nonzero(counts).flatten().tolist():
        truth = (labels == c).float()  # (P,)
        errors, order = (truth - prob[:, c]).abs().sort(descending=True)
        losses[c] = torch.dot(errors, jaccard_steps(truth[order]))
    return _present_mean(losses, counts, class_weights)


def jaccard_steps(truth: torch.Tensor) -> torch.Tensor:
    """The slope of the Lovász extension of the Jaccard loss along pixels sorted by decreasing
    error: step k is `J(k) - J(k - 1)`, `J(k)` the Jaccard loss when the first k pixels of the
    order are wrong and the rest right. `truth` (P,) holds 1 for the class's pixels."""
    positives = truth.sum()
    missed = truth.cumsum(0)  # true pixels among the first k: lost from the intersection
    added = (1 - truth).cumsum(0)  # false pixels among the first k: added to the union
    loss = 1 - (positives - missed) / (positives + added)  # J(1), ..., J(P)
    return torch.cat([loss[:1], loss[1:] - loss[:-1]])


def _present_mean(
    losses: torch.Tensor, counts: torch.Tensor, class_weights: torch.Tensor | None
) -> torch.Tensor:
    """The mean of per-class `losses` (C,) over the classes with pixels (`counts` > 0), weighted
    by `class_weights`; 0 (attached to the graph) when no class has any."""
    weights = (counts > 0).float()
    if class_weights is not None:
        weights = weights * class_weights
    return (losses * weights).sum() / weights.sum().clamp(min=1e-12)


class LossSum(nn.Module):
    """`sum_i weight_i * term_i(logits, target)`, in float32 with autocast off.

    Args:
        terms: (name, weight, loss) of each term, e.g. [("ce", 1.0, CrossEntropy())].
    """

    def __init__(self, terms: Sequence[tuple[str, float, nn.Module]]) -> None:
        super().__init__()
        self.names = [name for name, _, _ in terms]
        self.weights = [float(weight) for _, weight, _ in terms]
        self.terms = nn.ModuleList([loss for _, _, loss in terms])

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(logits.device.type, enabled=False):
            logits = logits.float()
            parts = [
                w * term(logits, target) for w, term in zip(self.weights, self.terms, strict=True)
            ]
            return torch.stack(parts).sum()


def build_loss(
    kind: str,
    *,
    ignore_index: int = 255,
    weights: Sequence[float] = (),
    class_weights: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
    focal_gamma: float = 2.0,
    thresh: float = 0.7,
    min_kept: int = 100_000,
) -> LossSum:
    """The loss a config names: `kind` is a term of `LOSS_NAMES` or a sum ("ce+dice"),
    `weights` one per term (default 1 each)."""
    names = loss_terms(kind)
    unknown = [n for n in names if n not in LOSS_NAMES]
    if unknown:
        raise ValueError(f"unknown loss {unknown[0]!r}; choose from {', '.join(LOSS_NAMES)}")
    if weights and len(weights) != len(names):
        raise ValueError(f"{len(weights)} loss weights for the {len(names)} terms of {kind!r}")
    terms: dict[str, nn.Module] = {
        "ce": CrossEntropy(ignore_index, class_weights, label_smoothing),
        "ohem": OhemCrossEntropy(thresh, min_kept, ignore_index, class_weights, label_smoothing),
        "dice": DiceLoss(ignore_index, class_weights),
        "focal": FocalLoss(focal_gamma, ignore_index, class_weights),
        "lovasz": LovaszSoftmax(ignore_index, class_weights),
    }
    return LossSum(
        [(n, w, terms[n]) for n, w in zip(names, weights or [1.0] * len(names), strict=True)]
    )
