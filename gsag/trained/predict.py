"""Predict segmentation masks with a trained checkpoint: the `Predictor` API and folder runs.

    from gsag import Predictor
    predictor = Predictor("runs/demo/best.pt")
    mask = predictor.predict("cat.jpg")  # (H, W) int64 class indices

Masks are saved as palette PNGs whose pixel values are class indices (the VOC, ADE20K and
PASCAL-Context format), so a test-set prediction folder can be submitted as it is. Models trained
on a dataset whose evaluation wants other ids (Cityscapes: labelIds) carry `prediction_ids` in
their checkpoint, and their masks are written as 8-bit grayscale PNGs of those ids.
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
from gsag.config import DEFAULT_MAX_PIXELS, DEFAULT_SCALES, EVAL_MODES
from gsag.data.io import IMAGE_SUFFIXES, image_to_rgb, read_image, save_mask
from gsag.errors import OptionError
from gsag.trained.draw import overlay_figure, save_figure
from gsag.trained.load import as_source, load_trained_model
from gsag.trained.meta import complete_meta

ImageLike = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """Convert a path, PIL image, numpy array or tensor into an RGB uint8 array (H, W, 3).

    Accepted: a file path; a PIL image of any mode; a numpy array (H, W, 3), (H, W, 4) or (H, W),
    uint8 or float in [0, 1]; a tensor (3, H, W) or (1, 3, H, W), uint8 or float in [0, 1].
    Files and PIL images are turned upright by their EXIF orientation; transparent pixels (files,
    PIL images, (H, W, 4) arrays) are composited onto `gsag.data.io.BACKGROUND_RGB`.
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)[0]
    if isinstance(image, Image.Image):
        return image_to_rgb(image)[0]
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
        if np.issubdtype(array.dtype, np.floating):
            if array.size and (array.min() < 0.0 or array.max() > 1.0):
                raise ValueError(
                    f"float image values span {array.min():.3g}..{array.max():.3g}; "
                    "pass floats in [0, 1] or uint8 in [0, 255]"
                )
            array = (array * 255.0 + 0.5).astype(np.uint8)
        if array.dtype != np.uint8:
            raise ValueError(f"image dtype {array.dtype} is not supported; use uint8 or float")
        if array.shape[2] == 4:  # RGBA: transparent pixels onto the neutral background
            return to_rgb_array(Image.fromarray(np.ascontiguousarray(array), "RGBA"))
        return np.ascontiguousarray(array)
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
        checkpoint: a `.pt` checkpoint or `.safetensors` weights written by gsag, a folder
            written by `gsag.save_pretrained`, or `hf://owner/name[@revision]` on the Hub.
        device: "cpu", "cuda", "cuda:1", ...
        mode: "whole" (one pass on the full image), "slide" (overlapping crops) or "multiscale"
            (one pass per scale in `scales`).
        tta: shorthand for multi-scale (`DEFAULT_SCALES` unless `scales` is given) + flip; with
            mode "slide" every scale runs as sliding windows.
        crop_size, stride: the sliding window (default: the checkpoint's eval config).
        scales: scale factors; given with mode "whole" or "slide" they make it multi-scale (with
            "slide", sliding windows at each scale).
        flip: add horizontally flipped passes.
        max_pixels: whole-image passes on more pixels use sliding windows (see
            `gsag.engine.infer.infer`).
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
        crop_size: int | Sequence[int] | None = None,
        stride: int | Sequence[int] | None = None,
        scales: Sequence[float] | None = None,
        flip: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        amp: str | None = None,
        compile: str | None = None,
    ) -> None:
        _check_mode(mode)  # before the checkpoint loads
        model, meta = load_trained_model(checkpoint, map_location=device)
        self._setup(model, meta, device, mode, tta, crop_size, stride, scales, flip, max_pixels)
        self._speed(amp, compile)

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        meta: dict[str, Any],
        device: str | torch.device = "cpu",
        **options: Any,
    ) -> Predictor:
        """Wrap a model already in memory; `meta` as returned by `load_model` (what it lacks is
        taken from the model, see `gsag.trained.meta.complete_meta`); `options` as for the
        constructor (mode, tta, crop_size, stride, scales, flip, max_pixels, amp, compile)."""
        self = cls.__new__(cls)
        amp, compile = options.pop("amp", None), options.pop("compile", None)
        meta = complete_meta(model, meta, where="Predictor.from_model")
        self._setup(model, meta, device, **options)
        self._speed(amp, compile)
        return self

    @classmethod
    def from_pretrained(
        cls,
        repo_id_or_folder: str | os.PathLike,
        revision: str | None = None,
        device: str | torch.device = "cpu",
        token: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        **options: Any,
    ) -> Predictor:
        """A predictor for a model shared with `gsag push` / `gsag.save_pretrained`.

        Args:
            repo_id_or_folder: "owner/name" or "hf://owner/name[@revision]" on the Hugging Face
                Hub (fetched into its cache; HF_HUB_OFFLINE=1 uses the cache alone), or a local
                pretrained folder. Only its model.safetensors is loaded, never pickled weights.
            revision: a branch, tag or commit of the repo.
            token: for private repos (default: HF_TOKEN or `hf auth login`'s).
            options: as for the constructor (mode, tta, crop_size, stride, ...).
        """
        _check_mode(options.get("mode", "whole"))
        source = as_source(repo_id_or_folder)
        model, meta = load_trained_model(source, device, revision, token, cache_dir)
        return cls.from_model(model, meta, device=device, **options)

    def _setup(
        self,
        model: nn.Module,
        meta: dict[str, Any],
        device: str | torch.device,
        mode: str = "whole",
        tta: bool = False,
        crop_size: int | Sequence[int] | None = None,
        stride: int | Sequence[int] | None = None,
        scales: Sequence[float] | None = None,
        flip: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        from gsag.engine.infer import check_inference_options, resolve_mode

        _check_mode(mode)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.meta = meta
        self.classes: list[str] = list(meta["classes"])
        self.palette: list[tuple[int, int, int]] = [tuple(c) for c in meta["palette"]]
        self.mean = tuple(meta["mean"])  # checked where the meta came from
        self.std = tuple(meta["std"])
        eval_cfg = _eval_config(meta.get("config"))
        self.crop_size = crop_size or eval_cfg.get("crop_size") or 512  # int or [h, w]
        default_stride = [max(1, c * 2 // 3) for c in np.atleast_1d(self.crop_size).tolist()]
        self.stride = stride or eval_cfg.get("stride") or default_stride
        #: value written for each class index (Cityscapes: its labelId); None: the index itself
        self.prediction_ids: list[int] | None = meta.get("prediction_ids")
        self.mode, self.window = resolve_mode(mode, bool(scales), tta)
        self.scales = tuple(
            scales or (DEFAULT_SCALES if tta else eval_cfg.get("scales") or DEFAULT_SCALES)
        )
        self.flip = bool(flip or tta)
        self.max_pixels = max_pixels
        check_inference_options(self.mode, self.crop_size, self.stride, self.scales, self.window)

    def _speed(self, amp: str | None, compile: str | None) -> None:
        """Autocast and compile settings; the model is compiled in place with dynamic shapes."""
        from gsag.engine.compile import CompileClock, apply_compile, resolve_amp

        eval_cfg = _eval_config(self.meta.get("config"))
        self.amp = resolve_amp(amp or eval_cfg.get("amp") or "auto", self.device)
        self.compile = compile or eval_cfg.get("compile") or "none"
        apply_compile(self.model, self.compile, dynamic=True)
        self._clock = CompileClock(self.model)

    @property
    def compile_seconds(self) -> float:
        """Seconds spent compiling so far (first-call time minus steady time)."""
        return self._clock.compile_seconds

    def logits(
        self, image: ImageLike, progress: Callable[[int, int], None] | None = None
    ) -> torch.Tensor:
        """Class logits (1, C, H, W) at the image's own size; `progress(done, total)` is called
        after each forward pass (one per scale, flip and window)."""
        from gsag.engine.compile import autocast
        from gsag.engine.infer import infer

        x = normalise(to_rgb_array(image), self.mean, self.std).to(self.device)
        with torch.inference_mode(), autocast(self.device, self.amp):
            return infer(
                self._clock,
                x,
                mode=self.mode,
                crop_size=self.crop_size,
                stride=self.stride,
                scales=self.scales,
                flip=self.flip,
                window=self.window,
                max_pixels=self.max_pixels,
                progress=progress,
            ).float()

    def predict_proba(self, image: ImageLike) -> np.ndarray:
        """Class probabilities (C, H, W) float32."""
        return torch.softmax(self.logits(image), dim=1)[0].cpu().numpy()

    def predict(self, image: ImageLike) -> np.ndarray:
        """Class indices (H, W) int64."""
        return self.logits(image).argmax(1)[0].cpu().numpy().astype(np.int64)


def _check_mode(mode: str) -> None:
    if mode not in EVAL_MODES:
        raise OptionError(f"mode {mode!r} is not one of {', '.join(EVAL_MODES)}")


def _eval_config(config: Any) -> dict:
    """The `eval` section of a checkpoint's resolved config dict (empty when absent), its
    values checked against their rules (`gsag.config.RULES`)."""
    from gsag.config import RULES, check_value

    section = config.get("eval") if isinstance(config, dict) else None
    section = section if isinstance(section, dict) else {}
    for key, value in section.items():
        if f"eval.{key}" in RULES:
            check_value(f"eval.{key}", value, "the checkpoint's config")
    return section


def list_images(path: str | os.PathLike) -> list[Path]:
    """An image file, or the images directly inside a folder (sorted by name)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input {path} does not exist; pass an image file or a folder")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(
            f"no images in {path} (looked for {' '.join(IMAGE_SUFFIXES)}); "
            "pass a folder of images or one image file"
        )
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise OptionError(
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


def save_prediction(path: Path, mask: np.ndarray, predictor: Predictor) -> None:
    """Write a predicted mask (H, W) of class indices in its dataset's evaluation format: a
    palette PNG of the indices, or, with `predictor.prediction_ids`, a grayscale PNG of the ids
    (Cityscapes trainId -> labelId)."""
    if predictor.prediction_ids is None:
        save_mask(path, mask, predictor.palette)
        return
    ids = np.asarray(predictor.prediction_ids, dtype=np.uint8)[mask]  # (H, W)
    _save_image(Image.fromarray(ids), path)  # 8-bit grayscale ("L")


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
    on_pass: Callable[[int, int], None] | None = None,
) -> list[PredictOutputs]:
    """Predict each file and write `masks/<stem>.png` (see `save_prediction`),
    `overlays/<stem>.png` (the prediction over the image with a class legend under it:
    `gsag.trained.draw.overlay_figure`) and, with `probs`, `probs/<stem>.npy` (float16, (C, H, W)).

    `on_image(outputs)` is called after each image, `on_pass(done, total)` after each forward
    pass within an image (scales x flips x windows).
    """
    out = Path(out_dir)
    written = []
    for file in files:
        file = Path(file)
        rgb = to_rgb_array(file)
        logits = predictor.logits(rgb, progress=on_pass)  # (1, C, H, W)
        mask = logits.argmax(1)[0].cpu().numpy()  # (H, W)
        result = PredictOutputs(image=file, mask=out / "masks" / f"{file.stem}.png")
        save_prediction(result.mask, mask, predictor)
        if overlays:
            result.overlay = out / "overlays" / f"{file.stem}.png"
            figure = overlay_figure(rgb, mask, predictor.classes, predictor.palette)
            save_figure(figure, result.overlay, tight=False)
        if probs:
            result.probs = out / "probs" / f"{file.stem}.npy"
            p = torch.softmax(logits.float(), dim=1)[0].cpu().numpy().astype(np.float16)
            _save_npy(p, result.probs)
        written.append(result)
        if on_image is not None:
            on_image(result)
    return written
