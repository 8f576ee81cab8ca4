"""Export a segmentation model to ONNX (dynamic batch, height, width) or a `torch.export` program.

The exported graph takes a normalised float image batch `(B, 3, H, W)` and returns the main
logits `(B, C, H, W)`; the auxiliary head is not part of it (models are exported in eval mode).
`check_onnx` runs the ONNX file with onnxruntime at sizes other than the export size and compares
against PyTorch.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gsag.atomic import atomic_path
from gsag.config import DEFAULT_OPSET
from gsag.errors import UsageError


class OnnxExportError(UsageError):
    """The model cannot be exported to ONNX (an operator of its backbone has no ONNX form)."""


INPUT_NAME = "image"
OUTPUT_NAME = "logits"


class LogitsOnly(nn.Module):
    """Wraps a segmentor so that `forward` returns the tensor `out` instead of a dict."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]  # (B, C, H, W)


@dataclass
class OnnxCheck:
    """The result of comparing onnxruntime and PyTorch logits on one input batch."""

    shape: tuple[int, int, int, int]
    max_abs_diff: float
    argmax_agreement: float

    def as_dict(self) -> dict:
        return asdict(self)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    height: int = 512,
    width: int = 512,
    batch: int = 2,
    opset: int = DEFAULT_OPSET,
    dynamo: bool = False,
) -> Path:
    """Export `model` to an ONNX file with dynamic batch, height and width.

    The TorchScript exporter (`dynamo=False`) is the default: it exports every gsag model,
    including the SDPA attention, as one self-contained file. `dynamo=True` uses the newer
    `torch.export`-based exporter.

    Args:
        model: a gsag segmentor (its `forward` returns a dict with "out").
        path: output `.onnx` file; written atomically.
        height, width, batch: the example input used for tracing. Any other size works at run
            time; batch 2 avoids the exporter specialising on a batch of one.
        opset: ONNX opset (>= 14 for scaled_dot_product_attention).
        dynamo: use the `torch.export`-based exporter instead of the TorchScript one.

    Returns:
        The path written.
    """
    try:
        return _export_onnx(model, Path(path), height, width, batch, opset, dynamo)
    except torch.onnx.errors.UnsupportedOperatorError as err:
        backbone = getattr(getattr(model, "backbone", None), "name", "this model")
        raise OnnxExportError(
            f"{backbone} cannot be exported to ONNX with dynamic height and width: "
            f"{str(err).splitlines()[0]} (a plain ViT resizes its position embeddings with "
            "antialiased bicubic interpolation). Fix: export a torch.export program "
            "(`gsag export --format torch`, a .pt2 file) or pick a backbone whose family exports "
            "(docs/model.md lists them)"
        ) from err


def _export_onnx(
    model: nn.Module, path: Path, height: int, width: int, batch: int, opset: int, dynamo: bool
) -> Path:
    wrapped = LogitsOnly(model).eval()
    example = torch.randn(batch, 3, height, width)
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            dim = torch.export.Dim
            torch.onnx.export(
                wrapped,
                (example,),
                str(tmp),
                dynamo=True,
                external_data=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=max(opset, 18),
                dynamic_shapes={"x": {0: dim("batch"), 2: dim("height"), 3: dim("width")}},
            )
        else:
            axes = {0: "batch", 2: "height", 3: "width"}
            kwargs: dict[str, Any] = {"dynamo": False} if _onnx_export_has_dynamo_flag() else {}
            torch.onnx.export(
                wrapped,
                (example,),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
                do_constant_folding=True,
                **kwargs,
            )
    return path


def _onnx_export_has_dynamo_flag() -> bool:
    import inspect

    return "dynamo" in inspect.signature(torch.onnx.export).parameters


def check_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    inputs: list[torch.Tensor] | None = None,
    sizes: tuple[tuple[int, int, int], ...] = ((1, 97, 130), (3, 64, 80)),
    seed: int = 0,
) -> list[OnnxCheck]:
    """Run the ONNX file with onnxruntime and compare its logits with PyTorch's.

    Args:
        model: the PyTorch model that was exported.
        path: the `.onnx` file.
        inputs: normalised image batches `(B, 3, H, W)` to compare on (e.g. real test images).
            When None, random batches of `sizes` (batch, height, width) are used.
        sizes: sizes of the random batches; pick sizes other than the export size.
        seed: seed for the random batches.

    Returns:
        One `OnnxCheck` per batch: the max absolute logit difference and the fraction of pixels
        whose argmax class agrees.
    """
    import onnxruntime as ort

    if inputs is None:
        gen = torch.Generator().manual_seed(seed)
        inputs = [torch.randn(b, 3, h, w, generator=gen) for b, h, w in sizes]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapped = LogitsOnly(model).eval()
    checks = []
    for x in inputs:
        with torch.inference_mode():
            ref = wrapped(x).float()  # (B, C, H, W)
        got = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])
        if got.shape != ref.shape:
            raise RuntimeError(
                f"{path}: onnxruntime returned shape {tuple(got.shape)} for input "
                f"{tuple(x.shape)}, PyTorch {tuple(ref.shape)}; re-export with dynamic axes"
            )
        agree = (got.argmax(1) == ref.argmax(1)).float().mean().item()
        diff = (got - ref).abs().max().item()
        b, c, h, w = x.shape
        checks.append(OnnxCheck((b, c, h, w), diff, agree))
    return checks


def export_program(
    model: nn.Module,
    path: str | os.PathLike,
    height: int = 512,
    width: int = 512,
    batch: int = 2,
) -> Path:
    """Export with `torch.export` (dynamic batch, height, width) and save a `.pt2` file.

    Load it back with `torch.export.load(path).module()`. On torch >= 2.5 the dimensions are
    `Dim.AUTO` (export infers their valid ranges); on torch 2.4 height and width must be
    multiples of 8.

    Raises:
        Whatever `torch.export.export` raises when a model cannot be captured.
    """
    path = Path(path)
    dim = torch.export.Dim
    example = torch.randn(batch, 3, height, width)
    if hasattr(dim, "AUTO"):  # torch >= 2.5: let export infer the valid ranges
        shapes = {"x": {0: dim.AUTO, 2: dim.AUTO, 3: dim.AUTO}}
    else:  # torch 2.4: height and width must be multiples of 8
        shapes = {
            "x": {
                0: dim("batch", min=1, max=1024),
                2: 8 * dim("height_8", min=4, max=1024),
                3: 8 * dim("width_8", min=4, max=1024),
            }
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(LogitsOnly(model).eval(), (example,), dynamic_shapes=shapes)
    with atomic_path(path) as tmp:
        try:
            torch.export.save(program, str(tmp))
        except Exception as err:
            raise RuntimeError(
                f"torch.export captured the model but could not save it to {path} "
                f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); some timm backbones "
                "(e.g. the 'd' variants' same-padding pools) compute shapes with math.ceil, "
                "which the program format cannot store: export to ONNX instead"
            ) from err
    return path
