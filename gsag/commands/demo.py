"""`gsag demo`: generate data, train a small GSAG hybrid, evaluate, predict, write a report."""

from __future__ import annotations

import argparse

from gsag.commands import add_device_argument, add_set_argument, add_threads_argument

HELP = "end-to-end CPU demo: data, training, evaluation, predictions and a report (~10 min)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="configs/demo.yaml", help="training config")
    add_set_argument(parser)
    parser.add_argument("--out", default=None, help="report folder (default: <run_dir>/report)")
    parser.add_argument("--images", type=int, default=4, help="validation images to draw")
    add_device_argument(parser, default="cpu")
    add_threads_argument(
        parser,
        default=1,
        note="on 2 cores the data-loading worker needs the other one, and more threads than "
        "free cores make PyTorch's thread pool spin and crawl",
    )


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from gsag.config import load_config
    from gsag.data.synth import generate
    from gsag.engine.train import train
    from gsag.report import write_run_report

    console = Console()
    start = time.perf_counter()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, [f"train.num_threads={args.threads}", *args.overrides])
    root = Path(cfg.data.root)
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())

    if cfg.data.synthetic and not (root.exists() and any(root.iterdir())):
        with Progress(*columns, TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task(f"generating {root}", total=None)
            generate(
                root,
                seed=cfg.train.seed,
                workers=2,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    else:
        console.print(f"data: {root} (already there)")

    console.print(
        f"training {cfg.model.name} on {cfg.model.backbone} for {cfg.train.iters} iterations "
        f"-> {cfg.output.run_dir}"
    )
    result = train(cfg, device=args.device)
    trained = time.perf_counter() - start

    out = Path(args.out) if args.out else Path(cfg.output.run_dir) / "report"
    with Progress(*columns, TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("evaluating + drawing", total=None)
        report = write_run_report(
            result["last"],
            out,
            num_images=args.images,
            device=args.device,
            title="gsag demo: GSAG hybrid on the generated context benchmark",
            notes=[f"data + training time: {trained / 60:.1f} min"],
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(f"mIoU (last checkpoint, val): {100 * result['metrics']['mIoU']:.2f} %")
    console.print(
        f"done in {(time.perf_counter() - start) / 60:.1f} min. Report: [bold]{report}[/]"
    )
    return 0
