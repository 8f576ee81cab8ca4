"""Predict segmentation masks with a trained checkpoint: the `Predictor` API and folder runs.

    from gsag import Predictor
    predictor = Predictor("runs/demo/best.pt")
    mask = predictor.predict("cat.jpg")  # (H, W) int64 class indices

Masks are saved as palette PNGs whose pixel values are class indices (the VOC format), so a VOC
test-set prediction folder can be submitted to the evaluation server as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from gsag.atomic import atomic_path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
TTA_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)

ImageLike = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """Convert a path, PIL image, numpy array or tensor into an RGB uint8 array (H, W, 3).

    Accepted: a file path; a PIL image of any mode; a numpy array (H, W, 3) or (H, W), uint8 or
    float in [0, 1]; a tensor (3, H, W) or (1, 3, H, W), uint8 or float in [0, 1].
    """
    if isinstance(image, (str, os.PathLike)):
        from gsag.data.io import read_image

        return read_image(image)[0]
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(
                f"tensor image has shape {tuple(image.shape)}; expected (3, H, W) or (1, 3, H, W)"
            )
        image = t.permute(1, 2, 0).numpy()  # (H, W, 3)
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ValueError(
                f"array image has shape {image.shape}; expected (H, W, 3) RGB or (H, W) grayscale"
            )
        array = array[..., :3]
        if array.dtype == np.uint8:
            return np.ascontiguousarray(array)
        if np.issubdtype(array.dtype, np.floating):
            if array.size and (array.min() < 0.0 or array.max() > 1.0):
                raise ValueError(
                    f"float image values span {array.min():.3g}..{array.max():.3g}; "
                    "pass floats in [0, 1] or uint8 in [0, 255]"
                )
            return (array * 255.0 + 0.5).astype(np.uint8)
        raise ValueError(f"image dtype {array.dtype} is not supported; use uint8 or float")
    raise TypeError(f"cannot predict on {type(image).__name__}; pass a path, PIL, numpy or tensor")


def normalise(rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> normalised float tensor (1, 3, H, W).

    `mean`/`std` are on the [0, 1] scale (as ImageNet's), or on [0, 255] when any exceeds 1.
    """
    x = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)  # (3, H, W)
    scale = 1.0 if max(mean) > 1.0 else 255.0
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return ((x / scale - m) / s).unsqueeze(0)  # (1, 3, H, W)


class Predictor:
    """A trained model ready to segment single images.

    Args:
        checkpoint: a `.pt` checkpoint or `.safetensors` weights written by gsag.
        device: "cpu", "cuda", "cuda:1", ...
        mode: "whole" (one pass on the full image) or "slide" (overlapping crops).
        tta: flip + multi-scale test-time augmentation (`TTA_SCALES`).
        crop_size, stride: the window for "slide" mode (default: the training crop).
        amp: autocast, "auto" | "bf16" | "fp16" | "none" (default: the checkpoint config's
            `eval.amp`, else "auto": bf16 on a CUDA GPU that supports it, float32 on CPU).
        compile: "none" | "head" | "model" (default: the config's `eval.compile`, else none),
            with dynamic shapes so that images of new sizes do not recompile;
            `compile_seconds` tells the time spent compiling so far.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        device: str | torch.device = "cpu",
        mode: str = "whole",
        tta: bool = False,
        crop_size: int | None = None,
        stride: int | None = None,
        amp: str | None = None,
        compile: str | None = None,
    ) -> None:
        from gsag.engine.checkpoint import load_model

        model, info = load_model(checkpoint, map_location=device)
        self._setup(model, info, device, mode, tta, crop_size, stride)
        self._speed(amp, compile)

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        info: dict[str, Any],
        device: str | torch.device = "cpu",
        mode: str = "whole",
        tta: bool = False,
        crop_size: int | None = None,
        stride: int | None = None,
        amp: str | None = None,
        compile: str | None = None,
    ) -> Predictor:
        """Wrap a model already in memory; `info` as returned by `load_model`."""
        self = cls.__new__(cls)
        self._setup(model, info, device, mode, tta, crop_size, stride)
        self._speed(amp, compile)
        return self

    def _setup(self, model, info, device, mode, tta, crop_size, stride) -> None:
        if mode not in ("whole", "slide"):
            raise ValueError(f"mode {mode!r} is not one of 'whole', 'slide'")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.info = info
        self.classes: list[str] = list(info["classes"])
        self.palette: list[tuple[int, int, int]] = [tuple(c) for c in info["palette"]]
        self.mean = tuple(info.get("mean", (0.485, 0.456, 0.406)))
        self.std = tuple(info.get("std", (0.229, 0.224, 0.225)))
        self.mode = mode
        self.tta = tta
        eval_cfg = _eval_config(info.get("config"))
        self.crop_size = int(crop_size or eval_cfg.get("crop_size") or 512)
        self.stride = int(stride or eval_cfg.get("stride") or max(1, self.crop_size * 2 // 3))

    def _speed(self, amp: str | None, compile: str | None) -> None:
        """Autocast and compile settings; the model is compiled in place with dynamic shapes."""
        from gsag.engine.compile import CompileClock, apply_compile, resolve_amp

        eval_cfg = _eval_config(self.info.get("config"))
        self.amp = resolve_amp(amp or eval_cfg.get("amp") or "auto", self.device)
        self.compile = compile or eval_cfg.get("compile") or "none"
        apply_compile(self.model, self.compile, dynamic=True)
        self._clock = CompileClock(self.model)

    @property
    def compile_seconds(self) -> float:
        """Seconds spent compiling so far (first-call time minus steady time)."""
        return self._clock.compile_seconds

    def logits(self, image: ImageLike) -> torch.Tensor:
        """Class logits (1, C, H, W) at the image's own size."""
        from gsag.engine.evaluate import autocast, infer

        x = normalise(to_rgb_array(image), self.mean, self.std).to(self.device)
        kwargs: dict[str, Any] = {"crop_size": self.crop_size, "stride": self.stride}
        if self.tta:
            mode = "multiscale"
            kwargs.update(scales=TTA_SCALES, flip=True)
        else:
            mode = self.mode
        with torch.inference_mode(), autocast(self.device, self.amp):
            return infer(self._clock, x, mode=mode, **kwargs).float()

    def predict_proba(self, image: ImageLike) -> np.ndarray:
        """Class probabilities (C, H, W) float32."""
        return torch.softmax(self.logits(image).float(), dim=1)[0].cpu().numpy()

    def predict(self, image: ImageLike) -> np.ndarray:
        """Class indices (H, W) int64."""
        return self.logits(image).argmax(1)[0].cpu().numpy().astype(np.int64)


def _eval_config(config: Any) -> dict:
    """The `eval` section of a resolved config dict (empty when absent)."""
    section = config.get("eval") if isinstance(config, dict) else None
    return section if isinstance(section, dict) else {}


def overlay(
    rgb: np.ndarray, mask: np.ndarray, palette: Sequence[tuple[int, int, int]], alpha: float = 0.5
) -> Image.Image:
    """Blend the colour of each pixel's class over the image (alpha = weight of the colour)."""
    colours = np.zeros((256, 3), dtype=np.float32)
    colours[: len(palette)] = np.asarray(palette, dtype=np.float32)
    colour = colours[np.clip(mask, 0, 255)]  # (H, W, 3)
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * colour
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


def list_images(path: str | os.PathLike) -> list[Path]:
    """An image file, or the images directly inside a folder (sorted by name)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input {path} does not exist; pass an image file or a folder")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(
            f"no images in {path} (looked for {' '.join(IMAGE_EXTENSIONS)}); "
            "pass a folder of images or one image file"
        )
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise ValueError(
                f"{f} and {stems[f.stem]} would both write {f.stem}.png; rename one of them"
            )
        stems[f.stem] = f
    return files


def _save_image(image: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp)


def _save_npy(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, array)


@dataclass
class PredictOutputs:
    """Where the predictions of one image were written."""

    image: Path
    mask: Path
    overlay: Path | None = None
    probs: Path | None = None


def predict_files(
    predictor: Predictor,
    files: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    overlays: bool = True,
    probs: bool = False,
    on_image: Callable[[PredictOutputs], None] | None = None,
) -> list[PredictOutputs]:
    """Predict each file and write `masks/<stem>.png` (palette PNG of class indices),
    `overlays/<stem>.png` and, with `probs`, `probs/<stem>.npy` (float16, (C, H, W)).
    """
    from gsag.data.io import save_mask

    out = Path(out_dir)
    written = []
    for file in files:
        file = Path(file)
        rgb = to_rgb_array(file)
        logits = predictor.logits(rgb)  # (1, C, H, W)
        mask = logits.argmax(1)[0].cpu().numpy()  # (H, W)
        result = PredictOutputs(image=file, mask=out / "masks" / f"{file.stem}.png")
        save_mask(result.mask, mask, predictor.palette)
        if overlays:
            result.overlay = out / "overlays" / f"{file.stem}.png"
            _save_image(overlay(rgb, mask, predictor.palette), result.overlay)
        if probs:
            result.probs = out / "probs" / f"{file.stem}.npy"
            p = torch.softmax(logits.float(), dim=1)[0].cpu().numpy().astype(np.float16)
            _save_npy(p, result.probs)
        written.append(result)
        if on_image is not None:
            on_image(result)
    return written
