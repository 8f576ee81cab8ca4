"""Inference modes (whole image, sliding window, multi-scale + flip) and dataset evaluation.

`infer` returns logits at the input's size whatever the mode:

- whole: one forward pass on the full image.
- slide: `crop_size` windows every `stride` pixels (the last window of a row or column is
  aligned to the image border); images smaller than a window are zero-padded (zero is the mean
  after normalisation); overlapping logits are averaged. Only one window per image is on the
  device at a time, so memory is bounded by the crop, not the image.
- multiscale: the image resized by each of `scales`, one whole-image pass each (or sliding
  windows with `window="slide"`), logits resized back and averaged.

`flip=True` adds a horizontally flipped pass to any mode and averages it in. A whole-image pass
on more than `max_pixels` pixels (default 4096 x 4096) runs as sliding windows instead, with a
one-line notice on the `gsag.engine.infer` logger, so huge images never try to allocate the
whole forward pass at once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gsag.config import DEFAULT_MAX_PIXELS, DEFAULT_SCALES, EVAL_MODES
from gsag.data.sizes import pair
from gsag.errors import GsagError, OptionError

WINDOWS = ("whole", "slide")

log = logging.getLogger(__name__)


def resolve_mode(mode: str, scales_given: bool, tta: bool = False) -> tuple[str, str]:
    """The (mode, window) that runs, one meaning for `gsag eval` and `gsag predict`: scales
    given explicitly (or `tta`) make any mode multi-scale, and "slide" then slides its windows at
    every scale instead of being dropped."""
    window = "slide" if mode == "slide" else "whole"
    return ("multiscale" if scales_given or tta else mode), window


def check_inference_options(
    mode: str,
    crop_size: int | Sequence[int],
    stride: int | Sequence[int],
    scales: Sequence[float],
    window: str = "whole",
) -> None:
    """Raise `OptionError` (a `ValueError`) naming the option, its value and the fix when an option is unusable."""
    if mode not in EVAL_MODES:
        raise OptionError(
            f"inference mode {mode!r} is unknown; choose one of {', '.join(EVAL_MODES)}"
        )
    if window not in WINDOWS:
        raise OptionError(f"window {window!r} is unknown; choose one of {', '.join(WINDOWS)}")
    crop, step = pair(crop_size), pair(stride)
    if min(crop) < 1:
        raise OptionError(f"crop size {crop_size} must be >= 1 pixel; pass e.g. --crop-size 512")
    if min(step) < 1:
        raise OptionError(f"stride {stride} must be >= 1 pixel; pass e.g. --stride 341")
    if step[0] > crop[0] or step[1] > crop[1]:
        raise OptionError(
            f"slide stride {step} is larger than crop_size {crop}; windows would skip pixels"
        )
    bad = [s for s in scales if not (math.isfinite(float(s)) and float(s) > 0)]
    if not scales or bad:
        raise OptionError(
            f"scales {list(scales)} must be one or more numbers > 0; pass e.g. --scales 0.75 1 1.25"
        )


@torch.no_grad()
def infer(
    model: nn.Module,
    images: torch.Tensor,
    mode: str = "whole",
    crop_size: int | Sequence[int] = 512,
    stride: int | Sequence[int] = 341,
    scales: Sequence[float] = DEFAULT_SCALES,
    flip: bool = False,
    window: str = "whole",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Predict logits for a batch of normalised images.

    Args:
        model: segmentor returning {"out": (B, C, h, w)}; call `model.eval()` first.
        images: (B, 3, H, W) float.
        mode: "whole", "slide" or "multiscale".
        crop_size: window size (int or (h, w)) for sliding windows.
        stride: window step (int or (h, w)) for sliding windows.
        scales: image scales for "multiscale".
        flip: also predict the mirrored image and average.
        window: how "multiscale" runs each scale: "whole" or "slide" (crop/stride honoured).
        max_pixels: a whole-image pass on more pixels than this runs as sliding windows instead
            (logged once); None = no limit.
        progress: called with (forward passes done, total) after each forward pass.

    Returns:
        (B, C, H, W) float32 logits at the input's size.
    """
    check_inference_options(mode, crop_size, stride, scales, window)
    crop, step = pair(crop_size), pair(stride)
    size = images.shape[-2:]
    use_scales = list(scales) if mode == "multiscale" else [1.0]
    slide = mode == "slide" or (mode == "multiscale" and window == "slide")
    plan = []  # (scaled size, slide?) per scale
    for s in use_scales:
        hw = (max(1, round(size[0] * s)), max(1, round(size[1] * s))) if s != 1.0 else size
        plan.append((hw, slide or _over_budget(hw, crop, max_pixels)))
        if slide:
            _check_crop_fits(hw, crop)
    passes = 2 if flip else 1
    total = passes * sum(_num_windows(hw, crop, step) if sl else 1 for hw, sl in plan)
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    out: torch.Tensor | None = None
    for (hw, use_slide), s in zip(plan, use_scales, strict=True):
        x = images
        if s != 1.0:
            x = F.interpolate(images, size=hw, mode="bilinear", align_corners=False)
        views = [x, x.flip(-1)] if flip else [x]
        for k, view in enumerate(views):
            if use_slide:
                logits = _slide(model, view, crop, step, tick)
            else:
                logits = _whole(model, view)
                tick()
            logits = logits.flip(-1) if k else logits
            if logits.shape[-2:] != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            out = logits if out is None else out + logits
    assert out is not None
    return check_finite(out / (len(use_scales) * passes), f"a {size[1]}x{size[0]} image")


class NonFiniteLogits(GsagError):
    """A model's output holds NaN or Inf: its predictions would mean nothing."""


#: What `check_finite` suggests by default (inference and evaluation).
OVERFLOW_HINT = (
    "with finite weights this is an overflow: try --amp none, else the model is broken (use "
    "another checkpoint)"
)


def check_finite(logits: torch.Tensor, what: str, hint: str = OVERFLOW_HINT) -> torch.Tensor:
    """`logits`, or a `NonFiniteLogits` error when any value is NaN or Inf (argmax would quietly
    pick class 0 there); `what` names the input, `hint` the way out."""
    bad = int((~torch.isfinite(logits)).sum())
    if bad:
        raise NonFiniteLogits(
            f"the logits of {what} hold {bad} non-finite value(s) (NaN or Inf) of "
            f"{logits.numel()}; the predictions would mean nothing: {hint}"
        )
    return logits


def _over_budget(hw: Sequence[int], crop: tuple[int, int], max_pixels: int | None) -> bool:
    """True (with a one-line notice) when a whole pass on `hw` exceeds the pixel budget."""
    if max_pixels is None or hw[0] * hw[1] <= max_pixels:
        return False
    if crop[0] * crop[1] > max_pixels:
        raise OptionError(
            f"a {hw[1]}x{hw[0]} image is over the pixel budget ({max_pixels} pixels) and so is "
            f"a {crop[1]}x{crop[0]} sliding window; lower --crop-size or raise --max-pixels"
        )
    log.warning(
        f"{hw[1]}x{hw[0]} image is over the pixel budget ({max_pixels} pixels): using sliding "
        f"windows ({crop[1]}x{crop[0]}) instead of one whole-image pass (--max-pixels to change)"
    )
    return True


_warned: set[str] = set()  # notices already logged by this process


def _check_crop_fits(hw: Sequence[int], crop: tuple[int, int]) -> None:
    """A one-line notice (once per image size and crop) when a sliding window is larger than
    the image on both sides: each image is then padded into a single window, which costs more
    than a whole-image pass and scores lower."""
    if crop[0] <= hw[0] or crop[1] <= hw[1]:
        return
    fit = max(1, min(hw) * 3 // 4)  # e.g. 96-pixel windows every 64 pixels on 128x128 images
    msg = (
        f"slide crop {crop[1]}x{crop[0]} is larger than the {hw[1]}x{hw[0]} image on both sides: "
        f"each image is padded into one {crop[1]}x{crop[0]} window (slower than --mode whole, "
        f"and the padding lowers the scores); use a crop that fits, e.g. --crop-size {fit} "
        f"--stride {max(1, fit * 2 // 3)}, or --mode whole"
    )
    if msg not in _warned:
        _warned.add(msg)
        log.warning(msg)


def _num_windows(hw: Sequence[int], crop: tuple[int, int], step: tuple[int, int]) -> int:
    """How many windows `_slide` runs on an image of size `hw`."""
    h, w = max(hw[0], crop[0]), max(hw[1], crop[1])
    return len(_starts(h, crop[0], step[0])) * len(_starts(w, crop[1], step[1]))


def _whole(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)["out"].float()  # (B, C, h, w)
    if out.shape[-2:] != x.shape[-2:]:
        out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return out


def _slide(
    model: nn.Module,
    x: torch.Tensor,
    crop: tuple[int, int],
    step: tuple[int, int],
    tick: Callable[[], None] = lambda: None,
) -> torch.Tensor:
    b, _, h, w = x.shape
    ph, pw = max(crop[0] - h, 0), max(crop[1] - w, 0)
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))  # zero = the mean after normalisation
    hp, wp = x.shape[-2:]
    ys = _starts(hp, crop[0], step[0])
    xs = _starts(wp, crop[1], step[1])
    logits: torch.Tensor | None = None
    count = torch.zeros(1, 1, hp, wp, device=x.device)
    for y0 in ys:
        for x0 in xs:
            window = x[:, :, y0 : y0 + crop[0], x0 : x0 + crop[1]]
            out = _whole(model, window)  # (B, C, crop_h, crop_w)
            if logits is None:
                logits = x.new_zeros(b, out.shape[1], hp, wp, dtype=torch.float32)
            logits[:, :, y0 : y0 + crop[0], x0 : x0 + crop[1]] += out
            count[:, :, y0 : y0 + crop[0], x0 : x0 + crop[1]] += 1
            tick()
    assert logits is not None
    return (logits / count)[:, :, :h, :w]


def _starts(length: int, crop: int, step: int) -> list[int]:
    """Window offsets covering [0, length): every `step`, the last one flush with the end."""
    n = max(math.ceil((length - crop) / step), 0) + 1
    return sorted({min(i * step, length - crop) for i in range(n)})


def inference_options(eval_cfg: Any) -> dict[str, Any]:
    """The inference keyword arguments of `evaluate`/`infer` from a config's `eval` section."""
    e = eval_cfg
    return {
        "mode": e.mode,
        "crop_size": e.crop_size,
        "stride": e.stride,
        "scales": e.scales,
        "flip": e.flip,
    }
