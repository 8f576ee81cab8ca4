"""The figures of an ablation report: mean mIoU per group, the differences with their intervals,
the training curves of every run and the per-class IoU."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gsag.engine.run_log import read_metrics_log, record_iteration
from gsag.trained.draw import pyplot, save_figure


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
            `gsag.ablate.analysis.comparisons` returns; rows without an interval show the point only.
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
            [record_iteration(r) for r in train],
            [r["loss"] for r in train],
            color=colour,
            lw=0.9,
            alpha=0.7,
            label=label if first else "_nolegend_",
        )
        ax_miou.plot(
            [record_iteration(r) for r in evals],
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
