"""Train and evaluate a grid of models x backbones x seeds with one config; summarise it.

Layout of the output folder:

    OUT/runs/<label>__<backbone>__s<seed>__<fingerprint>/   one training run (engine run folder);
                                             <label> is the model, or <model>-<variant> for a
                                             named variant
        result.json                          written last: its presence marks the run finished
    OUT/results.json, OUT/results.md         mean ± std over seeds per model x backbone
    OUT/miou.png, OUT/curves.png, OUT/per_class_iou.png

`{seed}` in an override stands for the run's seed: with `--set data.root=runs/ctx_d{seed}`
every seed trains on its own generated dataset (`gsag data synth --seed k`), so the spread over
seeds covers a new draw of the data too, not only training randomness. With
`--set data.val_split=test` a run evaluates on the held-out test split instead of val.
`<model>@key=value` applies to that model (or `<model>-<variant>` label) only, e.g.
`deeplabv3@optim.lr=3e-3`, so heads can run at the learning rate chosen for each on val.

The fingerprint is a hash of the run's resolved config without the settings that cannot change
its results (`FINGERPRINT_IGNORES`), and of the dataset's identity (`data_identity`: its
classes.yaml, which names the generator settings of generated data, and the ids of the training
and validation splits). A rerun skips every combination whose `result.json` exists under the
same fingerprint, so an interrupted ablation resumes where it stopped (the unfinished
combination continues from its last checkpoint), while a changed config, override or dataset
trains into new folders and never reuses an old run; old runs stay where they are. Runs recorded
before the fingerprint held the data (their `result.json` has no `data` entry) are found under
their config-only fingerprint and trusted as they are. A finished run whose folder name no longer
matches (a config key added since, which changes every hash, or `data.mean: []` against the
backbone's own values spelled out) is found by content (`find_recorded`): its `config.yaml`,
loaded with today's defaults, gives the same `recipe`.

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
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsag.atomic import write_json, write_text
from gsag.engine.evaluate import fmt_pct
from gsag.engine.run_log import read_metrics_log, record_iteration
from gsag.errors import OptionError
from gsag.trained.draw import pyplot, save_figure

RESULT_FILE = "result.json"
# config keys that do not change a run's results: left out of its fingerprint
FINGERPRINT_IGNORES = (
    "eval.batch_size",  # batched logits differ from single-image ones by float rounding only
    "output.run_dir",
    "output.safetensors",
    "train.num_threads",
    "train.num_workers",
    "train.tb_images",
)
BASE = "base"
#: Replaced by the combination's seed in the shared overrides (e.g. a data root per seed).
SEED_FIELD = "{seed}"
#: The context benchmark's look-alike pair told apart only by a scene band elsewhere.
CUE_PAIR = ("car", "boat")
#: A run "learns the cue" when its `CUE_PAIR` accuracy reaches this: halfway between chance
#: (0.5, the cue unused) and perfect (1.0). The runs are bimodal (about 0.5-0.6 or 0.95-1.0).
CUE_THRESHOLD = 0.75
#: Comparisons beyond reference-minus-row, each a claim (and a family) of its own.
EXTRA_PAIRS = (("gsag_incremental", "gsag_basic"),)
#: The component ablation of GSAG hybrid: variant name -> overrides on top of the shared config.
VARIANTS: dict[str, tuple[str, ...]] = {
    BASE: (),
    "no_group": ("model.kwargs.group_formation=false",),
    # the local branch: PSA and the gate that mixes it with G (called no_pointwise before)
    "no_local": ("model.kwargs.pointwise=false",),
    # the PSA alone: a 1x1 window attends to its own position only, so L = V; the gate stays
    "no_pointwise": ("model.kwargs.kernel_size=1",),
    # the global self-attention; G is the pooled context vector alone
    "no_global": ("model.kwargs.global_attention=false",),
    # every image-wide path: GSA, attention-mean pooling and mapping (L alone, no gate)
    "no_global_context": (
        "model.kwargs.global_attention=false",
        "model.kwargs.vector_mapping=false",
    ),
    # the global branch, gate and mapping only: no group formation, no PSA
    "global_only": ("model.kwargs.group_formation=false", "model.kwargs.kernel_size=1"),
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


def overrides_for(combo: Combo, overrides: Sequence[str]) -> list[str]:
    """The shared overrides that apply to `combo`: plain `key=value` ones, and
    `<group>@key=value` ones whose group is the combination's model or label (e.g.
    `deeplabv3@optim.lr=3e-3`: each head at the learning rate chosen for it)."""
    out = []
    for item in overrides:
        key = item.split("=", 1)[0]
        if "@" not in key:
            out.append(item)
        elif key.split("@", 1)[0] in (combo.model, combo.label):
            out.append(item.split("@", 1)[1])
    return out


def combo_overrides(combo: Combo) -> list[str]:
    """The `--set` style overrides that turn the shared config into this combination's run."""
    return [
        *VARIANTS[combo.variant],
        f"model.name={combo.model}",
        f"model.backbone={combo.backbone}",
        f"train.seed={combo.seed}",
    ]


def _kept(config: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a config dict without `FINGERPRINT_IGNORES`."""
    kept = json.loads(json.dumps(config))
    for key in FINGERPRINT_IGNORES:
        section, name = key.split(".")
        kept.get(section, {}).pop(name, None)
    return kept


def fingerprint(config: dict[str, Any], data: str | None = None) -> str:
    """8 hex digits of SHA-256 over a resolved config dict, minus `FINGERPRINT_IGNORES`, and
    the dataset identity `data` (None: the config alone, as runs were fingerprinted before)."""
    kept = _kept(config)
    if data is not None:
        kept["data_identity"] = data
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def recipe(cfg: Any) -> dict[str, Any]:
    """What a run's results depend on: the config without `FINGERPRINT_IGNORES`, with the
    input normalisation resolved (`data.mean: []` and the backbone's own values are the same
    recipe)."""
    from gsag.engine.datasets import input_norm

    kept = _kept(cfg.to_dict())
    kept["data"]["mean"], kept["data"]["std"] = input_norm(cfg)
    return kept


def find_recorded(runs: Path, name: str, cfg: Any, data: str | None) -> Path | None:
    """A finished run of combination `name` under `runs` with the same recipe as `cfg`, found
    by content rather than by folder name, so that a run survives a config key added since it
    was recorded (its config loads with that key at its default), or a default spelled another
    way. A run whose `result.json` names another dataset is not it; one recorded before the
    data counted (no `data` entry) is trusted, as by its old fingerprint."""
    from gsag.config import ConfigError, load_config

    want = recipe(cfg)
    for result in sorted(runs.glob(f"{name}__*/{RESULT_FILE}")):
        try:
            recorded = json.loads(result.read_text())
            old = load_config(result.parent / "config.yaml")
        except (OSError, ValueError, ConfigError):
            continue  # no usable config: never a match
        if recorded.get("data", data) == data and recipe(old) == want:
            return result.parent
    return None


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
    """(resolved `Config` of the combination with its run folder set, dropped kwarg names).

    `{seed}` in an override is the combination's seed, so the data can be part of the grid:
    `data.root=runs/ctx_d{seed}` trains seed k on a dataset generated with seed k.
    """
    from gsag.config import load_config

    shared = [o.replace(SEED_FIELD, str(combo.seed)) for o in overrides_for(combo, overrides)]
    cfg = load_config(None if config is None else str(config), [*shared, *combo_overrides(combo)])
    cfg.model.kwargs, dropped = model_kwargs_for(combo.model, cfg.model.kwargs)
    runs = Path(out_dir) / "runs"
    data = data_identity(cfg)
    run_dir = runs / f"{combo.name}__{fingerprint(cfg.to_dict(), data)}"
    legacy = runs / f"{combo.name}__{fingerprint(cfg.to_dict())}" / RESULT_FILE
    recorded = not (run_dir / RESULT_FILE).is_file() and legacy.is_file()
    if recorded and "data" not in json.loads(legacy.read_text()):  # before the data counted
        run_dir = legacy.parent
    elif not (run_dir / RESULT_FILE).is_file() and not (run_dir / "last.pt").is_file():
        run_dir = find_recorded(runs, combo.name, cfg, data) or run_dir
    cfg.output.run_dir = str(run_dir)
    return cfg, dropped


def model_kwargs_for(model: str, kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Split the shared `model.kwargs` into those `model` takes and the names it drops.

    One config serves every model of the grid, so head options of another family (e.g. GSAG's
    `num_heads` for DeepLabV3) are dropped; shared ones (e.g. `head_channels`) and `levels`
    apply to every model. Anything that is no head option of any model is kept, so that the
    engine's check refuses it as it would in `gsag train`.
    """
    from gsag.models.table import EXTRA, head_defaults, list_models

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
        "confusion": metrics.get("confusion"),
        # where it ran (the date is the end of training): another CPU's kernels round otherwise
        "environment": _run_environment(out, load_at_start),
    }
    result["cue_accuracy"] = cue_accuracy(result)
    write_json(done, result)
    return result


def _run_environment(out: dict[str, Any], load_at_start: float | None) -> dict[str, Any]:
    """`environment()` written when training has ended, with the load average at the start and
    at the end (records written before this, up to 2026-12-07, hold the one at the end under
    the `_at_start` name)."""
    from gsag.bench.environment import environment

    env = environment(out.get("device", "cpu"), out.get("threads"))
    if "load_average_1min_at_start" in env:  # read now, at the end
        env["load_average_1min_at_end"] = env["load_average_1min_at_start"]
        env["load_average_1min_at_start"] = load_at_start
    return env


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
        row["cue_runs"] = [_finite(r.get("cue_accuracy")) for r in runs]
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


def pair_accuracy(
    confusion: Sequence[Sequence[int]], classes: Sequence[str], a: str, b: str
) -> float:
    """Share right among pixels of class a or b predicted as a or b (confusion[true][pred]).

    A head that ignores the context cue telling a from b scores about 0.5; one that uses it
    scores near 1. NaN when neither class is in `classes` or the pair is never predicted.
    """
    if a not in classes or b not in classes:
        return math.nan
    i, j = list(classes).index(a), list(classes).index(b)
    right = confusion[i][i] + confusion[j][j]
    total = right + confusion[i][j] + confusion[j][i]
    return right / total if total else math.nan


def cue_accuracy(result: dict[str, Any], out_dir: str | os.PathLike | None = None) -> float:
    """The run's `CUE_PAIR` accuracy, from its final confusion matrix.

    Runs record their confusion matrix in result.json; older ones lack it, and then the
    `gsag eval` metrics.json in `out_dir/eval/<label>_s<seed>/` (docs/results.md's layout) is
    read instead. NaN when neither exists.
    """
    confusion, classes = result.get("confusion"), result.get("classes") or []
    if confusion is None and out_dir is not None:
        path = Path(out_dir) / "eval" / f"{_label(result)}_s{result['seed']}" / "metrics.json"
        if path.is_file():
            metrics = json.loads(path.read_text())
            confusion, classes = metrics.get("confusion"), metrics.get("classes", classes)
    if confusion is None:
        return math.nan
    return pair_accuracy(confusion, classes, *CUE_PAIR)


def _groups(summary: Sequence[dict[str, Any]], reference: str) -> list[tuple[dict, dict, str]]:
    """(a, b, family) of every comparison the report makes, in table order.

    Families: "heads" (the reference against another model), "components" (the reference
    against one of its own variants) and each of `EXTRA_PAIRS` alone (a claim of its own).
    """
    by_key = {(g["model"], g["backbone"]): g for g in summary}
    pairs = []
    for g in summary:
        ref = by_key.get((reference, g["backbone"]))
        if ref is not None and g is not ref:
            family = "components" if g["model"].startswith(f"{reference}-") else "heads"
            pairs.append((ref, g, family))
    for a, b in EXTRA_PAIRS:
        for g in summary:
            if g["model"] == a and (b, g["backbone"]) in by_key:
                pairs.append((g, by_key[(b, g["backbone"])], f"{a} vs {b}"))
    return pairs


def _compare_groups(ref: dict, other: dict, family: str, level: float) -> dict[str, Any]:
    """One comparison row: the Welch interval and p, Shapiro's reading, the rank interval, and
    which of the two the verdict uses (`gsag.stats.compare`)."""
    from gsag.stats import Difference, looks_normal, rank_interval, welch_interval

    a, b = ([v for v in g["miou_runs"] if not math.isnan(v)] for g in (ref, other))
    nan = math.nan
    if a and b:
        d, rank = welch_interval(a, b, level), rank_interval(a, b, level)
    else:  # every run of a side diverged (NaN mIoU): nothing to compare
        d = rank = Difference(nan, nan, nan, nan, len(a), len(b), level)
    normal = (looks_normal(a), looks_normal(b))
    use_rank = not all(normal) and not math.isnan(rank.diff)
    used = rank if use_rank else d
    bounded = not math.isinf(rank.low)
    return {
        "reference": ref["model"], "other": other["model"], "backbone": other["backbone"],
        "family": family, "diff": d.diff, "low": d.low, "high": d.high, "dof": d.dof, "p": d.p,
        "n_a": d.n_a, "n_b": d.n_b, "normal_a": normal[0], "normal_b": normal[1],
        "rank_shift": rank.diff, "rank_low": rank.low if bounded else nan,
        "rank_high": rank.high if bounded else nan, "rank_p": rank.p,
        "rank_coverage": rank.coverage, "verdict_method": used.method, "verdict_p": used.p,
    }  # fmt: skip


def comparisons(
    summary: Sequence[dict[str, Any]], reference: str = "gsag_hybrid", level: float = 0.95
) -> list[dict[str, Any]]:
    """mIoU of `reference` minus every other group of the same backbone (plus `EXTRA_PAIRS`).

    Each row gives the unadjusted Welch interval and p (diff, low, high, dof, p), the exact
    rank interval (rank_*), the test the verdict uses ("verdict_method": Welch unless
    Shapiro-Wilk rejects normality on a side, then rank) and its p, and the Holm-adjusted
    p-values over the row's family ("holm_family") and over every row ("holm_all"). "decided"
    is true when holm_family < 1 - level.
    """
    from gsag.stats import holm

    rows = [_compare_groups(a, b, fam, level) for a, b, fam in _groups(summary, reference)]
    for name in dict.fromkeys(r["family"] for r in rows):
        members = [r for r in rows if r["family"] == name]
        for r, adj in zip(members, holm([r["verdict_p"] for r in members]), strict=True):
            r["holm_family"] = adj
    for r, adj in zip(rows, holm([r["verdict_p"] for r in rows]), strict=True):
        r["holm_all"] = adj
        r["decided"] = bool(r["holm_family"] < 1 - level)
    return rows


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


def cue_rows(summary: Sequence[dict[str, Any]], level: float = 0.95) -> list[dict[str, Any]]:
    """Per group: how many runs learned the cue (`CUE_THRESHOLD`) with a Wilson interval.

    Groups whose runs have no pair accuracy (no confusion matrix, or no car/boat classes) are
    left out.
    """
    from gsag.stats import wilson_interval

    rows = []
    for g in summary:
        accs = [v for v in g.get("cue_runs", []) if not math.isnan(v)]
        if not accs:
            continue
        k = sum(v >= CUE_THRESHOLD for v in accs)
        w = wilson_interval(k, len(accs), level)
        rows.append({"model": g["model"], "backbone": g["backbone"], "learned": k,
                     "runs": len(accs), "rate": w.rate, "low": w.low, "high": w.high,
                     "accuracy": g["cue_runs"]})  # fmt: skip
    return rows


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


def shared_seeds(results: Sequence[dict[str, Any]]) -> list[int]:
    """The seeds every group ran (a grid extended for some groups reports these apart)."""
    seeds: dict[str, set[int]] = {}
    for r in results:
        seeds.setdefault(f"{_label(r)}/{r['backbone']}", set()).add(r["seed"])
    common = set.intersection(*seeds.values()) if seeds else set()
    return sorted(common)


def _report_body(
    results: Sequence[dict[str, Any]],
    classes: Sequence[str],
    reference: str,
    data_per_seed: bool = False,
) -> str:
    """The markdown between the header and the figures: results, comparisons, cue learning,
    the comparisons on the shared seeds when some groups ran more, and what the intervals
    cover (`data_per_seed`: each seed trained on its own dataset)."""
    summary = summarise(results)
    body = results_markdown(summary, classes)
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
) -> dict[str, Path]:
    """Write results.json, results.md and the plots into `out_dir`.

    `reference`: the group every other group's mIoU is compared with (when it was run).
    `split`: the split the runs were evaluated on (the plots' axis labels); `data_per_seed`:
    each seed trained on its own dataset (what the intervals cover).
    Each run's cue accuracy is read from its result or `out_dir/eval/` (`cue_accuracy`).
    """
    out = Path(out_dir)
    results = [{**r, "cue_accuracy": _finite(r.get("cue_accuracy"))} for r in results]
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
        header + _report_body(results, classes, reference, data_per_seed) + figures,
    )
    plot_miou_bars(summary, paths["miou"], split)
    curves = [(_label(r), Path(r["run_dir"]) / "metrics.jsonl") for r in results]
    plot_curves(curves, paths["curves"], split)
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
    classes = _classes_of(results)

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
    paths = write_report(
        results, out_dir, classes, meta, split=cfg.data.val_split, data_per_seed=per_seed
    )
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
