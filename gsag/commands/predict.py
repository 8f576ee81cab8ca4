"""`gsag predict CHECKPOINT`: segment an image or a folder with a trained checkpoint."""

from __future__ import annotations

import argparse

from gsag.commands import (
    CHECKPOINT_HELP,
    add_device_argument,
    add_inference_arguments,
    add_path_argument,
    add_quiet_argument,
    add_speed_arguments,
    add_threads_argument,
    check_output,
    finish_path_argument,
    set_threads,
)

HELP = "predict masks (palette PNGs), overlays and optionally probabilities for images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gsag.config import DEFAULT_SCALES

    add_path_argument(parser, "checkpoint", CHECKPOINT_HELP)
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--out", required=True, help="output folder (masks/, overlays/, probs/)")
    add_device_argument(parser)
    add_threads_argument(parser)
    add_quiet_argument(parser)
    add_inference_arguments(parser, mode_default="whole")
    parser.add_argument(
        "--tta",
        action="store_true",
        help=f"= --mode multiscale --flip with the default scales ({DEFAULT_SCALES[0]}-"
        f"{DEFAULT_SCALES[-1]}); with --mode slide every scale runs as sliding windows",
    )
    parser.add_argument("--probs", action="store_true", help="also write probs/<name>.npy")
    parser.add_argument("--no-overlay", action="store_true", help="skip the colour overlays")
    add_speed_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn

    from gsag.engine.progress import task_bar
    from gsag.trained.predict import Predictor, list_images, predict_files

    finish_path_argument(args, "checkpoint")
    check_output(args.out, "--out")
    set_threads(args.threads)
    console = Console(stderr=True)
    files = list_images(args.input)
    predictor = Predictor(
        args.checkpoint,
        device=args.device,
        mode=args.mode,
        tta=args.tta,
        crop_size=args.crop_size,
        stride=args.stride,
        scales=args.scales,
        flip=args.flip,
        max_pixels=args.max_pixels,
        amp=args.amp,
        compile=args.compile,
    )
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())
    with task_bar(
        *columns, TimeRemainingColumn(), console=console, transient=True, quiet=args.quiet
    ) as bar:
        images = bar.add_task("images", total=len(files), visible=len(files) > 1)
        passes = bar.add_task("forward passes", total=None)

        def on_image(_) -> None:
            bar.advance(images)
            bar.reset(passes, total=None)

        predict_files(
            predictor,
            files,
            args.out,
            overlays=not args.no_overlay,
            probs=args.probs,
            on_image=on_image,
            on_pass=lambda done, total: bar.update(passes, completed=done, total=total),
        )
    console.print(f"{len(files)} image(s) -> [bold]{args.out}[/] (masks/ are palette PNGs)")
    if predictor.compile != "none":
        console.print(f"compile ({predictor.compile}): {predictor.compile_seconds:.1f} s")
    return 0
