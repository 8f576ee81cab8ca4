"""Training and evaluation pipelines for (image, mask) pairs, on torchvision transforms v2.

Every transform is a small callable `(image, mask) -> (image, mask)` built on
`torchvision.transforms.v2.functional` with `tv_tensors.Image` / `tv_tensors.Mask`. Images are
resized bilinearly; masks always by nearest neighbour ("nearest-exact", which samples the pixel
centres the bilinear image resize uses, so the two stay aligned). All randomness comes from
torch's global generator, which a DataLoader seeds per worker, so a seeded loader is
deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as nnf
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from gsag.data.io import IMAGENET_MEAN, IMAGENET_STD
from gsag.data.sizes import pair

PairTransform = Callable[[Any, Any], tuple[Any, Any]]
"""One pipeline step: `(image, mask) -> (image, mask)`."""


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()


def rescale_size(
    height: int, width: int, scale: Sequence[int], ratio: float = 1.0
) -> tuple[int, int]:
    """Output (height, width) of a keep-ratio resize into `scale` = (long edge, short edge) × ratio.

    The image is scaled so that its long side is at most `long * ratio` and its short side at most
    `short * ratio`, with one of them equal (mmsegmentation's `keep_ratio` convention).
    """
    long_edge, short_edge = max(scale) * ratio, min(scale) * ratio
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))


def resize_pair(image: torch.Tensor, mask: torch.Tensor | None, size: tuple[int, int]):
    """Resize the image bilinearly (antialiased) and the mask by nearest neighbour to `size`."""
    image = F.resize(image, list(size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
    if mask is not None:
        # (H, W) -> (1, 1, H, W) for interpolate, nearest-exact samples pixel centres
        resized = nnf.interpolate(mask[None, None], size=size, mode="nearest-exact")[0, 0]
        mask = tv_tensors.Mask(resized)
    return image, mask


class ToTVTensors:
    """Wrap a uint8 (3, H, W) image and an (H, W) mask as `tv_tensors` (mask stored as uint8)."""

    def __call__(self, image, mask):
        if mask.min() < 0 or mask.max() > 255:
            raise ValueError(
                f"mask values {int(mask.min())}..{int(mask.max())} do not fit 0..255; "
                "validate masks before transforming (the gsag datasets do)"
            )
        return tv_tensors.Image(image), tv_tensors.Mask(mask.to(torch.uint8))


class RandomResize:
    """Resize keeping the aspect ratio to `base_size` × a ratio drawn from `ratio_range`.

    Args:
        base_size: (long edge, short edge), e.g. VOC's (2048, 512); None scales the original size.
        ratio_range: the ratio is uniform in this range.
    """

    def __init__(
        self,
        base_size: Sequence[int] | None = (2048, 512),
        ratio_range: Sequence[float] = (0.5, 2.0),
    ) -> None:
        self.base_size = base_size
        self.ratio_range = ratio_range

    def __call__(self, image, mask):
        ratio = _uniform(*self.ratio_range)
        height, width = image.shape[-2:]
        if self.base_size is None:
            size = (max(1, int(height * ratio + 0.5)), max(1, int(width * ratio + 0.5)))
        else:
            size = rescale_size(height, width, self.base_size, ratio)
        return resize_pair(image, mask, size)


class RandomCrop:
    """Random crop of at most `crop_size`; no single class may fill more than `cat_max_ratio` of
    the (non-ignored) crop: up to `max_tries` positions are drawn, the last is kept if none passes.

    A crop larger than the image is clipped to the image; `PadTo` fills it up afterwards.
    """

    def __init__(
        self,
        crop_size: int | Sequence[int],
        cat_max_ratio: float = 0.75,
        ignore_index: int = 255,
        max_tries: int = 10,
    ) -> None:
        self.crop_size = pair(crop_size)
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index
        self.max_tries = max_tries

    def _position(self, height: int, width: int, ch: int, cw: int) -> tuple[int, int]:
        top = int(torch.randint(0, height - ch + 1, ()).item())
        left = int(torch.randint(0, width - cw + 1, ()).item())
        return top, left

    def __call__(self, image, mask):
        height, width = image.shape[-2:]
        ch, cw = min(self.crop_size[0], height), min(self.crop_size[1], width)
        top, left = self._position(height, width, ch, cw)
        if self.cat_max_ratio < 1.0:
            for _ in range(self.max_tries):
                crop = mask[top : top + ch, left : left + cw]
                counts = torch.bincount(crop.flatten().long(), minlength=256)
                counts[self.ignore_index] = 0
                counts = counts[counts > 0]
                if len(counts) > 1 and counts.max() < self.cat_max_ratio * counts.sum():
                    break
                top, left = self._position(height, width, ch, cw)
        return F.crop(image, top, left, ch, cw), F.crop(mask, top, left, ch, cw)


class RandomHorizontalFlip:
    """Flip image and mask left-right with probability `p`."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image, mask):
        if torch.rand(()).item() < self.p:
            return F.horizontal_flip(image), F.horizontal_flip(mask)
        return image, mask


class PhotoMetricDistortion:
    """The usual segmentation colour jitter, each step with probability 1/2, mask untouched:
    additive brightness (±32/255), multiplicative contrast (0.5–1.5, before or after the next
    two, at random), saturation (0.5–1.5) and hue (±18/180 of a turn). Returns float in [0, 1].
    """

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
    ) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_range = contrast_range
        self.saturation_range = saturation_range
        self.hue_delta = hue_delta

    @staticmethod
    def _coin() -> bool:
        return torch.rand(()).item() < 0.5

    def _contrast(self, x: torch.Tensor) -> torch.Tensor:
        return (x * _uniform(*self.contrast_range)).clamp_(0, 1) if self._coin() else x

    def __call__(self, image, mask):
        x = image.to(torch.float32).div_(255.0)  # (3, H, W) in [0, 1]
        if self._coin():
            delta = _uniform(-self.brightness_delta, self.brightness_delta) / 255.0
            x = (x + delta).clamp_(0, 1)
        contrast_first = self._coin()
        if contrast_first:
            x = self._contrast(x)
        if self._coin():
            x = F.adjust_saturation(x, _uniform(*self.saturation_range))
        if self._coin():
            x = F.adjust_hue(x, _uniform(-self.hue_delta, self.hue_delta) / 180.0)
        if not contrast_first:
            x = self._contrast(x)
        return tv_tensors.Image(x), mask


class Normalize:
    """uint8 (or [0, 1] float) image -> float32 (x - mean) / std; mask -> int64 plain tensors."""

    def __init__(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.mean = list(mean)
        self.std = list(std)

    def __call__(self, image, mask):
        x = image.as_subclass(torch.Tensor)
        x = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)
        x = F.normalize(x, self.mean, self.std)  # (3, H, W) float32
        return x, mask.as_subclass(torch.Tensor).to(torch.int64)


class PadTo:
    """Pad bottom/right up to `size`: image with `fill` (0 after normalisation = the mean
    colour), mask with `ignore_index`, so padding never counts in the loss."""

    def __init__(self, size: int | Sequence[int], fill: float = 0.0, ignore_index: int = 255):
        self.size = pair(size)
        self.fill = fill
        self.ignore_index = ignore_index

    def __call__(self, image, mask):
        pad_h = max(self.size[0] - image.shape[-2], 0)
        pad_w = max(self.size[1] - image.shape[-1], 0)
        if pad_h or pad_w:
            # (3, h, w) -> (3, H, W) and (h, w) -> (H, W): pad right and bottom
            image = nnf.pad(image, (0, pad_w, 0, pad_h), value=self.fill)
            mask = nnf.pad(mask, (0, pad_w, 0, pad_h), value=self.ignore_index)
        return image, mask


class ResizeImage:
    """Keep-ratio resize of the image only (evaluation); the mask stays at its original size."""

    def __init__(self, scale: Sequence[int]) -> None:
        self.scale = scale

    def __call__(self, image, mask):
        height, width = image.shape[-2:]
        size = rescale_size(height, width, self.scale)
        image, _ = resize_pair(image, None, size)
        return image, mask


def train_transforms(
    crop_size: int | Sequence[int] = 512,
    base_size: Sequence[int] | None = (2048, 512),
    scale_range: Sequence[float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    ignore_index: int = 255,
    hflip: float = 0.5,
    photometric: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """The standard VOC training pipeline.

    Random keep-ratio resize to `base_size` × U(`scale_range`), random crop `crop_size` with
    `cat_max_ratio`, horizontal flip with probability `hflip`, photometric distortion, ImageNet
    normalisation, padding to `crop_size` (image 0, mask `ignore_index`).

    Returns:
        callable `(image uint8 (3, H, W), mask (H, W)) -> (float32 (3, h, w), int64 (h, w))`
        with (h, w) = crop size.
    """
    steps: list[PairTransform] = [ToTVTensors(), RandomResize(base_size, scale_range)]
    steps.append(RandomCrop(crop_size, cat_max_ratio, ignore_index))
    if hflip > 0:
        steps.append(RandomHorizontalFlip(hflip))
    if photometric:
        steps.append(PhotoMetricDistortion())
    steps += [Normalize(mean, std), PadTo(crop_size, 0.0, ignore_index)]
    return v2.Compose(steps)


def eval_transforms(
    scale: Sequence[int] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """The evaluation pipeline: optional keep-ratio resize of the image to `scale`
    = (long edge, short edge), normalisation; the mask keeps its original size for scoring."""
    steps: list[PairTransform] = [ToTVTensors()]
    if scale is not None:
        steps.append(ResizeImage(scale))
    steps.append(Normalize(mean, std))
    return v2.Compose(steps)
