"""`gsag export`: a checkpoint (or an untrained model by name) to ONNX or a torch.export program."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from gsag.commands import (
    CHECKPOINT_HELP,
    add_device_argument,
    add_path_argument,
    add_quiet_argument,
    bounded,
    check_output,
)
from gsag.config import DEFAULT_OPSET, MAX_CLASSES, MAX_SIDE, MIN_INPUT

HELP = (
    "export a model to ONNX (dynamic batch/height/width) or torch.export, checked against PyTorch"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_path_argument(parser, "checkpoint", CHECKPOINT_HELP)
    parser.add_argument("--model", help="export an untrained model by name (see `gsag models`)")
    parser.add_argument("--backbone", default="resnet50", help="backbone for --model")
    parser.add_argument(
        "--num-classes",
        type=bounded(int, 1, "classes", "--num-classes 21", high=MAX_CLASSES),
        default=21,
        help="classes for --model",
    )
    parser.add_argument(
        "--out", required=True, help="output file: .onnx (ONNX) or .pt2 (torch.export program)"
    )
    side = bounded(int, MIN_INPUT, "size", "--height 512", high=MAX_SIDE)
    parser.add_argument("--height", type=side, default=512, help="example input height")
    parser.add_argument("--width", type=side, default=512, help="example input width")
    parser.add_argument(
        "--opset",
        type=bounded(int, 14, "opset", f"--opset {DEFAULT_OPSET}", high=20),
        default=DEFAULT_OPSET,
        help="ONNX opset, 14 to 20 (default %(default)s)",
    )
    parser.add_argument(
        "--dynamo", action="store_true", help="use the torch.export-based ONNX exporter"
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip the comparison with PyTorch (onnxruntime, or the loaded .pt2 program)",
    )
    parser.add_argument(
        "--check-images",
        help="folder of images to compare on (default: random inputs at two other sizes)",
    )
    parser.add_argument(
        "--min-agreement",
        type=bounded(float, 0, "min agreement", "--min-agreement 0.999", high=1),
        default=0.999,
        help="fail when fewer pixels than this share the argmax class (default 0.999)",
    )
    parser.add_argument("--format", choices=["onnx", "torch"], help=argparse.SUPPRESS)  # old
    add_device_argument(parser)
    add_quiet_argument(parser)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from gsag.errors import UsageError
    from gsag.trained import export

    args.checkpoint = args.checkpoint or args.checkpoint_option
    if bool(args.checkpoint) == bool(args.model):
        raise UsageError(
            "gsag export: give exactly one of a checkpoint (positional or --checkpoint) and "
            "--model NAME"
        )
    fmt = export.format_of(args.out)  # an unknown suffix is refused before any work
    if args.format not in (None, fmt):
        raise UsageError(f"--format {args.format} does not match --out {args.out}; drop --format")
    check_output(args.out, "--out", file=True)
    model, meta = _load(args)
    metadata = export.export_metadata(meta, model.model_args)
    with _status(args.quiet, f"exporting to {args.out} ..."), _export_errors(args.out, fmt):
        if fmt == "torch":
            path = export.export_program(
                model, args.out, args.height, args.width, metadata=metadata
            )
        else:
            path = export.export_onnx(
                model, args.out, args.height, args.width, opset=args.opset, dynamo=args.dynamo,
                metadata=metadata,
            )  # fmt: skip
    console = Console()
    console.print(f"wrote [bold]{path}[/] ({path.stat().st_size / 1e6:.1f} MB, with metadata)")
    if args.no_check:
        return 0
    inputs = _check_inputs(args.check_images, meta) if args.check_images else None
    what = "the loaded .pt2 program" if fmt == "torch" else "onnxruntime"
    check = export.check_program if fmt == "torch" else export.check_onnx
    with _status(args.quiet, f"comparing {what} with PyTorch ..."):
        checks = check(model, path, inputs=inputs)
    table = Table(title=f"{what} vs PyTorch")
    for col in ("input (B, 3, H, W)", "max |diff|", "argmax agreement"):
        table.add_column(col)
    for c in checks:
        table.add_row(str(c.shape), f"{c.max_abs_diff:.2e}", f"{100 * c.argmax_agreement:.3f} %")
    console.print(table)
    worst = min(c.argmax_agreement for c in checks)
    if worst < args.min_agreement:
        console.print(
            f"[red]argmax agreement {100 * worst:.3f} % is below {100 * args.min_agreement:.1f} %"
        )
        return 1
    return 0


def _status(quiet: bool, text: str):
    """A rich spinner with `text`, or nothing with --quiet."""
    from contextlib import nullcontext

    from rich.console import Console

    return nullcontext() if quiet else Console().status(text)


def _load(args: argparse.Namespace):
    """(model in eval mode, checkpoint meta): a checkpoint's model, or an untrained one."""
    from gsag.models.segmentor import create_model
    from gsag.trained.load import load_trained_model

    if args.checkpoint:
        return load_trained_model(args.checkpoint, map_location=args.device)
    model = create_model(args.model, args.num_classes, backbone=args.backbone, aux=False)
    model = model.to(args.device).eval()
    return model, {"mean": model.mean, "std": model.std}  # the backbone's own normalisation


def _check_inputs(folder: str, meta: dict):
    from gsag.trained.predict import list_images, normalise, to_rgb_array

    return [normalise(to_rgb_array(f), meta["mean"], meta["std"]) for f in list_images(folder)[:8]]


@contextlib.contextmanager
def _export_errors(out: str, fmt: str) -> Iterator[None]:
    """What torch.export or an ONNX exporter raises becomes one `ExportError` line (exit 1) that
    names the other format; gsag's own errors and OS errors pass as they are."""
    from gsag.errors import ExportError, GsagError

    try:
        yield
    except (GsagError, OSError):
        raise
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0][:300]
        other = "ONNX (--out NAME.onnx)" if fmt == "torch" else "a .pt2 program (--out NAME.pt2)"
        raise ExportError(
            f"{out}: the model could not be exported ({type(err).__name__}: {first}); try {other}"
        ) from err
