"""`gsag predict`: segment an image or a folder with a trained checkpoint."""

from __future__ import annotations

import argparse

HELP = "predict masks (palette PNGs), overlays and optionally probabilities for images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a gsag .pt or .safetensors file")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--out", required=True, help="output folder (masks/, overlays/, probs/)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--mode", choices=["whole", "slide"], default="whole", help="single pass or sliding window"
    )
    parser.add_argument("--tta", action="store_true", help="flip + multi-scale (0.5-1.75)")
    parser.add_argument("--crop-size", type=int, default=None, help="window for --mode slide")
    parser.add_argument("--stride", type=int, default=None, help="stride for --mode slide")
    parser.add_argument("--probs", action="store_true", help="also write probs/<name>.npy")
    parser.add_argument("--no-overlay", action="store_true", help="skip the colour overlays")
    parser.add_argument(
        "--amp",
        choices=["auto", "bf16", "fp16", "none"],
        help="autocast (default: the checkpoint's eval.amp, else auto = bf16 on CUDA, fp32 on CPU)",
    )
    parser.add_argument(
        "--compile",
        choices=["none", "head", "model"],
        help="torch.compile the head or the model, dynamic shapes (default: eval.compile, none)",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from gsag.predict import Predictor, list_images, predict_files

    console = Console()
    files = list_images(args.input)
    predictor = Predictor(
        args.checkpoint,
        device=args.device,
        mode=args.mode,
        tta=args.tta,
        crop_size=args.crop_size,
        stride=args.stride,
        amp=args.amp,
        compile=args.compile,
    )
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeRemainingColumn(), console=console, disable=len(files) < 2) as bar:
        task = bar.add_task("predicting", total=len(files))
        predict_files(
            predictor,
            files,
            args.out,
            overlays=not args.no_overlay,
            probs=args.probs,
            on_image=lambda _: bar.advance(task),
        )
    console.print(f"{len(files)} image(s) -> [bold]{args.out}[/] (masks/ are palette PNGs)")
    if predictor.compile != "none":
        console.print(f"compile ({predictor.compile}): {predictor.compile_seconds:.1f} s")
    return 0
