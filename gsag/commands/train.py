"""`gsag train CONFIG`: train a model from a YAML config (under torchrun for several GPUs)."""

from __future__ import annotations

import argparse
import os

from gsag.commands import (
    add_alias,
    add_device_argument,
    add_path_argument,
    add_quiet_argument,
    add_set_argument,
    add_threads_argument,
    check_output,
    finish_path_argument,
)

HELP = "train a model from a YAML config (torchrun --nproc_per_node N -m gsag train ... for DDP)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_path_argument(parser, "config", "YAML config, e.g. configs/demo.yaml")
    add_set_argument(parser)
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start anew in an OUT folder that holds a run, moving the old run to OUT.old-<time>",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the config and print its loss, loggers and optimizer parameter groups "
        "(learning rate, weight decay) without training",
    )
    parser.add_argument("--out", help="run folder (default: the config's output.run_dir)")
    add_alias(parser, "--run-dir", "out")
    add_device_argument(parser)
    add_threads_argument(parser)
    add_quiet_argument(parser)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from gsag.config import load_config
    from gsag.engine.eval_report import fmt_pct
    from gsag.engine.train import train

    finish_path_argument(args, "config")
    main = int(os.environ.get("RANK", "0")) == 0
    overrides = list(args.overrides)
    if args.threads:
        overrides.append(f"train.num_threads={args.threads}")
    # errors (bad config or data, diverged training, ...) become one line in gsag.cli.main
    cfg = load_config(args.config, overrides)
    if args.out:
        cfg.output.run_dir = args.out  # a path as typed, never parsed as YAML
    if args.dry_run:
        return _dry_run(args.config, cfg)
    check_output(cfg.output.run_dir, "--out" if args.out else "output.run_dir")
    result = train(
        cfg, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet, device=args.device
    )
    if main:
        table = Table(title=f"gsag train {args.config}", show_header=False)
        metrics = result["metrics"]
        table.add_row("iterations", str(result["iteration"]))
        table.add_row("best mIoU", fmt_pct(result["best_miou"]))
        if metrics:
            table.add_row("last mIoU / aAcc / mAcc", " / ".join(
                f"{100 * metrics[k]:.2f}" for k in ("mIoU", "aAcc", "mAcc")
            ))  # fmt: skip
        table.add_row("skipped steps (non-finite)", str(result["bad_steps"]))
        table.add_row("time", f"{result['seconds'] / 60:.1f} min")
        if result.get("compile_seconds"):
            table.add_row("of which compiling", f"{result['compile_seconds']:.0f} s")
        table.add_row(
            "best checkpoint",
            result["checkpoint"] or f"none (no labelled validation pixels); use {result['last']}",
        )
        table.add_row("run dir", result["run_dir"])
        Console().print(table)
    return 0


def _dry_run(path: str, cfg) -> int:
    """Print what `gsag.engine.plan.plan` finds; nothing is trained or written."""
    from rich.console import Console
    from rich.table import Table

    from gsag.engine.plan import plan

    found = plan(cfg)
    o = cfg.optim
    console = Console()
    console.print(f"dry run of {path}: nothing is trained or written", soft_wrap=True)
    console.print(f"classes: {found.data_note}", soft_wrap=True)
    console.print(f"loss: {found.loss}", soft_wrap=True)
    console.print(f"loggers: {', '.join(found.loggers) or 'none (metrics.jsonl only)'}")
    table = Table(
        title=f"{o.name}: lr {o.lr:g}, weight decay {o.weight_decay:g}, head_lr_mult "
        f"{o.head_lr_mult:g}, layer_decay {o.layer_decay:g}, no_decay_norm_bias "
        f"{str(o.no_decay_norm_bias).lower()}"
    )
    for column in ("group", "tensors", "parameters", "lr", "weight decay"):
        table.add_column(column, justify="left" if column == "group" else "right")
    for name, tensors, numel, lr, decay in found.groups:
        table.add_row(name, str(tensors), f"{numel:,}", f"{lr:.4g}", f"{decay:g}")
    console.print(table)
    return 0
