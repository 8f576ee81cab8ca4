"""`gsag eval CHECKPOINT`: per-class IoU, mIoU, aAcc, mAcc of a trained model on a split."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gsag.commands import (
    CHECKPOINT_HELP,
    add_device_argument,
    add_inference_arguments,
    add_path_argument,
    add_quiet_argument,
    add_speed_arguments,
    add_threads_argument,
    check_output,
    config_type,
    finish_path_argument,
    set_threads,
)

HELP = "evaluate a checkpoint: whole / sliding-window / multi-scale + flip inference"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_path_argument(parser, "checkpoint", CHECKPOINT_HELP)
    parser.add_argument("--data", help="dataset root (default: the one it was trained on)")
    parser.add_argument("--split", help="split to evaluate (default: the config's val split)")
    add_inference_arguments(parser, mode_default=None)
    parser.add_argument(
        "--max-images",
        type=config_type("eval.max_images", "max images", "--max-images 20"),
        default=0,
        help="only the first N images (default 0: all)",
    )
    parser.add_argument(
        "--batch-size",
        type=config_type("eval.batch_size", "batch size", "--batch-size 8"),
        help="images per forward pass; consecutive images of one size are batched, never "
        "padded (default: the checkpoint's eval.batch_size, 1 when absent)",
    )
    add_speed_arguments(parser)
    parser.add_argument(
        "--workers",
        type=config_type("train.num_workers", "workers", "--workers 2"),
        default=2,
        help="data loader workers",
    )
    add_device_argument(parser)
    add_threads_argument(parser)
    parser.add_argument(
        "--out",
        help="report folder (default: eval_<settings>/ beside a checkpoint file; for a saved "
        "folder in FOLDER.evals/ beside it; for hf:// under runs/hf/OWNER--NAME/)",
    )
    add_quiet_argument(parser)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gsag.config import from_dict
    from gsag.engine import distributed
    from gsag.engine.compile import CompileClock, apply_compile
    from gsag.engine.evaluate import evaluate
    from gsag.engine.infer import inference_options, resolve_mode
    from gsag.trained.load import load_trained_model

    finish_path_argument(args, "checkpoint")
    set_threads(args.threads)

    console = Console(stderr=True, soft_wrap=True)
    info = distributed.setup(args.device)
    try:
        model, meta = load_trained_model(args.checkpoint, map_location=info.device)
        cfg = from_dict(meta["config"], source=args.checkpoint)
        mode, window = resolve_mode(args.mode or cfg.eval.mode, bool(args.scales))
        _apply_options(cfg, args, mode)
        dataset = _open_dataset(cfg, meta, args.checkpoint, console if info.is_main else None)
        e = cfg.eval
        tag = eval_tag(cfg.data.val_split, e, args.max_images, window)
        out = Path(args.out) if args.out else default_folder(args.checkpoint, tag)
        if info.is_main:  # also the default folder beside the checkpoint
            check_output(out, "--out", reads=[cfg.data.root])
            check_no_other_report(out, args.checkpoint, cfg.data.root, tag)
        clock = CompileClock(apply_compile(model, e.compile, dynamic=True))
        with _bar(info.is_main and not args.quiet) as progress:
            metrics = evaluate(
                clock,
                dataset,
                **inference_options(e),
                max_pixels=args.max_pixels,
                window=window,
                max_images=args.max_images,
                batch_size=e.batch_size,
                num_workers=args.workers,
                amp=e.amp,
                rank=info.rank,
                world_size=info.world_size,
                progress=progress,
            )
    finally:  # errors become one line in gsag.cli.main
        distributed.cleanup(info)
    if not info.is_main:
        return 0
    settings = _settings(args, cfg, window, info.device, metrics["images"], clock.compile_seconds)
    _print_table(metrics, meta["classes"], tag)  # shown even when the report cannot be written
    if e.compile != "none":
        console.print(f"compile ({e.compile}): {clock.compile_seconds:.1f} s")
    paths = _write_report(metrics, meta["classes"], out, settings)
    console.print(f"wrote {paths['markdown']}, {paths['json']} and {paths['plot']}")
    return 0


def _apply_options(cfg: Any, args: argparse.Namespace, mode: str) -> None:
    """The command's options over the checkpoint config's data and eval sections (each value
    checked by its config rule)."""
    from gsag.config import apply_override

    for key, value in [
        ("data.root", args.data),
        ("data.val_split", args.split),
        ("eval.mode", mode),
        ("eval.crop_size", args.crop_size),
        ("eval.stride", args.stride),
        ("eval.scales", args.scales and f"[{', '.join(map(str, args.scales))}]"),
        ("eval.amp", args.amp),
        ("eval.compile", args.compile),
        ("eval.batch_size", args.batch_size),
    ]:
        if value is not None:
            apply_override(cfg, f"{key}={value}")
    if args.flip:
        cfg.eval.flip = True


def _open_dataset(cfg: Any, meta: dict[str, Any], checkpoint: str, console: Any) -> Any:
    """The evaluation split, refused when its class count is not the checkpoint's; a class the
    two name differently is a warning on `console` (None: say nothing)."""
    from gsag.config import ConfigError
    from gsag.engine.datasets import make_dataset

    dataset = make_dataset(cfg, cfg.data.val_split, train=False)
    if dataset.num_classes != meta["num_classes"]:
        raise ConfigError(
            f"{cfg.data.root} has {dataset.num_classes} classes but {checkpoint} was "
            f"trained on {meta['num_classes']}; evaluate on the dataset it was trained for"
        )
    renamed = class_names_differ(list(dataset.classes), list(meta["classes"]))
    if renamed and console is not None:
        console.print(
            f"warning: {cfg.data.root} names class {renamed[0]} {renamed[1]!r} where "
            f"{checkpoint} has {renamed[2]!r}; the report uses the checkpoint's names",
            markup=False,
            highlight=False,
        )
    return dataset


def _settings(
    args: argparse.Namespace, cfg: Any, window: str, device: Any, images: int, compile_s: float
) -> dict[str, Any]:
    """What the evaluation covered, for metrics.json and the head of metrics.md."""
    from gsag.engine.eval_report import describe_device

    e = cfg.eval
    settings: dict[str, Any] = {
        "checkpoint": str(args.checkpoint),
        "data": cfg.data.root,
        "split": cfg.data.val_split,
        "device": describe_device(device),
    }
    settings.update(
        mode=e.mode, window=window, flip=e.flip,
        scales=e.scales if e.mode == "multiscale" else None,
        crop_size=e.crop_size, stride=e.stride,
        images=images, max_images=args.max_images, max_pixels=args.max_pixels,
        amp=e.amp, compile=e.compile, compile_seconds=round(compile_s, 2),
        batch_size=e.batch_size,
    )  # fmt: skip
    return settings


def _write_report(
    metrics: dict[str, Any], classes: list[str], out: Path, settings: dict[str, Any]
) -> dict[str, Path]:
    """metrics.json, metrics.md and confusion.png in `out`; a failed write says that the metrics
    were printed and how to write them elsewhere."""
    from gsag.engine.eval_report import write_report
    from gsag.errors import GsagError

    try:
        return write_report(metrics, classes, out, extra={"settings": settings})
    except OSError as err:
        if isinstance(err, GsagError):  # a full disk already says so, naming the file
            raise
        raise GsagError(
            f"the metrics are printed above, but the report could not be written to {out} "
            f"({err}); rerun with another --out"
        ) from err


def class_names_differ(data: list[str], checkpoint: list[str]) -> tuple[int, str, str] | None:
    """(index, the dataset's name, the checkpoint's name) of the first class they name
    differently, or None when the names agree."""
    for i, (a, b) in enumerate(zip(data, checkpoint, strict=False)):
        if a != b:
            return i, a, b
    return None


def default_folder(checkpoint: str, tag: str) -> Path:
    """The report folder of `gsag eval` without `--out`: `eval_<name>_<tag>` beside a checkpoint
    file (`eval_best_val_whole`, `eval_last_val_whole`, `eval_best-safetensors_val_whole`: each
    checkpoint its own), `eval_<tag>` inside a pretrained folder or under runs/hf/ for a Hub
    repo (one model each)."""
    from gsag.trained.load import output_parent

    parent = output_parent(checkpoint)
    path = Path(checkpoint)
    if str(checkpoint).startswith("hf://") or path.is_dir() or parent != path.parent:
        return parent / f"eval_{tag}"  # one model: a Hub repo, a saved folder or its weights
    name = path.stem if path.suffix == ".pt" else path.name.replace(".", "-")
    return parent / f"eval_{name}_{tag}"


def check_no_other_report(out: Path, checkpoint: str, data: str, tag: str) -> None:
    """Refuse a report folder that holds the evaluation of another checkpoint, another dataset
    or other settings (its metrics.json says which): evaluations never overwrite each other. The
    same evaluation again rewrites its own folder."""
    import json
    from types import SimpleNamespace

    from gsag.errors import UsageError
    from gsag.trained.save import same_checkpoint

    path = out / "metrics.json"
    if not path.is_file():
        return
    try:
        s = json.loads(path.read_text(encoding="utf-8"))["settings"]
        theirs = eval_tag(s["split"], SimpleNamespace(**s), s.get("max_images") or 0, s["window"])
        same = (
            theirs == tag
            and (
                s["checkpoint"] == str(checkpoint)
                or same_checkpoint(Path(s["checkpoint"]), Path(checkpoint), path)
            )
            and Path(s["data"]).resolve() == Path(data).resolve()
        )
        what = f"the evaluation of {s['checkpoint']} on {s['data']} ({theirs})"
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        same, what = False, "a metrics.json that no evaluation of this checkpoint wrote"
    if not same:
        raise UsageError(
            f"--out {out} holds {what}; evaluations never overwrite each other: choose another "
            "--out"
        )


def eval_tag(split: str, e: Any, max_images: int = 0, window: str = "whole") -> str:
    """The name of an evaluation's folder (`eval_<tag>`): every setting that changes its numbers.

    e.g. "val_whole", "val_slide_crop512_stride341_flip", "val_multiscale_s0.75-1-1.25_first20".
    `e` is a config's `eval` section (mode, crop_size, stride, scales, flip).
    """

    def size(value: Any) -> str:
        return "x".join(map(str, value)) if isinstance(value, list | tuple) else str(value)

    parts = [split, e.mode]
    if "slide" in (e.mode, window):  # sliding windows, alone or at every scale
        parts += [f"crop{size(e.crop_size)}", f"stride{size(e.stride)}"]
    if e.mode == "multiscale":
        parts.append("s" + "-".join(f"{float(s):g}" for s in e.scales))
    if e.flip:
        parts.append("flip")
    if max_images > 0:
        parts.append(f"first{max_images}")
    return "_".join(parts)


def _print_table(metrics: dict, classes: list[str], tag: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from gsag.engine.eval_report import fmt_pct as pct

    table = Table(title=f"{tag}: {metrics['images']} images")
    table.add_column("class")
    table.add_column("IoU", justify="right")
    table.add_column("Acc", justify="right")
    for name, iou, acc in zip(classes, metrics["IoU"], metrics["Acc"], strict=True):
        table.add_row(name, pct(iou), pct(acc))
    table.add_section()
    table.add_row("[bold]mIoU", f"[bold]{pct(metrics['mIoU'])}", "")
    table.add_row("aAcc / mAcc", pct(metrics["aAcc"]), pct(metrics["mAcc"]))
    Console().print(table)


class _bar:
    """A rich progress bar whose `progress(done, total)` callback feeds `evaluate`."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn

        from gsag.engine.progress import task_bar

        self.bar = task_bar("eval", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        self.bar.start()
        task = self.bar.add_task("eval", total=None)
        return lambda done, total: self.bar.update(task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()
