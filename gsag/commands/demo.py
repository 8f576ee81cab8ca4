"""`gsag demo`: generate data, train a small GSAG hybrid, evaluate, predict, write a report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gsag.commands import (
    add_device_argument,
    add_quiet_argument,
    add_set_argument,
    add_threads_argument,
    bounded,
    check_output,
    set_threads,
)

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the repository, for an editable install
HELP = "end-to-end CPU demo: data, training, evaluation, predictions and a report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=None,
        help="training config (default: configs/demo.yaml here, else the one in gsag's source)",
    )
    add_set_argument(parser)
    parser.add_argument(
        "--out",
        default=None,
        help="run folder (default: the config's, runs/demo); report in OUT/report",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the folder; a finished run is only evaluated again",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="move an old run in the folder to OUT.old-<time>"
    )
    parser.add_argument(
        "--images",
        type=bounded(int, 0, "images", "--images 4", high=100),
        default=4,
        help="validation images to draw",
    )
    add_device_argument(parser)
    add_threads_argument(parser)
    add_quiet_argument(parser)


def demo_config(path: str | None) -> str:
    """The config to use: `path`, else configs/demo.yaml here, else the one beside gsag's source
    (an editable install run from another folder)."""
    from gsag.errors import UsageError

    if path:
        return path
    for candidate in (Path("configs/demo.yaml"), SOURCE_ROOT / "configs" / "demo.yaml"):
        if candidate.is_file():
            return str(candidate)
    raise UsageError(
        "gsag demo needs configs/demo.yaml: run it from the gsag repository root, or pass "
        "--config PATH (a copy of the repository's configs/demo.yaml)"
    )


def final_evaluation(cfg, result: dict[str, Any], device: str) -> dict[str, Any] | None:
    """Training's last evaluation when it is the report's (last.pt on the whole validation
    split, no autocast), so the report does not evaluate the same model again; else None.
    `result` is `gsag.engine.train.train`'s: a run that was already finished has no metrics."""
    from gsag.engine.compile import resolve_amp

    final = result["iteration"] == cfg.train.iters and "confusion" in result["metrics"]
    same = cfg.eval.max_images == 0 and resolve_amp(cfg.train.amp, device) == "none"
    return result["metrics"] if final and same else None


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TimeElapsedColumn,
    )

    from gsag.config import load_config
    from gsag.data.synth import generate
    from gsag.engine.checks import check_model_config
    from gsag.engine.datasets import synth_seed
    from gsag.engine.run_dir import check_run_dir, not_started
    from gsag.engine.train import train
    from gsag.trained.report import write_run_report

    console = Console()
    start = time.perf_counter()
    overrides = list(args.overrides)
    if args.threads:
        overrides.append(f"train.num_threads={args.threads}")
    cfg = load_config(demo_config(args.config), overrides)
    if args.out:
        cfg.output.run_dir = args.out  # a path as typed, never parsed as YAML
    set_threads(args.threads, cfg.train.num_threads)  # for the report's evaluation too
    check_output(cfg.output.run_dir, "--out" if args.out else "output.run_dir")
    run_dir, keep = Path(cfg.output.run_dir), [cfg.data.root]
    # a run stopped before its first checkpoint (Ctrl-C) starts again without asking
    resume = args.resume or (run_dir.is_dir() and not_started(run_dir, cfg, keep))
    check_run_dir(run_dir, resume, args.overwrite, keep, cfg)  # before any work
    check_model_config(cfg, args.device)
    root = Path(cfg.data.root)
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())

    if cfg.data.synthetic and not (root.exists() and any(root.iterdir())):
        with Progress(*columns, TimeElapsedColumn(), console=console, disable=args.quiet) as bar:
            task = bar.add_task(f"generating {root}", total=None)
            generate(
                root,
                seed=synth_seed(cfg),
                workers=2,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    else:
        console.print(f"data: {root} (already there)")

    console.print(
        f"training {cfg.model.name} on {cfg.model.backbone} for {cfg.train.iters} iterations "
        f"-> {cfg.output.run_dir}"
    )
    result = train(
        cfg, device=args.device, resume=resume, overwrite=args.overwrite, quiet=args.quiet
    )

    out = Path(cfg.output.run_dir) / "report"
    metrics = final_evaluation(cfg, result, args.device)
    # with the metrics already computed only the drawing is left, which reports no count
    drawing = (SpinnerColumn(), columns[0]) if metrics else columns
    with Progress(*drawing, TimeElapsedColumn(), console=console, disable=args.quiet) as bar:
        task = bar.add_task("drawing" if metrics else "evaluating + drawing", total=None)
        report = write_run_report(
            result["last"],
            out,
            num_images=args.images,
            device=args.device,
            title="gsag demo: GSAG hybrid on the generated context benchmark",
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            metrics=metrics,
        )
    miou = json.loads((out / "metrics.json").read_text())["mIoU"]
    console.print(f"mIoU (last checkpoint, val): {100 * miou:.2f} %")
    console.print(
        f"done in {(time.perf_counter() - start) / 60:.1f} min. Report: [bold]{report}[/]"
    )
    return 0
