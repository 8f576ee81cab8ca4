"""Plots and small markdown helpers for run reports (`gsag demo`) and ablations (`gsag ablate`).

Figures are written with matplotlib's Agg backend, atomically (`gsag.atomic`).
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gsag.atomic import atomic_path, write_text
from gsag.engine.evaluate import fmt_pct

if TYPE_CHECKING:
    from torch import nn

    from gsag.config import Config
    from gsag.data.base import SegmentationDataset


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure atomically and close it."""
    plt = pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def read_metrics_log(path: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """Split a run's `metrics.jsonl` into training records and evaluation records.

    A record with an "mIoU" key is an evaluation; one with a "loss" key is a training log line.
    Lines that are not JSON objects (e.g. a half-written last line) are skipped.
    """
    train: list[dict] = []
    evals: list[dict] = []
    path = Path(path)
    if not path.is_file():
        return train, evals
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        if "mIoU" in record:
            evals.append(record)
        elif "loss" in record:
            train.append(record)
    return train, evals


def _iteration(record: dict) -> float:
    for key in ("iter", "iteration", "step"):
        if key in record:
            return float(record[key])
    return float("nan")


def training_facts(metrics_log: str | os.PathLike) -> dict[str, float]:
    """What a run's `metrics.jsonl` says about its training, whenever it is read (so a report
    written again later keeps them): {"iterations": the last logged iteration, "train_s": the
    sum over log intervals of iterations x `sec_per_iter` (evaluation and saving excluded),
    "eval_s": the evaluations' wall time (NaN when the log predates `eval_s`)}."""
    train, evals = read_metrics_log(metrics_log)
    last, train_s = 0.0, 0.0
    for r in train:
        it = _iteration(r)
        sec = r.get("sec_per_iter")
        if isinstance(sec, (int, float)) and math.isfinite(sec):
            train_s += (it - last) * sec
        last = it
    eval_s = [r.get("eval_s") for r in evals]
    finite = [float(v) for v in eval_s if isinstance(v, (int, float)) and math.isfinite(v)]
    known = len(finite) == len(eval_s)
    return {
        "iterations": last,
        "train_s": train_s,
        "eval_s": math.fsum(finite) if known else float("nan"),
    }


def training_line(facts: dict[str, float], total: int) -> str:
    """The report's line for `training_facts`."""
    line = f"training: {facts['iterations']:.0f} of {total} iterations, {facts['train_s'] / 60:.1f} min"
    if math.isfinite(facts["eval_s"]):
        line += f" + {facts['eval_s'] / 60:.1f} min of evaluation during training"
    return line + " (from the run's metrics.jsonl)"


def plot_training_curve(
    metrics_log: str | os.PathLike, path: str | os.PathLike, title: str = "", split: str = "val"
) -> Path:
    """Training loss and the evaluated `split`'s mIoU against iteration, from one
    `metrics.jsonl`."""
    plt = pyplot()
    train, evals = read_metrics_log(metrics_log)
    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot([_iteration(r) for r in train], [r["loss"] for r in train], lw=1.2)
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("training loss")
    ax_miou.plot([_iteration(r) for r in evals], [100 * r["mIoU"] for r in evals], "o-")
    ax_miou.set_xlabel("iteration")
    ax_miou.set_ylabel(f"{split} mIoU (%)")
    for ax in (ax_loss, ax_miou):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value; NaN for none)."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def fmt_pm(mean: float, std: float, digits: int = 1) -> str:
    """Fractions as '45.3 ± 1.2' (percent); '–' for a NaN mean."""
    if math.isnan(mean):
        return "–"
    return f"{fmt_pct(mean, digits)} ± {100 * std:.{digits}f}"


def plot_miou_bars(
    groups: Sequence[dict[str, Any]], path: str | os.PathLike, split: str = "val"
) -> Path:
    """Bars of mean mIoU with standard-deviation error bars, one bar per model x backbone.

    Args:
        groups: dicts with "model", "backbone", "miou_mean", "miou_std", "miou_runs" (list).
        split: the split the runs were evaluated on (the axis label).
    """
    plt = pyplot()
    labels = [f"{g['model']}\n{g['backbone']}" for g in groups]
    means = [100 * g["miou_mean"] for g in groups]
    stds = [100 * g["miou_std"] for g in groups]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(groups) + 1), 4))
    xs = list(range(len(groups)))
    ax.bar(xs, means, yerr=stds, capsize=4, color="#4c72b0", alpha=0.85)
    for x, g in zip(xs, groups, strict=True):
        runs = [100 * v for v in g.get("miou_runs", [])]
        ax.plot([x] * len(runs), runs, "k.", ms=5)
    long = max((len(g["model"]) for g in groups), default=0) > 14  # e.g. gsag_hybrid-no_group
    ax.set_xticks(
        xs, labels, fontsize=8, rotation=30 if long else 0, ha="right" if long else "center"
    )
    ax.set_ylabel(f"{split} mIoU (%): mean ± std, dots = seeds")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_differences(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Reference-minus-row mIoU differences with their 95 % intervals, one line per row.

    Args:
        rows: dicts with "reference", "other", "diff", "low", "high" (fractions), as
            `gsag.ablate.comparisons` returns; rows without an interval show the point only.
            A row whose "reference" is not the first row's (a pair of its own, such as
            incremental − basic) is labelled "a − b".
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.4))
    for y, r in enumerate(rows):
        if not math.isnan(r["low"]):
            ax.plot([100 * r["low"], 100 * r["high"]], [y, y], color="#4c72b0", lw=2)
        ax.plot([100 * r["diff"]], [y], "ko", ms=4)
    ax.axvline(0, color="grey", lw=0.8)
    ref = rows[0]["reference"] if rows else "reference"
    names = [
        r["other"] if r["reference"] == ref else f"{r['reference']} − {r['other']}" for r in rows
    ]
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.invert_yaxis()
    pairs = any(r["reference"] != ref for r in rows)
    ax.set_xlabel(
        f"mIoU of {ref} minus row"
        + (" (or the pair named)" if pairs else "")
        + " (points), 95 % Welch interval"
    )
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def plot_curves(
    runs: Sequence[tuple[str, str | os.PathLike]], path: str | os.PathLike, split: str = "val"
) -> Path:
    """Training loss and `split` mIoU of many runs; `runs` is (label, metrics.jsonl) pairs.

    Runs with the same label share a colour (e.g. one colour per model, one line per seed).
    """
    plt = pyplot()
    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(11, 4))
    colours: dict[str, Any] = {}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for label, log in runs:
        colour = colours.setdefault(label, cycle[len(colours) % len(cycle)])
        train, evals = read_metrics_log(log)
        first = label not in {line.get_label() for line in ax_loss.get_lines()}
        ax_loss.plot(
            [_iteration(r) for r in train],
            [r["loss"] for r in train],
            color=colour,
            lw=0.9,
            alpha=0.7,
            label=label if first else "_nolegend_",
        )
        ax_miou.plot(
            [_iteration(r) for r in evals],
            [100 * r["mIoU"] for r in evals],
            "o-",
            color=colour,
            ms=3,
            lw=0.9,
            alpha=0.7,
        )
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("training loss")
    ax_miou.set_xlabel("iteration")
    ax_miou.set_ylabel(f"{split} mIoU (%)")
    for ax in (ax_loss, ax_miou):
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    return save_figure(fig, path)


def plot_per_class_iou(
    groups: Sequence[dict[str, Any]], classes: Sequence[str], path: str | os.PathLike
) -> Path:
    """Grouped bars: per-class IoU (mean over seeds) for each model x backbone."""
    plt = pyplot()
    n = len(groups)
    width = 0.8 / max(n, 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(classes) * max(n, 2) / 2 + 2), 4))
    for i, g in enumerate(groups):
        xs = [c + (i - (n - 1) / 2) * width for c in range(len(classes))]
        values = [100 * (v if v is not None and not math.isnan(v) else 0.0) for v in g["iou_mean"]]
        ax.bar(xs, values, width=width, label=f"{g['model']} / {g['backbone']}")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("IoU (%), mean over seeds")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def image_grid(paths: Sequence[str | os.PathLike], path: str | os.PathLike, cols: int = 2) -> Path:
    """Tile images (e.g. overlays) into one PNG, resized to the first image's size."""
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in paths]
    if not images:
        raise ValueError("image_grid: no images given")
    w, h = images[0].size
    rows = math.ceil(len(images) / cols)
    grid = Image.new("RGB", (cols * w, rows * h), (255, 255, 255))
    for i, im in enumerate(images):
        grid.paste(im.resize((w, h)), ((i % cols) * w, (i // cols) * h))
    with atomic_path(path) as tmp:
        grid.save(tmp)
    return Path(path)


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
    from gsag.engine.evaluate import evaluate, inference_options
    from gsag.engine.evaluate import write_report as write_metrics

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(checkpoint)
    model, meta = load_model(checkpoint, map_location=device)
    cfg = from_dict(meta["config"], source=str(checkpoint))
    val_set = make_dataset(cfg, cfg.data.val_split, train=False)
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
    classes = list(meta["classes"])
    settings = {"checkpoint": str(checkpoint), "data": cfg.data.root, "split": cfg.data.val_split,
                "device": describe_device(device), **inference_options(cfg.eval),
                "images": metrics["images"]}  # fmt: skip
    write_metrics(metrics, classes, out, extra={"settings": settings})
    panels = _write_panels(model, meta, val_set, num_images, device, out)
    log = checkpoint.parent / "metrics.jsonl"
    curve = (
        plot_training_curve(log, out / "curve.png", title, cfg.data.val_split)
        if log.is_file()
        else None
    )
    lines = [f"# {title}", ""]
    lines += _run_lines(cfg, model.params_line(), checkpoint, meta, metrics["images"], device)
    if log.is_file():
        lines.append(f"- {training_line(training_facts(log), cfg.train.iters)}")
    lines += [f"- {n}" for n in notes]
    lines += _result_lines(metrics, classes, curve is not None, panels)
    return write_text(out / "report.md", "\n".join(lines))


def describe_device(device: Any) -> str:
    """A device in words for metrics.json and reports: "cpu (2 threads, torch 2.4.1)"."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"{device.type} ({torch.get_num_threads()} threads, torch {torch.__version__})"


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
    from gsag.predict import Predictor
    from gsag.visualize import report_figure

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
    device: str,
) -> list[str]:
    """The report header's list: model, checkpoint, data and device."""
    import torch

    m, e = cfg.model, cfg.eval
    threads = torch.get_num_threads() if device == "cpu" else None
    return [
        f"- model: `{m.name}` on `{m.backbone}` ({params_line}, "
        f"output stride {m.output_stride}, pretrained backbone: {m.pretrained})",
        f"- checkpoint: `{checkpoint}` (iteration {meta.get('iteration', '?')} of "
        f"{cfg.train.iters}, batch {cfg.train.batch_size}, crop {cfg.data.crop_size})",
        f"- data: `{cfg.data.root}`, trained on split `{cfg.data.train_split}`, "
        f"evaluated on `{cfg.data.val_split}` ({images} images, mode {e.mode}"
        f"{', flip' if e.flip else ''})",
        f"- device: {device}" + (f" ({threads} threads)" if threads else ""),
    ]


def _result_lines(
    metrics: dict[str, Any], classes: Sequence[str], curve: bool, panels: Sequence[Path]
) -> list[str]:
    """The report's sections: metrics table, training curve, prediction panels, confusion."""
    from gsag.engine.evaluate import metrics_table

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
