"""Segmentation metrics from a confusion matrix: IoU per class, mIoU, aAcc, mAcc, FWIoU.

The matrix counts pixels: `mat[t, p]` = pixels of true class `t` predicted as `p`; pixels whose
target is `ignore_index` are never counted. From it, per class `c`:

- IoU(c) = TP / (TP + FP + FN); a class absent from both the targets and the predictions has no
  IoU (NaN) and is left out of the mean (mIoU), as in mmsegmentation and torchvision.
- Acc(c) = TP / (TP + FN) (recall); NaN for a class with no target pixel, left out of mAcc.
- aAcc = correct pixels / counted pixels; FWIoU = sum over classes of (target pixel share) x IoU.

All values are fractions in [0, 1]. Under DDP, `reduce()` sums the matrices of all processes.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from gsag.engine.distributed import several_processes


class ConfusionMatrix:
    """Accumulates a (num_classes, num_classes) pixel confusion matrix.

    Args:
        num_classes: number of classes.
        ignore_index: target value never counted (e.g. 255 for VOC borders).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        """Clear the counts."""
        self.mat.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch.

        Args:
            pred: predicted class ids (any shape), or logits (B, C, H, W) whose argmax over C is
                taken.
            target: true class ids with the shape of the predicted ids.
        """
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(1)  # (B, C, H, W) -> (B, H, W)
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} != target {tuple(target.shape)}"
            )
        pred = pred.reshape(-1).to(torch.int64)
        target = target.reshape(-1).to(torch.int64)
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        if target.numel() and (target.min() < 0 or target.max() >= self.num_classes):
            bad = target[(target < 0) | (target >= self.num_classes)][0].item()
            raise ValueError(
                f"target holds class id {bad}, outside 0..{self.num_classes - 1} and not "
                f"ignore_index {self.ignore_index}; check the mask values or num_classes"
            )
        n = self.num_classes
        counts = torch.bincount(target * n + pred, minlength=n * n)
        self.mat += counts.reshape(n, n).to(self.mat.device, torch.int64)

    def reduce(self) -> None:
        """Sum the matrix over all processes (no-op without torch.distributed)."""
        if not several_processes():
            return
        device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
        mat = self.mat.to(device)
        dist.all_reduce(mat)
        self.mat = mat.cpu()

    def compute(self) -> dict:
        """Metrics from the counts so far.

        Returns:
            dict with "IoU" and "Acc" (per-class lists, NaN where undefined), "mIoU", "mAcc",
            "aAcc", "FWIoU" (floats) and "pixels" (counted pixels).
        """
        mat = self.mat.double()
        tp = mat.diag()
        gt = mat.sum(1)  # pixels per true class
        pr = mat.sum(0)  # pixels per predicted class
        union = gt + pr - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))
        acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, math.nan))
        total = mat.sum()
        freq = gt / total if total > 0 else torch.zeros_like(gt)
        present = gt > 0
        return {
            "IoU": iou.tolist(),
            "Acc": acc.tolist(),
            "mIoU": _nanmean(iou),
            "mAcc": _nanmean(acc),
            "aAcc": (tp.sum() / total).item() if total > 0 else math.nan,
            "FWIoU": (freq[present] * iou[present]).sum().item() if total > 0 else math.nan,
            "pixels": int(total.item()),
        }


def _nanmean(x: torch.Tensor) -> float:
    valid = ~torch.isnan(x)
    return x[valid].mean().item() if valid.any() else math.nan
