"""Running an ablation: train and evaluate every cell of the grid (skipping finished ones,
continuing an interrupted one), record each run's result, then write the report."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gsag.ablate.analysis import cue_accuracy, summarise
from gsag.ablate.grid import BASE, SEED_FIELD, VARIANTS, Combo, grid, resolve_combo
from gsag.ablate.records import (
    RESULT_FILE,
    checkpoint_classes,
    classes_of,
    data_identity,
    finite,
    run_environment,
)
from gsag.ablate.report import write_report
from gsag.atomic import write_json
from gsag.errors import OptionError


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
    from gsag.bench.environment import load_average
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
    load_at_start = load_average()
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
        "mIoU": finite(metrics["mIoU"]),
        "aAcc": finite(metrics.get("aAcc")),
        "mAcc": finite(metrics.get("mAcc")),
        "IoU": [finite(v) for v in metrics["IoU"]],
        "best_mIoU": finite(out.get("best_miou")),
        "train_seconds": round(time.perf_counter() - start, 1),
        "run_dir": str(out.get("run_dir", run_dir)),
        "checkpoint": str(out.get("checkpoint") or ""),
        "classes": checkpoint_classes(out.get("checkpoint")),
        "model_kwargs": cfg.model.kwargs,
        "dropped_kwargs": dropped,
        "data": data_identity(cfg),
        "confusion": metrics.get("confusion"),
        # where it ran (the date is the end of training): another CPU's kernels round otherwise
        "environment": run_environment(out, load_at_start),
    }
    result["cue_accuracy"] = cue_accuracy(result)
    write_json(done, result)
    return result


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
    paired: bool = False,
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
        paired: the report's primary analysis is paired by seed (`write_report`).

    Returns:
        {"results": per-run results, "summary": per-group summary, "paths": written files}.
    """
    combos = grid(models, backbones, seeds, variants)
    if not report_only and combos:  # generated data first: the fingerprints hash it
        from gsag.engine.datasets import ensure_data

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
    classes = classes_of(results)

    def reported(key: str) -> str:  # what the report covers (with report_only, may be < asked)
        return " ".join(str(v) for v in dict.fromkeys(getattr(c, key) for c in covered))

    per_seed = any(SEED_FIELD in o for o in overrides)
    meta = {
        "config": str(config) if config else "(defaults)",
        "overrides": " ".join(overrides) or "(none)",
        "models": reported("model"),
        "variants": reported("variant"),
        "backbones": reported("backbone"),
        "seeds": " ".join(str(s) for s in sorted({c.seed for c in covered})),
        "evaluated on": f"split {cfg.data.val_split!r} (the last evaluation of each run)",
        "data per seed": "yes ({seed} in an override)"
        if per_seed
        else "no: every run trains on the same data, so intervals cover training randomness only",
    }
    if paired:
        meta["analysis"] = "paired by seed (paired t, exact sign-flip p, Holm by family)"
    paths = write_report(
        results, out_dir, classes, meta, split=cfg.data.val_split, data_per_seed=per_seed,
        paired=paired,
    )  # fmt: skip
    return {"results": results, "summary": summarise(results), "paths": paths}
