"""`gsag save RUN_DIR FOLDER`: a trained run as a pretrained folder (safetensors, config, card)."""

from __future__ import annotations

import argparse

from gsag.commands import check_output

HELP = "write a run as a shareable folder: model.safetensors, config.json, a model card"


def add_pretrained_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `gsag save` and `gsag push` share."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder, or a .pt checkpoint")
    parser.add_argument(
        "--checkpoint",
        help="the checkpoint file in RUN_DIR (default: the evaluated one of best.pt, last.pt)",
    )
    parser.add_argument(
        "--evaluation",
        metavar="METRICS_JSON",
        help="the evaluation the model card reports (default: the newest one of the checkpoint "
        "with the run's own settings: its validation split and eval section)",
    )
    parser.add_argument("--onnx", action="store_true", help="also write model.onnx")
    parser.add_argument(
        "--include-aux",
        action="store_true",
        help="keep the training-only auxiliary head in the weights (for fine-tuning)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_pretrained_arguments(parser)
    parser.add_argument("folder", metavar="FOLDER", help="the folder to write (new or empty)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a model saved in FOLDER, moving it to FOLDER.old-<time> first",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gsag.trained.save import save_pretrained

    check_output(args.folder, "FOLDER")  # and save_pretrained checks FOLDER before loading
    with Console(stderr=True).status(f"saving {args.run_dir} ..."):
        folder = save_pretrained(
            args.run_dir,
            args.folder,
            checkpoint=args.checkpoint,
            include_aux=args.include_aux,
            onnx=args.onnx,
            evaluation=args.evaluation,
            overwrite=args.overwrite,
        )
    files = ", ".join(sorted(p.name for p in folder.iterdir()))
    Console().print(f"wrote [bold]{folder}[/]: {files}")
    return 0
