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
one-line notice on the `gsag.engine.evaluate` logger, so huge images never try to allocate the
whole forward pass at once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler

from gsag.atomic import atomic_path, write_json, write_text
from gsag.config import DEFAULT_MAX_PIXELS, DEFAULT_SCALES, EVAL_MODES
from gsag.data.sizes import pair
from gsag.errors import OptionError
from gsag.metrics import ConfusionMatrix

if TYPE_CHECKING:
    from gsag.data.base import SegmentationDataset

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
    return out / (len(use_scales) * passes)


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
        mode, crop_size, stride, scales, flip: see `infer`.
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
    loader = DataLoader(
        dataset,
        batch_size=None,
        sampler=sampler,
        num_workers=num_workers,
        generator=torch.Generator(),
    )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, ignore_index)
    samples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    done = 0
    for images, masks in size_batches(loader, batch_size):
        images = images.to(device, non_blocking=True)  # (B, 3, H, W)
        masks = masks.to(device, non_blocking=True)  # (B, H', W')
        with autocast(device, amp):
            logits = infer(model, images, mode, crop_size, stride, scales, flip, window, max_pixels)
        if logits.shape[-2:] != masks.shape[-2:]:
            logits = F.interpolate(
                logits, size=masks.shape[-2:], mode="bilinear", align_corners=False
            )
        pred = logits.argmax(1)  # (B, H', W')
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


def autocast(device: torch.device, amp: str):
    """Autocast context for `amp` ("none" gives a null context; "auto" as `resolve_amp`)."""
    from gsag.engine.compile import resolve_amp

    amp = resolve_amp(amp, device)
    if amp == "none":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return torch.autocast(device_type=device.type, dtype=dtype)


def metrics_table(metrics: dict[str, Any], classes: Sequence[str]) -> str:
    """Markdown table of per-class IoU and accuracy, then the summary metrics (percent)."""
    lines = ["| class | IoU | Acc |", "| --- | ---: | ---: |"]
    for name, iou, acc in zip(classes, metrics["IoU"], metrics["Acc"], strict=True):
        lines.append(f"| {name} | {fmt_pct(iou)} | {fmt_pct(acc)} |")
    lines += [
        "",
        "| mIoU | aAcc | mAcc | FWIoU |",
        "| ---: | ---: | ---: | ---: |",
        f"| {fmt_pct(metrics['mIoU'])} | {fmt_pct(metrics['aAcc'])} | {fmt_pct(metrics['mAcc'])} "
        f"| {fmt_pct(metrics['FWIoU'])} |",
    ]
    return "\n".join(lines) + "\n"


def settings_table(settings: dict[str, Any]) -> str:
    """What an evaluation covered, as a Markdown table above its metrics (None values left out)."""
    lines = ["| setting | value |", "| --- | --- |"]
    for key, value in settings.items():
        if value is not None:
            lines.append(f"| {key} | {value} |")
    return "\n".join(lines) + "\n\n"


def fmt_pct(value: float | None, digits: int = 2) -> str:
    """A fraction as percent with `digits` decimals ('45.31'); '–' for None or NaN."""
    return "–" if value is None or math.isnan(value) else f"{100 * value:.{digits}f}"


def write_report(
    metrics: dict[str, Any],
    classes: Sequence[str],
    out_dir: str | os.PathLike,
    extra: dict | None = None,
) -> dict[str, Path]:
    """Write metrics.json, metrics.md and confusion.png into `out_dir` (atomically each).

    `extra` goes into metrics.json; its "settings" (checkpoint, mode, crop, ...) also head
    metrics.md as a table.

    Returns:
        {"json": path, "markdown": path, "plot": path}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in metrics.items() if k != "samples"}
    data["classes"] = list(classes)
    data["IoU_by_class"] = dict(zip(classes, metrics["IoU"], strict=True))
    if extra:
        data.update(extra)
    paths = {
        "json": out / "metrics.json",
        "markdown": out / "metrics.md",
        "plot": out / "confusion.png",
    }
    write_json(paths["json"], data)
    settings = (extra or {}).get("settings")
    head = settings_table(settings) if settings else ""
    write_text(paths["markdown"], head + metrics_table(metrics, classes))
    save_confusion_plot(metrics["confusion"], classes, paths["plot"])
    return paths


#: confusion matrices up to this many classes show their values in the cells
MAX_ANNOTATED_CLASSES = 30


def confusion_labels(norm: torch.Tensor) -> dict[tuple[int, int], str]:
    """Cell texts of a row-normalised confusion matrix (n, n): percent without decimals, "<1"
    for a small non-zero share, nothing for an empty cell."""
    labels = {}
    for i, row in enumerate(norm.tolist()):
        for j, value in enumerate(row):
            if value > 0:
                labels[(i, j)] = f"{100 * value:.0f}" if value >= 0.005 else "<1"
    return labels


def save_confusion_plot(confusion: Sequence[Sequence[int]], classes: Sequence[str], path) -> None:
    """Row-normalised confusion matrix (true class per row) as a PNG, written atomically; the
    cells show their percentages (up to `MAX_ANNOTATED_CLASSES` classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mat = torch.tensor(confusion, dtype=torch.float64)
    norm = mat / mat.sum(1, keepdim=True).clamp(min=1)
    n = len(classes)
    size = max(4.0, 0.4 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(100 * norm.numpy(), cmap="Blues", vmin=0, vmax=100)  # % like the cells
    ax.set_xticks(range(n), classes, rotation=90)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046, label="%")
    if n <= MAX_ANNOTATED_CLASSES:
        for (i, j), text in confusion_labels(norm).items():
            dark = float(norm[i, j]) > 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")  # fmt: skip
    ax.set_title("confusion (% of each true class's pixels)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
