"""Train and evaluate a grid of models x backbones x seeds with one config; summarise it.

Layout of the output folder:

    OUT/runs/<label>__<backbone>__s<seed>__<fingerprint>/   one training run (engine run folder);
                                             <label> is the model, or <model>-<variant> for a
                                             named variant
        result.json                          written last: its presence marks the run finished
    OUT/results.json, OUT/results.md         mean ± std over seeds per model x backbone
    OUT/miou.png, OUT/curves.png, OUT/per_class_iou.png

The fingerprint is a hash of the run's resolved config without the settings that cannot change
its results (`FINGERPRINT_IGNORES`), and of the dataset's identity (`data_identity`: its
classes.yaml, which names the generator settings of generated data, and the ids of the training
and validation splits). A rerun skips every combination whose `result.json` exists under the
same fingerprint, so an interrupted ablation resumes where it stopped (the unfinished
combination continues from its last checkpoint), while a changed config, override or dataset
trains into new folders and never reuses an old run; old runs stay where they are. Runs recorded
before the fingerprint held the data (their `result.json` has no `data` entry) are found under
their config-only fingerprint and trusted as they are.

The reported mIoU of a run is its final evaluation (the last iteration), not the best over
evaluations: picking the best on the validation set would flatter every model.

Named variants (`VARIANTS`) are the component ablation of GSAG hybrid: each is a list of
overrides applied on top of the shared config, e.g. `no_gate` sets `model.kwargs.gate=false`.
The report gives every group's mIoU difference to a reference group (default: the full
gsag_hybrid) with a 95 % Welch t interval over seeds (`gsag.stats`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsag.atomic import write_json, write_text
from gsag.engine.evaluate import fmt_pct
from gsag.errors import OptionError
from gsag.report import (
    fmt_pm,
    mean_std,
    plot_curves,
    plot_differences,
    plot_miou_bars,
    plot_per_class_iou,
)

RESULT_FILE = "result.json"
# config keys that do not change a run's results: left out of its fingerprint
FINGERPRINT_IGNORES = (
    "output.run_dir",
    "output.safetensors",
    "train.num_threads",
    "train.num_workers",
    "train.tb_images",
)
BASE = "base"
#: The component ablation of GSAG hybrid: variant name -> overrides on top of the shared config.
VARIANTS: dict[str, tuple[str, ...]] = {
    BASE: (),
    "no_group": ("model.kwargs.group_formation=false",),
    "no_pointwise": ("model.kwargs.pointwise=false",),
    "no_mapping": ("model.kwargs.vector_mapping=false",),
    "no_gate": ("model.kwargs.gate=false",),
    "k3": ("model.kwargs.kernel_size=3",),
    "k11": ("model.kwargs.kernel_size=11",),
    "ce": ("loss.type=ce",),
}


@dataclass(frozen=True)
class Combo:
    """One cell of the grid."""

    model: str
    backbone: str
    seed: int
    variant: str = BASE

    @property
    def label(self) -> str:
        """The model, or `<model>-<variant>` for a named variant."""
        return self.model if self.variant == BASE else f"{self.model}-{self.variant}"

    @property
    def name(self) -> str:
        return f"{self.label}__{self.backbone}__s{self.seed}"


def grid(
    models: Sequence[str],
    backbones: Sequence[str],
    seeds: Sequence[int],
    variants: Sequence[str] = (BASE,),
) -> list[Combo]:
    """All combinations, seeds innermost (so a partial run covers few models fully)."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise OptionError(
            f"--variants: unknown ablation variant(s) {unknown}; valid: {', '.join(VARIANTS)}"
        )
    return [
        Combo(m, b, s, v) for b, m, v, s in itertools.product(backbones, models, variants, seeds)
    ]


def combo_overrides(combo: Combo) -> list[str]:
    """The `--set` style overrides that turn the shared config into this combination's run."""
    return [
        *VARIANTS[combo.variant],
        f"model.name={combo.model}",
        f"model.backbone={combo.backbone}",
        f"train.seed={combo.seed}",
    ]


def fingerprint(config: dict[str, Any], data: str | None = None) -> str:
    """8 hex digits of SHA-256 over a resolved config dict, minus `FINGERPRINT_IGNORES`, and
    the dataset identity `data` (None: the config alone, as runs were fingerprinted before)."""
    kept = json.loads(json.dumps(config))  # a deep copy
    for key in FINGERPRINT_IGNORES:
        section, name = key.split(".")
        kept.get(section, {}).pop(name, None)
    if data is not None:
        kept["data_identity"] = data
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def data_identity(cfg: Any) -> str | None:
    """16 hex digits of SHA-256 over the dataset at `cfg.data.root`: its classes.yaml (with the
    generator settings of generated data) and the ids of the training and validation splits;
    None when the dataset is not there (yet)."""
    from gsag.data.errors import DataError
    from gsag.data.layout import open_dataset

    d = cfg.data
    root = Path(d.root)
    digest = hashlib.sha256()
    try:
        for split in (d.train_split, d.val_split):
            ids = open_dataset(root, split, layout=d.layout).ids
            digest.update(json.dumps([split, [str(i) for i in ids]]).encode())
        classes = root / "classes.yaml"
        digest.update(classes.read_bytes() if classes.is_file() else b"")
    except (DataError, OSError):
        return None
    return digest.hexdigest()[:16]


def resolve_combo(
    config: str | os.PathLike | None,
    combo: Combo,
    out_dir: str | os.PathLike,
    overrides: Sequence[str] = (),
):
    """(resolved `Config` of the combination with its run folder set, dropped kwarg names)."""
    from gsag.config import load_config

    cfg = load_config(
        None if config is None else str(config), [*overrides, *combo_overrides(combo)]
    )
    cfg.model.kwargs, dropped = model_kwargs_for(combo.model, cfg.model.kwargs)
    runs = Path(out_dir) / "runs"
    data = data_identity(cfg)
    run_dir = runs / f"{combo.name}__{fingerprint(cfg.to_dict(), data)}"
    legacy = runs / f"{combo.name}__{fingerprint(cfg.to_dict())}" / RESULT_FILE
    recorded = not (run_dir / RESULT_FILE).is_file() and legacy.is_file()
    if recorded and "data" not in json.loads(legacy.read_text()):  # before the data counted
        run_dir = legacy.parent
    cfg.output.run_dir = str(run_dir)
    return cfg, dropped


def model_kwargs_for(model: str, kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Split the shared `model.kwargs` into those `model` takes and the names it drops.

    One config serves every model of the grid, so head options of another family (e.g. GSAG's
    `num_heads` for DeepLabV3) are dropped; shared ones (e.g. `head_channels`) and `levels`
    apply to every model. Anything that is no head option of any model is kept, so that the
    engine's check refuses it as it would in `gsag train`.
    """
    from gsag.models.check import EXTRA
    from gsag.models.segmentor import head_defaults, list_models

    taken = {*head_defaults(model), *EXTRA}
    others = {k for name in list_models() for k in head_defaults(name)} - taken
    dropped = sorted(k for k in kwargs if k in others)
    return {k: v for k, v in kwargs.items() if k not in dropped}, dropped


def _finite(v: Any) -> float:
    return float("nan") if v is None else float(v)


def run_combo(
    config: str | os.PathLike | None,
    combo: Combo,
    out_dir: str | os.PathLike,
    overrides: Sequence[str] = (),
    device: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train and evaluate one combination, or read its result if it already finished.

    An interrupted combination continues from its `last.pt` (the engine's resume).
    """
    from gsag.engine.train import train

    cfg, dropped = resolve_combo(config, combo, out_dir, overrides)
    run_dir = Path(cfg.output.run_dir)
    done = run_dir / RESULT_FILE
    if done.is_file():
        return json.loads(done.read_text())
    lost = [o for o in VARIANTS[combo.variant] if o.split("=")[0].split(".")[-1] in dropped]
    if lost:
        raise OptionError(
            f"variant {combo.variant!r} sets {lost}, which {combo.model} does not take"
        )
    start = time.perf_counter()
    # a folder left without last.pt (killed before its first save) is moved aside and redone
    out = train(cfg, resume=True, overwrite=True, quiet=quiet, device=device)
    if not out["metrics"]:  # last.pt was already final, but the result was never written
        out = train(cfg, overwrite=True, quiet=quiet, device=device)
    metrics = out["metrics"]
    result = {
        "model": combo.model,
        "variant": combo.variant,
        "label": combo.label,
        "backbone": combo.backbone,
        "seed": combo.seed,
        "mIoU": _finite(metrics["mIoU"]),
        "aAcc": _finite(metrics.get("aAcc")),
        "mAcc": _finite(metrics.get("mAcc")),
        "IoU": [_finite(v) for v in metrics["IoU"]],
        "best_mIoU": _finite(out.get("best_miou")),
        "train_seconds": round(time.perf_counter() - start, 1),
        "run_dir": str(out.get("run_dir", run_dir)),
        "checkpoint": str(out.get("checkpoint") or ""),
        "classes": _checkpoint_classes(out.get("checkpoint")),
        "model_kwargs": cfg.model.kwargs,
        "dropped_kwargs": dropped,
        "data": data_identity(cfg),
    }
    write_json(done, result)
    return result


def _label(result: dict[str, Any]) -> str:
    """A run's group name: its model, or `<model>-<variant>` (results before variants: model)."""
    return result.get("label") or result["model"]


def summarise(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group run results by model (variant included) x backbone: mean ± sample std over seeds."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((_label(r), r["backbone"]), []).append(r)
    summary = []
    for (model, backbone), runs in groups.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        row: dict[str, Any] = {"model": model, "backbone": backbone, "seeds": len(runs)}
        for key in ("mIoU", "aAcc", "mAcc", "best_mIoU"):
            mean, std = mean_std(_finite(r.get(key)) for r in runs)
            row[f"{key.lower()}_mean"], row[f"{key.lower()}_std"] = mean, std
        row["miou_runs"] = [_finite(r["mIoU"]) for r in runs]
        row["seed_list"] = [r["seed"] for r in runs]
        per_class = list(zip(*[[_finite(v) for v in r["IoU"]] for r in runs], strict=True))
        row["iou_mean"] = [mean_std(c)[0] for c in per_class]
        row["iou_std"] = [mean_std(c)[1] for c in per_class]
        row["train_seconds_mean"] = mean_std(r.get("train_seconds", math.nan) for r in runs)[0]
        summary.append(row)
    return summary


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


def comparisons(
    summary: Sequence[dict[str, Any]], reference: str = "gsag_hybrid", level: float = 0.95
) -> list[dict[str, Any]]:
    """mIoU of `reference` minus every other group of the same backbone, with a Welch interval.

    Returns one dict per other group: reference, other, backbone, and the fields of
    `gsag.stats.Difference` (diff, low, high, dof, n_a, n_b, decided).
    """
    from gsag.stats import Difference, welch_interval

    refs = {g["backbone"]: g for g in summary if g["model"] == reference}
    rows = []
    for g in summary:
        ref = refs.get(g["backbone"])
        if ref is None or g is ref:
            continue
        a, b = ([v for v in g_["miou_runs"] if not math.isnan(v)] for g_ in (ref, g))
        if a and b:
            d = welch_interval(a, b, level)
        else:  # every run of a side diverged (NaN mIoU): nothing to compare
            d = Difference(math.nan, math.nan, math.nan, math.nan, len(a), len(b), level)
        rows.append(
            {"reference": reference, "other": g["model"], "backbone": g["backbone"],
             "diff": d.diff, "low": d.low, "high": d.high, "dof": d.dof, "n_a": d.n_a,
             "n_b": d.n_b, "decided": d.decided}
        )  # fmt: skip
    return rows


def comparisons_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The differences table (percentage points) and a one-word reading of each interval."""
    if not rows:
        return ""
    ref = rows[0]["reference"]
    lines = [
        f"mIoU of {ref} minus each row (points; 95 % Welch t interval over seeds; "
        f"positive: {ref} is better):",
        "",
        "| row | backbone | seeds (ref / row) | difference | 95 % interval | reading |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        if math.isnan(r["diff"]):
            interval, reading = "no finite mIoU on one side", "undecided"
        elif math.isnan(r["low"]):
            interval, reading = "needs ≥ 2 seeds each", "undecided"
        else:
            interval = f"[{100 * r['low']:+.1f}, {100 * r['high']:+.1f}]"
            reading = ("ref better" if r["low"] > 0 else "row better") if r["decided"] else (
                "undecided")  # fmt: skip
        diff = "–" if math.isnan(r["diff"]) else f"{100 * r['diff']:+.1f}"
        lines.append(
            f"| {r['other']} | {r['backbone']} | {r['n_a']} / {r['n_b']} | "
            f"{diff} | {interval} | {reading} |"
        )
    return "\n".join(lines) + "\n"


def write_report(
    results: Sequence[dict[str, Any]],
    out_dir: str | os.PathLike,
    classes: Sequence[str] = (),
    meta: dict[str, Any] | None = None,
    reference: str = "gsag_hybrid",
) -> dict[str, Path]:
    """Write results.json, results.md and the three plots into `out_dir`.

    `reference`: the group every other group's mIoU is compared with (when it was run).
    """
    out = Path(out_dir)
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
    payload = {
        "meta": meta or {},
        "classes": list(classes),
        "summary": summary,
        "comparisons": diffs,
        "runs": results,
    }
    write_json(paths["json"], payload)
    header = "# Ablation results\n\n"
    if meta:
        header += "".join(f"- {k}: {v}\n" for k, v in meta.items()) + "\n"
    body = results_markdown(summary, classes)
    if diffs:
        body += "\n" + comparisons_markdown(diffs)
        paths["differences"] = plot_differences(diffs, out / "differences.png")
        body += "\n![differences](differences.png)\n"
    figures = (
        "\n![mIoU](miou.png)\n\n![curves](curves.png)\n\n![per-class IoU](per_class_iou.png)\n"
    )
    write_text(paths["markdown"], header + body + figures)
    plot_miou_bars(summary, paths["miou"])
    runs = [(_label(r), Path(r["run_dir"]) / "metrics.jsonl") for r in results]
    plot_curves(runs, paths["curves"])
    plot_per_class_iou(summary, classes, paths["per_class"])
    return paths


def run_ablation(
    config: str | os.PathLike | None,
    models: Sequence[str],
    backbones: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | os.PathLike,
    overrides: Sequence[str] = (),
    device: str | None = None,
    quiet: bool = False,
    on_start: Callable[[Combo, bool], None] | None = None,
    on_done: Callable[[Combo, dict], None] | None = None,
    variants: Sequence[str] = (BASE,),
    report_only: bool = False,
) -> dict[str, Any]:
    """Train every combination (skipping finished ones) and write the report.

    Args:
        config: YAML config shared by all runs (None: the defaults).
        models, backbones, seeds, variants: the grid (variants: names in `VARIANTS`).
        out_dir: report folder; runs go to `out_dir/runs/`.
        overrides: `key=value` overrides applied to every run before the grid's own.
        device: "cpu" or "cuda" (default: CUDA when available).
        quiet: hide the engine's per-run progress bar.
        on_start: called with (combo, already_finished) before each combination.
        on_done: called with (combo, result) after each combination.
        report_only: train nothing; report the combinations that already finished.

    Returns:
        {"results": per-run results, "summary": per-group summary, "paths": written files}.
    """
    combos = grid(models, backbones, seeds, variants)
    if not report_only and combos:  # generated data first: the fingerprints hash it
        from gsag.data.build import ensure_data

        ensure_data(resolve_combo(config, combos[0], out_dir, overrides)[0])
    results, covered = [], []
    for combo in combos:
        cfg, _ = resolve_combo(config, combo, out_dir, overrides)
        finished = (Path(cfg.output.run_dir) / RESULT_FILE).is_file()
        if report_only and not finished:
            continue
        if on_start is not None:
            on_start(combo, finished)
        result = run_combo(config, combo, out_dir, overrides, device=device, quiet=quiet)
        results.append(result)
        covered.append(combo)
        if on_done is not None:
            on_done(combo, result)
    if not results:  # only with report_only: every combination trains otherwise
        raise FileNotFoundError(
            f"no finished run of this grid under {Path(out_dir) / 'runs'}; "
            "train it first (drop --report-only)"
        )
    classes = _classes_of(results)

    def reported(key: str) -> str:  # what the report covers (with report_only, may be < asked)
        return " ".join(str(v) for v in dict.fromkeys(getattr(c, key) for c in covered))

    meta = {
        "config": str(config) if config else "(defaults)",
        "overrides": " ".join(overrides) or "(none)",
        "models": reported("model"),
        "variants": reported("variant"),
        "backbones": reported("backbone"),
        "seeds": " ".join(str(s) for s in sorted({c.seed for c in covered})),
    }
    paths = write_report(results, out_dir, classes, meta)
    return {"results": results, "summary": summarise(results), "paths": paths}


def _checkpoint_classes(checkpoint: str | os.PathLike | None) -> list[str]:
    """Class names stored in a training checkpoint (empty when unavailable)."""
    if not checkpoint or not Path(checkpoint).is_file():
        return []
    from gsag.engine.checkpoint import load_checkpoint

    return list(load_checkpoint(checkpoint)["meta"]["classes"])


def _classes_of(results: Sequence[dict[str, Any]]) -> list[str]:
    """Class names recorded by the first run that has them."""
    for r in results:
        if r.get("classes"):
            return list(r["classes"])
    return []
