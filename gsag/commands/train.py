"""`gsag train CONFIG`: train a model from a YAML config (under torchrun for several GPUs)."""

from __future__ import annotations

import argparse
import os

from gsag.commands import add_path_argument, add_set_argument, finish_path_argument

HELP = "train a model from a YAML config (torchrun --nproc_per_node N -m gsag train ... for DDP)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_path_argument(parser, "config", "YAML config, e.g. configs/demo.yaml")
    add_set_argument(parser)
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    parser.add_argument("--run-dir", help="output folder (default: runs/<config name>)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from gsag.config import ConfigError, load_config
    from gsag.data import DataError
    from gsag.engine.train import TrainingDiverged, train

    finish_path_argument(args, "config")
    console = Console(stderr=True, soft_wrap=True)
    main = int(os.environ.get("RANK", "0")) == 0
    overrides = list(args.overrides)
    if args.run_dir:
        overrides.append(f"output.run_dir={args.run_dir}")
    try:
        cfg = load_config(args.config, overrides)
        result = train(cfg, resume=args.resume, quiet=args.quiet, device=args.device)
    except (ConfigError, DataError, FileNotFoundError) as e:
        console.print(Text.assemble(("error: ", "red"), str(e)))
        return 2
    except TrainingDiverged as e:
        console.print(Text.assemble(("training stopped: ", "red"), str(e)))
        return 1
    if main:
        table = Table(title=f"gsag train {args.config}", show_header=False)
        metrics = result["metrics"]
        table.add_row("iterations", str(result["iteration"]))
        table.add_row("best mIoU", f"{100 * result['best_miou']:.2f}")
        if metrics:
            table.add_row("last mIoU / aAcc / mAcc", " / ".join(
                f"{100 * metrics[k]:.2f}" for k in ("mIoU", "aAcc", "mAcc")
            ))  # fmt: skip
        table.add_row("skipped steps (non-finite)", str(result["bad_steps"]))
        table.add_row("time", f"{result['seconds'] / 60:.1f} min")
        if result.get("compile_seconds"):
            table.add_row("of which compiling", f"{result['compile_seconds']:.0f} s")
        table.add_row("best checkpoint", result["checkpoint"])
        table.add_row("run dir", result["run_dir"])
        Console().print(table)
    return 0
