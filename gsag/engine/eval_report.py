"""What an evaluation writes: metrics.json, metrics.md (a settings table above the per-class
and summary metrics) and confusion.png (row-normalised), each atomically; and how metrics and
devices are shown in words."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gsag.atomic import atomic_path, write_json, write_text


def metrics_table(metrics: dict[str, Any], classes: Sequence[str]) -> str:
    """Markdown table of per-class IoU and accuracy, then the summary metrics (percent)."""
    lines = ["| class | IoU | Acc |", "| --- | ---: | ---: |"]
    for name, iou, acc in zip(classes, metrics["IoU"], metrics["Acc"], strict=True):
        lines.append(f"| {name} | {fmt_pct(iou)} | {fmt_pct(acc)} |")
    lines += [
        "",
        "| mIoU | aAcc | mAcc | FWIoU |",
        "| ---: | ---: | ---: | ---: |",
        f"| {fmt_pct(metrics['mIoU'])} | {fmt_pct(metrics['aAcc'])} | {fmt_pct(metrics['mAcc'])} "
        f"| {fmt_pct(metrics['FWIoU'])} |",
    ]
    return "\n".join(lines) + "\n"


def settings_table(settings: dict[str, Any]) -> str:
    """What an evaluation covered, as a Markdown table above its metrics (None values left out)."""
    lines = ["| setting | value |", "| --- | --- |"]
    for key, value in settings.items():
        if value is not None:
            lines.append(f"| {key} | {value} |")
    return "\n".join(lines) + "\n\n"


def fmt_pct(value: float | None, digits: int = 2) -> str:
    """A fraction as percent with `digits` decimals ('45.31'); '–' for None or NaN."""
    return "–" if value is None or math.isnan(value) else f"{100 * value:.{digits}f}"


def write_report(
    metrics: dict[str, Any],
    classes: Sequence[str],
    out_dir: str | os.PathLike,
    extra: dict | None = None,
) -> dict[str, Path]:
    """Write metrics.json, metrics.md and confusion.png into `out_dir` (atomically each).

    `extra` goes into metrics.json; its "settings" (checkpoint, mode, crop, ...) also head
    metrics.md as a table.

    Returns:
        {"json": path, "markdown": path, "plot": path}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in metrics.items() if k != "samples"}
    data["classes"] = list(classes)
    data["IoU_by_class"] = dict(zip(classes, metrics["IoU"], strict=True))
    if extra:
        data.update(extra)
    paths = {
        "json": out / "metrics.json",
        "markdown": out / "metrics.md",
        "plot": out / "confusion.png",
    }
    write_json(paths["json"], data)
    settings = (extra or {}).get("settings")
    head = settings_table(settings) if settings else ""
    write_text(paths["markdown"], head + metrics_table(metrics, classes))
    save_confusion_plot(metrics["confusion"], classes, paths["plot"])
    return paths


#: confusion matrices up to this many classes show their values in the cells
MAX_ANNOTATED_CLASSES = 30


def confusion_labels(norm: torch.Tensor) -> dict[tuple[int, int], str]:
    """Cell texts of a row-normalised confusion matrix (n, n): percent without decimals, "<1"
    for a small non-zero share, nothing for an empty cell."""
    labels = {}
    for i, row in enumerate(norm.tolist()):
        for j, value in enumerate(row):
            if value > 0:
                labels[(i, j)] = f"{100 * value:.0f}" if value >= 0.005 else "<1"
    return labels


def save_confusion_plot(confusion: Sequence[Sequence[int]], classes: Sequence[str], path) -> None:
    """Row-normalised confusion matrix (true class per row) as a PNG, written atomically; the
    cells show their percentages (up to `MAX_ANNOTATED_CLASSES` classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mat = torch.tensor(confusion, dtype=torch.float64)
    norm = mat / mat.sum(1, keepdim=True).clamp(min=1)
    n = len(classes)
    size = max(4.0, 0.4 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(100 * norm.numpy(), cmap="Blues", vmin=0, vmax=100)  # % like the cells
    ax.set_xticks(range(n), classes, rotation=90)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046, label="%")
    if n <= MAX_ANNOTATED_CLASSES:
        for (i, j), text in confusion_labels(norm).items():
            dark = float(norm[i, j]) > 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")  # fmt: skip
    ax.set_title("confusion (% of each true class's pixels)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def describe_device(device: Any) -> str:
    """A device in words for metrics.json and reports: "cpu (2 threads, torch 2.4.1)"."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"{device.type} ({torch.get_num_threads()} threads, torch {torch.__version__})"
