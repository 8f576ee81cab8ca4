"""The report of one run (`gsag demo`): evaluate its checkpoint on the validation split and write
report.md with the metrics, the training curve, prediction panels and the confusion matrix.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gsag.atomic import write_text
from gsag.engine.run_log import read_metrics_log, record_iteration
from gsag.trained.draw import plot_training_curve, report_figure, save_figure
from gsag.trained.predict import Predictor

if TYPE_CHECKING:
    from torch import nn

    from gsag.config import Config
    from gsag.data.base import SegmentationDataset


def training_facts(metrics_log: str | os.PathLike) -> dict[str, Any]:
    """What a run's `metrics.jsonl` says about its training, whenever it is read (so a report
    written again later keeps them): {"iterations": the last logged iteration, "train_s": the
    sum over log intervals of iterations x `sec_per_iter` (evaluation and saving excluded),
    "eval_s": the evaluations' wall time (NaN when the log predates `eval_s`), "threads": the
    torch CPU threads the training records name (empty when the log predates them)}."""
    train, evals = read_metrics_log(metrics_log)
    last, train_s = 0.0, 0.0
    for r in train:
        it = record_iteration(r)
        sec = r.get("sec_per_iter")
        if isinstance(sec, (int, float)) and math.isfinite(sec):
            train_s += (it - last) * sec
        last = it
    eval_s = [r.get("eval_s") for r in evals]
    finite = [float(v) for v in eval_s if isinstance(v, (int, float)) and math.isfinite(v)]
    known = len(finite) == len(eval_s)
    threads = sorted({r["threads"] for r in train if isinstance(r.get("threads"), int)})
    return {
        "iterations": last,
        "train_s": train_s,
        "eval_s": math.fsum(finite) if known else float("nan"),
        "threads": threads,
    }


def training_line(facts: dict[str, Any], total: int) -> str:
    """The report's line for `training_facts`: every number from the run's metrics.jsonl."""
    line = f"training: {facts['iterations']:.0f} of {total} iterations, {facts['train_s'] / 60:.1f} min"
    if math.isfinite(facts["eval_s"]):
        line += f" + {facts['eval_s'] / 60:.1f} min of evaluation during training"
    threads = facts.get("threads") or []
    if not threads:
        return line + " (from the run's metrics.jsonl, which does not record its threads)"
    counts = " then ".join(str(t) for t in threads)  # a resumed run may have changed them
    noun = "thread" if threads == [1] else "threads"
    return line + f", {counts} torch CPU {noun} (from the run's metrics.jsonl)"


def evaluation_line(reused: bool, iteration: Any, device: str, seconds: float) -> str:
    """The report's line saying where its evaluation comes from: training's last one (made
    with the training's device and threads), or one made for the report, with its own."""
    if reused:
        return (
            f"evaluation: the last one of training, at iteration {iteration}, made during "
            "training (its device and threads are the training's)"
        )
    return f"evaluation: made for this report on {_device_words(device)}, in {seconds:.1f} s"


def _device_words(device: str) -> str:
    """E.g. "cpu, 2 torch CPU threads, torch 2.4.1" (now), or the GPU's name."""
    from gsag.engine.eval_report import describe_device

    words = describe_device(device).replace(" (", ", ").rstrip(")")
    return words.replace(" threads,", " torch CPU threads,")


def _evaluation_device(device: str, training_threads: int | None) -> str:
    """metrics.json's `device`: `describe_device` now, or, for training's own evaluation
    (`training_threads` given, read from the run's log), the threads it ran with."""
    import torch

    from gsag.engine.eval_report import describe_device

    if training_threads is None or torch.device(device).type != "cpu":
        return describe_device(device)
    return f"cpu ({training_threads} threads, torch {torch.__version__}; during training)"


def write_run_report(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    num_images: int = 4,
    device: str = "cpu",
    title: str = "gsag run report",
    notes: Sequence[str] = (),
    progress=None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Evaluate a checkpoint on its config's validation split and write a report folder.

    Writes report.md (metrics table, per-class IoU, figures), metrics.json, metrics.md,
    confusion.png, curve.png (from the run's metrics.jsonl, when present) and
    predictions/<id>.png panels (input | ground truth | prediction) for the first
    `num_images` validation images.

    Args:
        checkpoint: a `.pt` checkpoint written by `gsag train`.
        out_dir: the report folder.
        num_images: validation images to draw.
        device: where to evaluate.
        title: the report's heading.
        notes: extra lines for the report's header (e.g. training time).
        progress: optional `(done, total)` callable for the evaluation.
        metrics: the checkpoint's evaluation (`gsag.engine.evaluate.evaluate`'s result with its
            "confusion") on the whole validation split with the config's `eval` settings and no
            autocast, when the caller has it (training's last evaluation): not evaluated again.

    Returns:
        The path of report.md.
    """
    from gsag.config import from_dict
    from gsag.engine.checkpoint import load_model
    from gsag.engine.datasets import make_dataset
    from gsag.engine.eval_report import write_report as write_metrics
    from gsag.engine.evaluate import evaluate
    from gsag.engine.infer import inference_options

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(checkpoint)
    model, meta = load_model(checkpoint, map_location=device)
    cfg = from_dict(meta["config"], source=str(checkpoint))
    val_set = make_dataset(cfg, cfg.data.val_split, train=False)
    log = checkpoint.parent / "metrics.jsonl"
    reused, started = metrics is not None, time.perf_counter()
    if metrics is None:
        metrics = evaluate(
            model,
            val_set,
            **inference_options(cfg.eval),
            batch_size=cfg.eval.batch_size,
            num_classes=meta["num_classes"],
            ignore_index=meta["ignore_index"],
            progress=progress,
        )
    seconds = time.perf_counter() - started
    classes = list(meta["classes"])
    trained_on = training_facts(log)["threads"] if log.is_file() else []
    where = _evaluation_device(device, trained_on[-1] if reused and trained_on else None)
    settings = {"checkpoint": str(checkpoint), "data": cfg.data.root, "split": cfg.data.val_split,
                "device": where, **inference_options(cfg.eval),
                "images": metrics["images"]}  # fmt: skip
    write_metrics(metrics, classes, out, extra={"settings": settings})
    panels = _write_panels(model, meta, val_set, num_images, device, out)
    curve = (
        plot_training_curve(log, out / "curve.png", title, cfg.data.val_split)
        if log.is_file()
        else None
    )
    lines = [f"# {title}", ""]
    lines += _run_lines(cfg, model.params_line(), checkpoint, meta, metrics["images"])
    if log.is_file():
        lines.append(f"- {training_line(training_facts(log), cfg.train.iters)}")
    lines.append(f"- {evaluation_line(reused, meta.get('iteration', '?'), device, seconds)}")
    lines += [f"- {n}" for n in notes]
    lines += _result_lines(metrics, classes, curve is not None, panels)
    return write_text(out / "report.md", "\n".join(lines))


def _write_panels(
    model: nn.Module,
    meta: dict[str, Any],
    val_set: SegmentationDataset,
    num_images: int,
    device: str,
    out: Path,
) -> list[Path]:
    """predictions/<id>.png (image | truth | prediction | overlay, with a class legend) for the
    first `num_images`."""
    predictor = Predictor.from_model(model, meta, device=device)
    panels = []
    for i in range(min(num_images, len(val_set))):
        image_path = val_set.image_path(i)
        rgb, truth, _ = val_set.load(i)  # upright image and its aligned mask
        pred = predictor.predict(rgb)
        figure = report_figure(
            rgb, truth, pred, meta["classes"], predictor.palette, meta["ignore_index"]
        )
        panels.append(save_figure(figure, out / "predictions" / f"{image_path.stem}.png"))
    return panels


def _run_lines(
    cfg: Config,
    params_line: str,
    checkpoint: Path,
    meta: dict[str, Any],
    images: int,
) -> list[str]:
    """The report header's list: model, checkpoint and data (the config and checkpoint's)."""
    m, e = cfg.model, cfg.eval
    return [
        f"- model: `{m.name}` on `{m.backbone}` ({params_line}, "
        f"output stride {m.output_stride}, pretrained backbone: {m.pretrained})",
        f"- checkpoint: `{checkpoint}` (iteration {meta.get('iteration', '?')} of "
        f"{cfg.train.iters}, batch {cfg.train.batch_size}, crop {cfg.data.crop_size})",
        f"- data: `{cfg.data.root}`, trained on split `{cfg.data.train_split}`, "
        f"evaluated on `{cfg.data.val_split}` ({images} images, mode {e.mode}"
        f"{', flip' if e.flip else ''})",
    ]


def _result_lines(
    metrics: dict[str, Any], classes: Sequence[str], curve: bool, panels: Sequence[Path]
) -> list[str]:
    """The report's sections: metrics table, training curve, prediction panels, confusion."""
    from gsag.engine.eval_report import metrics_table

    lines = ["", "## Metrics (%)", "", metrics_table(metrics, classes)]
    if curve:
        lines += ["## Training curve", "", "![training curve](curve.png)", ""]
    if panels:
        lines += [
            "## Predictions",
            "",
            "image | truth | prediction | overlay, with the classes present",
            "",
        ]
        lines += [f"![{p.stem}](predictions/{p.name})" for p in panels]
        lines.append("")
    lines += ["## Confusion matrix (row-normalised)", "", "![confusion matrix](confusion.png)", ""]
    return lines
