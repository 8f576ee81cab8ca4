"""The ablation report: results.json, results.md (tables of results, comparisons and cue
learning, and what the intervals cover) and the figures of `gsag.ablate.plots`."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gsag.ablate.analysis import (
    CUE_PAIR,
    CUE_THRESHOLD,
    CUE_THRESHOLDS,
    comparisons,
    cue_accuracy,
    cue_rows,
    cue_tests,
    group_label,
    paired_comparisons,
    shared_seeds,
    summarise,
)
from gsag.ablate.plots import plot_curves, plot_differences, plot_miou_bars, plot_per_class_iou
from gsag.ablate.records import finite
from gsag.atomic import write_json, write_text
from gsag.engine.eval_report import fmt_pct


def fmt_pm(mean: float, std: float, digits: int = 1) -> str:
    """Fractions as '45.3 ± 1.2' (percent); '–' for a NaN mean."""
    if math.isnan(mean):
        return "–"
    return f"{fmt_pct(mean, digits)} ± {100 * std:.{digits}f}"


def results_markdown(summary: Sequence[dict[str, Any]], classes: Sequence[str]) -> str:
    """The results table (mean ± std over seeds, percent) and a per-class IoU table."""
    lines = [
        "| model | backbone | seeds | mIoU | aAcc | mAcc | best-eval mIoU | train s/run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for g in summary:
        lines.append(
            f"| {g['model']} | {g['backbone']} | {g['seeds']} | "
            f"{fmt_pm(g['miou_mean'], g['miou_std'])} | {fmt_pm(g['aacc_mean'], g['aacc_std'])} | "
            f"{fmt_pm(g['macc_mean'], g['macc_std'])} | "
            f"{fmt_pm(g['best_miou_mean'], g['best_miou_std'])} | {g['train_seconds_mean']:.0f} |"
        )
    if classes and summary:
        lines += [
            "",
            "Per-class IoU (%, mean over seeds):",
            "",
            "| model | backbone | " + " | ".join(classes) + " |",
            "| --- | --- | " + " | ".join("---:" for _ in classes) + " |",
        ]
        for g in summary:
            cells = [fmt_pct(v, digits=1) for v in g["iou_mean"]]
            lines.append(f"| {g['model']} | {g['backbone']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt_interval(low: float, high: float) -> str:
    return f"[{100 * low:+.1f}, {100 * high:+.1f}]"


def _fmt_p(p: float) -> str:
    return "–" if math.isnan(p) else f"{p:.3f}"


def _comparison_cells(r: dict[str, Any]) -> list[str]:
    """The markdown cells of one comparison row after its name and seeds."""
    if math.isnan(r["diff"]):
        return ["–", "no finite mIoU on one side", "–", "–", "–", "–", "–", "–", "undecided"]
    welch = "needs ≥ 2 seeds each" if math.isnan(r["low"]) else _fmt_interval(r["low"], r["high"])
    rank = f"{100 * r['rank_shift']:+.1f} " + (
        "unbounded (too few runs)"
        if math.isnan(r["rank_low"])
        else _fmt_interval(r["rank_low"], r["rank_high"])
    )
    normal = " / ".join("yes" if r[k] else "**no**" for k in ("normal_a", "normal_b"))
    better = "ref better" if r["diff"] > 0 else "row better"
    reading = better if r["decided"] else "undecided"
    return [f"{100 * r['diff']:+.1f}", welch, _fmt_p(r["p"]), normal, rank, r["verdict_method"],
            _fmt_p(r["holm_family"]), _fmt_p(r["holm_all"]), reading]  # fmt: skip


def comparisons_markdown(rows: Sequence[dict[str, Any]], level: float = 0.95) -> str:
    """The differences table (percentage points): declared family, unadjusted intervals,
    Holm-adjusted p-values and the reading each verdict rests on."""
    if not rows:
        return ""
    pct = f"{100 * level:g} %"
    families = ", ".join(
        f"{name} ({sum(r['family'] == name for r in rows)})"
        for name in dict.fromkeys(r["family"] for r in rows)
    )
    lines = [
        f"Comparisons (points; a − b, positive: a is better). The comparison family is every "
        f"row of this table ({len(rows)}), split into {families}. Intervals are unadjusted "
        f"{pct} intervals; p-values are adjusted by Holm over the row's family and over all "
        f"rows. The verdict's test is Welch's t, or the exact Mann-Whitney test with its "
        f"Hodges-Lehmann interval when Shapiro-Wilk (p < 0.05) doubts normality on either side "
        f"(column 'normal'); a row is decided when its Holm p over its family is below "
        f"{1 - level:.2g}.",
        "",
        f"| a | b | family | backbone | seeds (a / b) | difference | {pct} Welch interval | "
        f"Welch p | normal (a / b) | rank shift [{pct} interval] | verdict uses | "
        f"Holm p (family) | Holm p (all) | reading |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: | --- |",
    ]
    for r in rows:
        cells = [r["reference"], r["other"], r["family"], r["backbone"], f"{r['n_a']} / {r['n_b']}"]
        lines.append("| " + " | ".join(cells + _comparison_cells(r)) + " |")
    return "\n".join(lines) + "\n"


def cue_markdown(rows: Sequence[dict[str, Any]], level: float = 0.95) -> str:
    """The cue-learning table: a count with its Wilson interval, apart from mIoU."""
    if not rows:
        return ""
    a, b = CUE_PAIR
    lines = [
        f"Cue learning, a separate outcome from mIoU: a run learns the {a}/{b} cue when its "
        f"{a}-vs-{b} pair accuracy (among the pixels of either class predicted as either, the "
        f"share right) is at least {CUE_THRESHOLD}, halfway between chance (0.5) and perfect. "
        f"Rate with its {100 * level:g} % Wilson interval over the runs of the group.",
        "",
        f"| group | backbone | learned / runs | rate | {100 * level:g} % Wilson interval | "
        f"{a}-vs-{b} accuracy per seed |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        accs = " / ".join("–" if math.isnan(v) else f"{v:.2f}" for v in r["accuracy"])
        lines.append(
            f"| {r['model']} | {r['backbone']} | {r['learned']} / {r['runs']} | {r['rate']:.2f} "
            f"| [{r['low']:.2f}, {r['high']:.2f}] | {accs} |"
        )
    return "\n".join(lines) + "\n"


def paired_markdown(rows: Sequence[dict[str, Any]], level: float = 0.95) -> str:
    """The paired-by-seed comparisons (`paired_comparisons`): the primary analysis of a grid
    whose seed k is shared by every group."""
    if not rows:
        return ""
    pct = f"{100 * level:g} %"
    lines = [
        "## Paired by seed (the primary analysis)",
        "",
        "Seed k of both groups trained with seed k (and, with a data seed, on dataset k), so "
        "each comparison rests on the differences d_k = a_k − b_k over the seeds both ran: "
        f"their mean (points), its paired t {pct} interval and p, and the exact two-sided "
        "sign-flip p (all 2^n sign assignments of the d_k; the primary p), Holm-adjusted over "
        f"the row's family. A row is decided when its Holm p is below {1 - level:.2g}.",
        "",
        f"| a | b | family | backbone | pairs | difference | {pct} paired t interval | t p | "
        "sign-flip p | Holm p (family) | reading |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        interval = "–" if math.isnan(r["low"]) else _fmt_interval(r["low"], r["high"])
        cells = [r["reference"], r["other"], r["family"], r["backbone"], str(len(r["seeds"])),
                 f"{100 * r['diff']:+.1f}", interval, _fmt_p(r["t_p"]), _fmt_p(r["flip_p"]),
                 _fmt_p(r["holm_family"]), r["reading"]]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cue_tests_markdown(rows: Sequence[dict[str, Any]], reference: str) -> str:
    """Cue counts at each threshold of `CUE_THRESHOLDS` and Fisher's test against the reference."""
    if not rows:
        return ""
    heads = " | ".join(f"≥ {t:g}" for t in CUE_THRESHOLDS)
    lines = [
        f"Cue counts at the thresholds {', '.join(f'{t:g}' for t in CUE_THRESHOLDS)} (how the "
        f"counts move with the threshold), and Fisher's exact two-sided p of {reference}'s "
        f"count against each group's at {CUE_THRESHOLD} (unadjusted, a secondary outcome).",
        "",
        f"| group | backbone | runs | {heads} | Fisher p vs {reference} |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in CUE_THRESHOLDS) + " | ---: |",
    ]
    for r in rows:
        counts = " | ".join(str(r["counts"][f"{t:g}"]) for t in CUE_THRESHOLDS)
        lines.append(
            f"| {r['model']} | {r['backbone']} | {r['runs']} | {counts} | {_fmt_p(r['fisher_p'])} |"
        )
    return "\n".join(lines) + "\n"


def _report_body(
    results: Sequence[dict[str, Any]],
    classes: Sequence[str],
    reference: str,
    data_per_seed: bool = False,
    paired: bool = False,
) -> str:
    """The markdown between the header and the figures: results, (`paired`: the paired
    analysis and the cue tests,) comparisons, cue learning, the comparisons on the shared seeds
    when some groups ran more, and what the intervals cover (`data_per_seed`: each seed
    trained on its own dataset)."""
    summary = summarise(results)
    body = results_markdown(summary, classes)
    if paired:
        body += "\n" + paired_markdown(paired_comparisons(summary, reference))
        body += "\n" + cue_tests_markdown(cue_tests(summary, reference), reference)
        body += "\n## Unpaired comparisons (Welch and rank intervals)\n"
    diffs = comparisons(summary, reference)
    if diffs:
        body += "\n" + comparisons_markdown(diffs) + "\n![differences](differences.png)\n"
    cues = cue_rows(summary)
    if cues:
        body += "\n" + cue_markdown(cues)
    seeds = shared_seeds(results)
    subset = [r for r in results if r["seed"] in seeds]
    if seeds and len(subset) < len(results):
        diffs = comparisons(summarise(subset), reference)
        if diffs:
            body += (
                f"\n## On seeds {', '.join(map(str, seeds))} only\n\nThe seeds every group ran; "
                "the other seeds were added to some groups later, so this is the result before "
                "that extension.\n\n" + comparisons_markdown(diffs)
            )
    cover = (
        "Each seed trained on its own dataset ({seed} in the data) and was scored on that "
        "dataset's split, so it covers a new draw of the data as well as training randomness "
        "(initialisation, data order)."
        if data_per_seed
        else "Every run trains on the same data and is scored on the same split (no data seed "
        "in the grid), so that is training randomness only (initialisation, data order), not a "
        "new draw of the data."
    )
    return body + f"\nWhat the intervals cover: the spread over the runs of a group. {cover}\n"


def write_report(
    results: Sequence[dict[str, Any]],
    out_dir: str | os.PathLike,
    classes: Sequence[str] = (),
    meta: dict[str, Any] | None = None,
    reference: str = "gsag_hybrid",
    split: str = "val",
    data_per_seed: bool = False,
    paired: bool = False,
) -> dict[str, Path]:
    """Write results.json, results.md and the plots into `out_dir`.

    `reference`: the group every other group's mIoU is compared with (when it was run).
    `split`: the split the runs were evaluated on (the plots' axis labels); `data_per_seed`:
    each seed trained on its own dataset (what the intervals cover); `paired`: the paired
    analysis by seed comes first (`paired_comparisons`, `cue_tests`; in results.json too).
    Each run's cue accuracy is read from its result or `out_dir/eval/` (`cue_accuracy`).
    """
    out = Path(out_dir)
    results = [{**r, "cue_accuracy": finite(r.get("cue_accuracy"))} for r in results]
    for r in results:
        if math.isnan(r["cue_accuracy"]):
            r["cue_accuracy"] = cue_accuracy(r, out)
    summary = summarise(results)
    diffs = comparisons(summary, reference)
    if not classes and results:
        classes = [f"class {i}" for i in range(len(results[0]["IoU"]))]
    paths = {
        "json": out / "results.json",
        "markdown": out / "results.md",
        "miou": out / "miou.png",
        "curves": out / "curves.png",
        "per_class": out / "per_class_iou.png",
    }
    runs = [{k: v for k, v in r.items() if k != "confusion"} for r in results]
    payload = {
        "meta": meta or {},
        "classes": list(classes),
        "summary": summary,
        "comparisons": diffs,
        "cue_learning": cue_rows(summary),
        "runs": runs,
    }
    if paired:
        payload["paired"] = paired_comparisons(summary, reference)
        payload["cue_tests"] = cue_tests(summary, reference)
    write_json(paths["json"], payload)
    header = "# Ablation results\n\n"
    if meta:
        header += "".join(f"- {k}: {v}\n" for k, v in meta.items()) + "\n"
    if diffs:
        paths["differences"] = plot_differences(diffs, out / "differences.png")
    figures = (
        "\n![mIoU](miou.png)\n\n![curves](curves.png)\n\n![per-class IoU](per_class_iou.png)\n"
    )
    write_text(
        paths["markdown"],
        header + _report_body(results, classes, reference, data_per_seed, paired) + figures,
    )
    plot_miou_bars(summary, paths["miou"], split)
    curves = [(group_label(r), Path(r["run_dir"]) / "metrics.jsonl") for r in results]
    plot_curves(curves, paths["curves"], split)
    plot_per_class_iou(summary, classes, paths["per_class"])
    return paths
