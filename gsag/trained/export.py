"""Export a segmentation model to ONNX (dynamic batch, height, width) or a `torch.export` program.

The exported graph takes a normalised float image batch `(B, 3, H, W)` and returns the main
logits `(B, C, H, W)`; the auxiliary head is not part of it (models are exported in eval mode).
`check_onnx` (onnxruntime) and `check_program` (the loaded `.pt2`) run the export at sizes other
than the export size and compare against PyTorch.

Both formats carry the preprocessing and class metadata of `export_metadata` (string keys and
string values): ONNX in the model's `metadata_props`, `.pt2` in the extra file `gsag.json`.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gsag.atomic import atomic_path
from gsag.config import DEFAULT_OPSET
from gsag.engine.infer import check_finite
from gsag.errors import ExportError, UsageError


class OnnxExportError(UsageError):
    """The model cannot be exported to ONNX (an operator of its backbone has no ONNX form)."""


INPUT_NAME = "image"
OUTPUT_NAME = "logits"
#: The `.pt2` extra file holding `export_metadata` (`torch.export.load(..., extra_files=...)`).
PT2_METADATA = "gsag.json"
#: The output suffix of each export format.
SUFFIXES = {".onnx": "onnx", ".pt2": "torch"}


class LogitsOnly(nn.Module):
    """Wraps a segmentor so that `forward` returns the tensor `out` instead of a dict."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]  # (B, C, H, W)


def export_metadata(meta: dict[str, Any], model_args: dict[str, Any]) -> dict[str, str]:
    """What a user of an exported file needs besides the graph, as strings (JSON for lists).

    Args:
        meta: the checkpoint's meta from `load_model`, or for an untrained model its backbone's
            mean and std alone (no class names).
        model_args: the model's constructor arguments (`model.model_args`).
    """
    from gsag.version import __version__

    mean, std = [float(v) for v in meta["mean"]], [float(v) for v in meta["std"]]
    scale = "0-255" if max(mean) > 1.0 else "0-1 (uint8 pixel / 255)"
    out: dict[str, str] = {
        "gsag_version": __version__,
        "input": f"float32 (B, 3, H, W) named {INPUT_NAME!r}, any H and W: (pixel - mean) / std",
        "input_channel_order": "RGB",
        "input_range": scale,
        "mean": json.dumps(mean),
        "std": json.dumps(std),
        "output": f"float32 logits (B, C, H, W) named {OUTPUT_NAME!r}; class = argmax over C",
        "model_args": json.dumps(model_args, sort_keys=True, default=str),
    }
    if "classes" in meta:
        out["classes"] = json.dumps(list(meta["classes"]))
        out["palette"] = json.dumps([list(map(int, c)) for c in meta["palette"]])
        out["ignore_index"] = str(int(meta["ignore_index"]))
    return out


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `metadata_props` of an ONNX file as a dict (the graph itself is not loaded)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def read_program_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `export_metadata` stored in a `.pt2` file ({} when it has none)."""
    extra = {PT2_METADATA: ""}
    torch.export.load(str(path), extra_files=extra)
    return json.loads(extra[PT2_METADATA]) if extra[PT2_METADATA] else {}


def format_of(path: str | os.PathLike) -> str:
    """ "onnx" or "torch" from the file's suffix; a `UsageError` for any other suffix."""
    from gsag.errors import UsageError

    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise UsageError(
            f"--out {path}: unknown suffix {suffix or '(none)'!r}; use .onnx (ONNX) or .pt2 "
            "(torch.export program)"
        )
    return SUFFIXES[suffix]


@dataclass
class OnnxCheck:
    """The result of comparing an export's logits (onnxruntime or `.pt2`) with PyTorch's on one
    input batch."""

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
    metadata: dict[str, str] | None = None,
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
        metadata: string pairs for the model's `metadata_props` (see `export_metadata`).

    Returns:
        The path written.
    """
    try:
        return _export_onnx(model, Path(path), height, width, batch, opset, dynamo, metadata)
    except torch.onnx.errors.UnsupportedOperatorError as err:
        backbone = getattr(getattr(model, "backbone", None), "name", "this model")
        raise OnnxExportError(
            f"{backbone} cannot be exported to ONNX with dynamic height and width: "
            f"{str(err).splitlines()[0]} (a plain ViT resizes its position embeddings with "
            "antialiased bicubic interpolation). Fix: export a torch.export program "
            "(`gsag export CHECKPOINT --out model.pt2`) or pick a backbone whose family exports "
            "(docs/model.md lists them)"
        ) from err


def _export_onnx(
    model: nn.Module,
    path: Path,
    height: int,
    width: int,
    batch: int,
    opset: int,
    dynamo: bool,
    metadata: dict[str, str] | None,
) -> Path:
    wrapped = LogitsOnly(model).eval()
    example = torch.randn(batch, 3, height, width, device=_device(model))
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
        if metadata:
            _set_onnx_metadata(tmp, metadata)
    return path


def _set_onnx_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Replace the `metadata_props` of the ONNX file at `path` by `metadata`."""
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, metadata)
    onnx.save(proto, str(path))


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


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

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])

    return _compare(model, run, f"{path}: onnxruntime", inputs, sizes, seed)


def check_program(
    model: nn.Module,
    path: str | os.PathLike,
    inputs: list[torch.Tensor] | None = None,
    sizes: tuple[tuple[int, int, int], ...] = ((1, 97, 130), (3, 64, 80)),
    seed: int = 0,
) -> list[OnnxCheck]:
    """Load the `.pt2` program and compare its logits with PyTorch's, as `check_onnx` does.

    The random `sizes` are rounded up to `program_size_multiple()` (torch 2.4's programs take
    only multiples of 8 in height and width)."""
    program = torch.export.load(str(path)).module()
    m = program_size_multiple()
    sizes = tuple((b, -(-h // m) * m, -(-w // m) * m) for b, h, w in sizes)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return program(x.to(_device(model))).float()

    return _compare(model, run, f"{path}: the loaded program", inputs, sizes, seed)


def _compare(model, run, what, inputs, sizes, seed) -> list[OnnxCheck]:
    """`run(x)` against the PyTorch model on `inputs`, else on random batches of `sizes`."""
    if inputs is None:
        gen = torch.Generator().manual_seed(seed)
        inputs = [torch.randn(b, 3, h, w, generator=gen) for b, h, w in sizes]
    wrapped = LogitsOnly(model).eval()
    device = _device(model)
    checks = []
    for x in inputs:
        with torch.inference_mode():
            ref = wrapped(x.to(device)).float().cpu()  # (B, C, H, W)
        got = run(x).cpu()
        if got.shape != ref.shape:
            raise ExportError(
                f"{what} returned shape {tuple(got.shape)} for input "
                f"{tuple(x.shape)}, PyTorch {tuple(ref.shape)}; re-export with dynamic axes"
            )
        b, c, h, w = x.shape
        where = f"a {w}x{h} input"
        check_finite(ref, f"PyTorch on {where}", "the model is broken, so is its export")
        check_finite(got, f"{what} on {where}", "the export does not compute what PyTorch does")
        agree = (got.argmax(1) == ref.argmax(1)).float().mean().item()
        diff = (got - ref).abs().max().item()
        checks.append(OnnxCheck((b, c, h, w), diff, agree))
    return checks


def program_size_multiple() -> int:
    """What the height and width given to an `export_program` file must be a multiple of: 1 on
    torch >= 2.5 (`Dim.AUTO`), 8 on torch 2.4 (a dimension there is declared as 8 * Dim)."""
    return 1 if hasattr(torch.export.Dim, "AUTO") else 8


def export_program(
    model: nn.Module,
    path: str | os.PathLike,
    height: int = 512,
    width: int = 512,
    batch: int = 2,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Export with `torch.export` (dynamic batch, height, width) and save a `.pt2` file.

    Load it back with `torch.export.load(path).module()`; `metadata` (see `export_metadata`) goes
    into the extra file `PT2_METADATA` (`read_program_metadata`). On torch >= 2.5 the dimensions are
    `Dim.AUTO` (export infers their valid ranges); on torch 2.4 height and width must be
    multiples of 8.

    Raises:
        Whatever `torch.export.export` raises when a model cannot be captured.
    """
    path = Path(path)
    dim = torch.export.Dim
    example = torch.randn(batch, 3, height, width, device=_device(model))
    if hasattr(dim, "AUTO"):  # torch >= 2.5: let export infer the valid ranges
        shapes = {"x": {0: dim.AUTO, 2: dim.AUTO, 3: dim.AUTO}}
    else:  # torch 2.4: height and width must be multiples of 8
        m = program_size_multiple()
        shapes = {
            "x": {
                0: dim("batch", min=1, max=1024),
                2: m * dim("height_m", min=4, max=1024),
                3: m * dim("width_m", min=4, max=1024),
            }
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(LogitsOnly(model).eval(), (example,), dynamic_shapes=shapes)
    with atomic_path(path) as tmp:
        try:
            extra = {PT2_METADATA: json.dumps(metadata)} if metadata else None
            torch.export.save(program, str(tmp), extra_files=extra)
        except Exception as err:
            raise ExportError(
                f"torch.export captured the model but could not save it to {path} "
                f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); some timm backbones "
                "(e.g. the 'd' variants' same-padding pools) compute shapes with math.ceil, "
                "which the program format cannot store: export to ONNX instead"
            ) from err
    return path
