"""Evaluating a model on a dataset: each image once (sharded over DDP processes), consecutive
images of one size batched, logits from `gsag.engine.infer.infer` scored in a confusion matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler

from gsag.config import DEFAULT_MAX_PIXELS, DEFAULT_SCALES
from gsag.engine.compile import autocast
from gsag.engine.infer import check_inference_options, infer
from gsag.errors import OptionError
from gsag.metrics import ConfusionMatrix

if TYPE_CHECKING:
    from gsag.data.base import SegmentationDataset


class ShardSampler(Sampler[int]):
    """Indices `rank, rank + world_size, ...` in order: each image is seen exactly once overall.

    Unlike `DistributedSampler`, nothing is padded, so distributed metrics equal the
    single-process ones.
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def evaluate(
    model: nn.Module,
    dataset: SegmentationDataset,
    mode: str = "whole",
    crop_size: int | Sequence[int] = 512,
    stride: int | Sequence[int] = 341,
    scales: Sequence[float] = DEFAULT_SCALES,
    flip: bool = False,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    max_images: int = 0,
    num_workers: int = 0,
    amp: str = "none",
    rank: int = 0,
    world_size: int = 1,
    keep_samples: int = 0,
    progress: Callable[[int, int], None] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    window: str = "whole",
    batch_size: int = 1,
) -> dict[str, Any]:
    """Evaluate a model on a dataset whose samples are (normalised image, mask).

    Under DDP each process evaluates every `world_size`-th image and the confusion matrices are
    summed, so the metrics equal a single-process run's. Consecutive images of one size run as
    one batch of up to `batch_size` (`size_batches`); the predictions equal one-at-a-time ones up
    to float rounding.

    Args:
        model: segmentor; it is switched to eval mode.
        dataset: yields (image (3, H, W) float, mask (H', W') int64); logits are resized to the
            mask when the two sizes differ.
        mode, crop_size, stride, scales, flip: see `gsag.engine.infer.infer`.
        num_classes, ignore_index: default to the dataset's attributes.
        max_images: evaluate only the first N images (0 = all).
        num_workers: DataLoader workers.
        amp: "none", "bf16", "fp16" or "auto" (`gsag.engine.compile.resolve_amp`) autocast
            during the forward pass.
        rank, world_size: this process's shard.
        keep_samples: return the first N (image, mask, prediction) triples as "samples" (rank 0).
        progress: called with (images done, total) on this process after each batch.
        max_pixels: whole-image passes on larger images use sliding windows (see `infer`).
        window: how "multiscale" runs each scale, "whole" or "slide" (see `resolve_mode`).
        batch_size: most images per forward pass (`eval.batch_size`); memory grows with it.

    Returns:
        `ConfusionMatrix.compute()` plus "confusion" (the matrix as nested lists) and
        "images" (number evaluated).
    """
    check_inference_options(mode, crop_size, stride, scales, window)  # before loading images
    if batch_size < 1:
        raise OptionError(f"batch size {batch_size} must be >= 1; set e.g. eval.batch_size=8")
    num_classes = num_classes if num_classes is not None else dataset.num_classes
    ignore_index = ignore_index if ignore_index is not None else dataset.ignore_index
    length = len(dataset) if max_images <= 0 else min(max_images, len(dataset))
    sampler = ShardSampler(length, rank, world_size)
    # One sample at a time (`size_batches` stacks them); its own generator: evaluating draws
    # nothing from the global RNG.
    loader = DataLoader(dataset, None, sampler=sampler, num_workers=num_workers,
                        generator=torch.Generator())  # fmt: skip
    options = dict(mode=mode, crop_size=crop_size, stride=stride, scales=scales, flip=flip,
                   window=window, max_pixels=max_pixels)  # fmt: skip
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, ignore_index)
    samples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    done = 0
    for images, masks in size_batches(loader, batch_size):
        images = images.to(device, non_blocking=True)  # (B, 3, H, W)
        masks = masks.to(device, non_blocking=True)  # (B, H', W')
        pred = _predict(model, images, masks.shape[-2:], amp, options)  # (B, H', W')
        cm.update(pred, masks)
        for k in range(min(keep_samples - len(samples), len(pred))):
            # copies, so that a kept sample does not hold its whole batch in memory
            image, mask, guess = (t[k].to("cpu", copy=True) for t in (images, masks, pred))
            samples.append((image, mask, guess))
        done += len(pred)
        if progress is not None:
            progress(done, len(sampler))
    cm.reduce()
    model.train(was_training)
    result = cm.compute()
    result["confusion"] = cm.mat.tolist()
    result["images"] = length
    if keep_samples:
        result["samples"] = samples
    return result


def _predict(
    model: nn.Module, images: torch.Tensor, size: Sequence[int], amp: str, options: dict[str, Any]
) -> torch.Tensor:
    """Class indices (B, H', W') of a batch (B, 3, H, W): `infer` under autocast, the logits
    resized to the masks' size (H', W') where it differs from the images'."""
    with autocast(images.device, amp):
        logits = infer(model, images, **options)
    if logits.shape[-2:] != tuple(size):
        logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    return logits.argmax(1)


def size_batches(
    samples: Iterable[tuple[torch.Tensor, torch.Tensor]], batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Stack consecutive (image (3, H, W), mask (H', W')) samples into batches of up to
    `batch_size`, in order; a sample whose image or mask size differs from the batch's starts a
    new one, so nothing is padded. At most `batch_size` samples are held at a time.

    Yields:
        (images (B, 3, H, W), masks (B, H', W')).
    """
    images: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    for image, mask in samples:
        if images and (image.shape != images[0].shape or mask.shape != masks[0].shape):
            yield torch.stack(images), torch.stack(masks)
            images, masks = [], []
        images.append(image)
        masks.append(mask)
        if len(images) == batch_size:
            yield torch.stack(images), torch.stack(masks)
            images, masks = [], []
    if images:
        yield torch.stack(images), torch.stack(masks)
