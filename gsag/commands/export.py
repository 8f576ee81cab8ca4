"""`gsag export`: a checkpoint (or an untrained model by name) to ONNX or a torch.export program."""

from __future__ import annotations

import argparse

from gsag.commands import add_path_argument
from gsag.config import DEFAULT_OPSET

HELP = (
    "export a model to ONNX (dynamic batch/height/width) or torch.export, checked against PyTorch"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_path_argument(parser, "checkpoint", "a gsag .pt checkpoint or .safetensors weights")
    parser.add_argument("--model", help="export an untrained model by name (see `gsag models`)")
    parser.add_argument("--backbone", default="resnet50", help="backbone for --model")
    parser.add_argument("--num-classes", type=int, default=21, help="classes for --model")
    parser.add_argument("--out", required=True, help="output file (.onnx or .pt2)")
    parser.add_argument(
        "--format", choices=["onnx", "torch"], default=None, help="default: from --out's suffix"
    )
    parser.add_argument("--height", type=int, default=512, help="example input height")
    parser.add_argument("--width", type=int, default=512, help="example input width")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    parser.add_argument(
        "--dynamo", action="store_true", help="use the torch.export-based ONNX exporter"
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip the onnxruntime comparison with PyTorch"
    )
    parser.add_argument(
        "--check-images",
        help="folder of images to compare on (default: random inputs at two other sizes)",
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=0.999,
        help="fail when fewer pixels than this share the argmax class (default 0.999)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from gsag import export

    console = Console()
    args.checkpoint = args.checkpoint or args.checkpoint_option
    if bool(args.checkpoint) == bool(args.model):
        raise SystemExit("gsag export: error: give exactly one of a checkpoint (positional or "
                         "--checkpoint) and --model NAME")  # fmt: skip
    model, meta = _load(args)
    fmt = args.format or ("torch" if Path(args.out).suffix == ".pt2" else "onnx")
    with console.status(f"exporting to {args.out} ..."):
        if fmt == "torch":
            path = export.export_program(model, args.out, args.height, args.width)
        else:
            path = export.export_onnx(
                model, args.out, args.height, args.width, opset=args.opset, dynamo=args.dynamo
            )
    console.print(f"wrote [bold]{path}[/] ({path.stat().st_size / 1e6:.1f} MB)")
    if fmt != "onnx" or args.no_check:
        return 0
    inputs = _check_inputs(args.check_images, meta) if args.check_images else None
    with console.status("comparing onnxruntime with PyTorch ..."):
        checks = export.check_onnx(model, path, inputs=inputs)
    table = Table(title="onnxruntime vs PyTorch")
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


def _load(args: argparse.Namespace):
    """(model in eval mode, checkpoint meta): a checkpoint's model, or an untrained one."""
    from gsag.engine.checkpoint import load_model
    from gsag.models.segmentor import model_from_args

    if args.checkpoint:
        return load_model(args.checkpoint)
    untrained = dict(name=args.model, num_classes=args.num_classes, backbone=args.backbone)
    model = model_from_args({**untrained, "aux": False}).eval()
    return model, {"mean": model.mean, "std": model.std}  # the backbone's own normalisation


def _check_inputs(folder: str, meta: dict):
    from gsag.data.io import IMAGENET_MEAN, IMAGENET_STD
    from gsag.predict import list_images, normalise, to_rgb_array

    mean = meta.get("mean", IMAGENET_MEAN)
    std = meta.get("std", IMAGENET_STD)
    return [normalise(to_rgb_array(f), mean, std) for f in list_images(folder)[:8]]
