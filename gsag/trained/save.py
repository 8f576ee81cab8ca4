"""Write a pretrained folder (`gsag.trained.folder` describes it) from a run, a checkpoint, a
`Predictor` or a model in memory: weights, config.json, the model card and its plots.

    import gsag
    gsag.save_pretrained("runs/demo", "demo-model")
    predictor = gsag.Predictor.from_pretrained("demo-model")
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from gsag.atomic import atomic_path, write_json, write_text
from gsag.errors import CheckpointError, UsageError
from gsag.trained.card import is_own_evaluation, render_card, write_plots
from gsag.trained.folder import (
    CARD_NAME,
    CONFIG_NAME,
    EVAL_KEYS,
    FORMAT,
    FORMAT_VERSION,
    ONNX_NAME,
    PLOTS_DIR,
    WEIGHTS_NAME,
    Trained,
    example_size,
    load_folder,
)
from gsag.trained.predict import Predictor
from gsag.version import __version__


def save_pretrained(
    model_or_run: Any,
    folder: str | os.PathLike,
    *,
    checkpoint: str | None = None,
    meta: dict[str, Any] | None = None,
    include_aux: bool = False,
    onnx: bool = False,
    repo_id: str | None = None,
    evaluation: str | os.PathLike | None = None,
) -> Path:
    """Write a pretrained folder (its format: `gsag.trained.folder`) and return it.

    Args:
        model_or_run: a run folder (its best.pt, else last.pt), a `.pt` / `.safetensors`
            file, a `Predictor`, or a `Segmentor` with `meta` (as `load_model` returns it).
        folder: where to write; an existing folder must be empty or a gsag pretrained folder.
        checkpoint: in a run folder, the checkpoint file name to save (e.g. "last.pt").
        include_aux: keep the training-only auxiliary head (for fine-tuning).
        onnx: also write model.onnx.
        repo_id: the Hub repo the card's usage example names (default: a placeholder).
        evaluation: the metrics.json the card reports (default: the newest evaluation of the
            checkpoint in its run folder with the run's own settings, `is_own_evaluation`).
    """
    folder = Path(folder)
    if isinstance(model_or_run, (str, os.PathLike)) and Path(model_or_run).resolve() == (
        folder.resolve()
    ):
        raise UsageError(f"{folder} is both the model and the target; pass another folder")
    trained = gather(model_or_run, checkpoint=checkpoint, meta=meta, evaluation=evaluation)
    _prepare_target(folder)
    config = folder_config(trained, include_aux)
    _write_weights(trained.model, folder / WEIGHTS_NAME, include_aux)
    write_json(folder / CONFIG_NAME, config)
    if onnx:
        from gsag.trained.export import export_onnx  # onnx only when asked for

        size = example_size(config["eval"].get("crop_size"))
        export_onnx(trained.model.eval(), folder / ONNX_NAME, *size)
    plots = write_plots(trained, folder)
    write_text(folder / CARD_NAME, render_card(trained, config, plots, repo_id or None))
    return folder


def _prepare_target(folder: Path) -> None:
    """Create `folder`, or empty an earlier pretrained folder of what a save may not rewrite
    (model.onnx, plots/); any other non-empty folder is refused."""
    if folder.is_file():
        raise UsageError(f"{folder} is a file; pass a folder to write the model into")
    if folder.is_dir() and any(folder.iterdir()):
        try:
            ours = json.loads((folder / CONFIG_NAME).read_text()).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise UsageError(
                f"{folder} is not empty and holds no gsag model; pass a new or empty folder"
            )
        (folder / ONNX_NAME).unlink(missing_ok=True)
        shutil.rmtree(folder / PLOTS_DIR, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


def gather(
    model_or_run: Any,
    checkpoint: str | None = None,
    meta: dict[str, Any] | None = None,
    evaluation: str | os.PathLike | None = None,
) -> Trained:
    """A `Trained` from any of what `save_pretrained` accepts, with the evaluation its card
    reports (`evaluation`, else the run's own: `own_evaluation`)."""
    if isinstance(model_or_run, Predictor):
        return Trained(model_or_run.model, dict(model_or_run.meta))  # type: ignore[arg-type]
    if isinstance(model_or_run, nn.Module):
        if meta is None:
            raise UsageError("save_pretrained(model, ...) needs meta= (classes, palette, mean, "
                             "std), e.g. the meta that gsag.engine.checkpoint.load_model returns")  # fmt: skip
        return Trained(model_or_run, dict(meta))  # type: ignore[arg-type]
    path = Path(model_or_run)
    if path.is_dir() and (path / CONFIG_NAME).is_file() and not checkpoint:
        model, folder_meta = load_folder(path)
        return Trained(model, folder_meta, run_dir=path)
    run_dir, ckpt, _ = find_checkpoint(path, checkpoint)
    from gsag.engine.checkpoint import load_model

    model, ckpt_meta = load_model(ckpt)
    if evaluation is not None:
        metrics_path: Path | None = Path(evaluation)
    else:
        metrics_path = own_evaluation(run_dir, ckpt, ckpt_meta.get("config") or {})
    try:
        metrics = json.loads(metrics_path.read_text()) if metrics_path else None
    except (OSError, ValueError) as e:
        raise UsageError(f"--evaluation {evaluation}: cannot be read as the metrics.json of "
                         f"gsag eval or gsag demo ({e})") from e  # fmt: skip
    return Trained(model, ckpt_meta, ckpt, run_dir, metrics, metrics_path)


def find_checkpoint(path: Path, name: str | None = None) -> tuple[Path, Path, Path | None]:
    """(run folder, checkpoint, its metrics.json or None) for a run folder or a checkpoint file.

    In a run folder: `name`, else the first of best.pt and last.pt that the run holds an
    evaluation of with its own settings (`own_evaluation`; any evaluation when the folder has no
    config.yaml), else best.pt, else last.pt.
    """
    if path.is_file():
        return path.parent, path, find_evaluation(path.parent, path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist; pass a run folder or a checkpoint")
    present = [path / n for n in ([name] if name else ["best.pt", "last.pt"])]
    present = [p for p in present if p.is_file()]
    if not present:
        wanted = name or "best.pt or last.pt"
        raise CheckpointError(f"{path} holds no {wanted}; pass a run folder written by gsag train")
    config = _run_config(path)
    evaluated = [
        (p, find_evaluation(path, p) if config is None else own_evaluation(path, p, config))
        for p in present
    ]
    return (path, *next((e for e in evaluated if e[1] is not None), (present[0], None)))


def _run_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's resolved config (its config.yaml, read as plain data), None without one."""
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def find_evaluation(run_dir: Path, checkpoint: Path) -> Path | None:
    """The newest metrics.json in `run_dir` (or one folder down: eval_*/, report/) whose
    settings name `checkpoint`; None when the run holds no evaluation of it."""
    found = find_evaluations(run_dir, checkpoint)
    return found[0] if found else None


def find_evaluations(run_dir: Path, checkpoint: Path) -> list[Path]:
    """Every metrics.json in `run_dir` (or one folder down) whose settings name `checkpoint`,
    newest first."""
    found = []
    for path in [run_dir / "metrics.json", *run_dir.glob("*/metrics.json")]:
        try:
            named = json.loads(path.read_text()).get("settings", {}).get("checkpoint")
        except (OSError, ValueError, AttributeError):
            continue
        if named and _same_file(Path(named), checkpoint, path):
            found.append(path)
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def own_evaluation(run_dir: Path, checkpoint: Path, config: dict[str, Any]) -> Path | None:
    """The newest evaluation of `checkpoint` with the run's own settings (`is_own_evaluation`:
    those of `config`, the run's training config), so that a later multi-scale + flip
    `gsag eval` does not become the card's number unless asked for (`--evaluation`)."""
    for path in find_evaluations(run_dir, checkpoint):
        settings = json.loads(path.read_text()).get("settings") or {}
        if is_own_evaluation(settings, config):
            return path
    return None


def _same_file(named: Path, checkpoint: Path, metrics: Path) -> bool:
    """Whether a metrics.json's `settings.checkpoint` (as typed, maybe relative to another working
    folder) is `checkpoint`: the same file, or the same name in the run it lies in."""
    if named.exists() and named.resolve() == checkpoint.resolve():
        return True
    inside = checkpoint.parent.resolve() in metrics.resolve().parents
    return named.name == checkpoint.name and not named.is_absolute() and inside


def folder_config(trained: Trained, include_aux: bool = False) -> dict[str, Any]:
    """config.json of a pretrained folder."""
    from gsag.config import EvalConfig
    from gsag.data.io import IMAGENET_MEAN, IMAGENET_STD

    meta = trained.meta
    run_config = dict(meta.get("config") or {})
    eval_section = run_config.get("eval") or {}
    defaults = EvalConfig()
    mean, std = list(meta.get("mean", IMAGENET_MEAN)), list(meta.get("std", IMAGENET_STD))
    model_args = dict(trained.model.model_args or meta["model_args"])
    model_args["aux"] = bool(include_aux and model_args.get("aux"))
    config: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gsag_version": __version__,
        "model_args": model_args,
        "classes": list(meta["classes"]),
        "palette": [list(c) for c in meta["palette"]],
        "ignore_index": meta.get("ignore_index", 255),
        "input": {
            "color": "RGB",
            "layout": "NCHW float32",
            "scale": 1.0 if max(mean) > 1.0 else 1 / 255,  # pixel values are multiplied by it
            "mean": mean,  # then (x * scale - mean) / std
            "std": std,
            "output": "logits (B, num_classes, H, W) at the input's size; argmax = class index",
        },
        "eval": {k: eval_section.get(k, getattr(defaults, k)) for k in EVAL_KEYS},
        "training": {k: meta[k] for k in ("iteration", "best_miou") if k in meta},
        "config": run_config,
    }
    if meta.get("prediction_ids") is not None:
        config["prediction_ids"] = list(meta["prediction_ids"])
    return config


def _write_weights(model: nn.Module, path: Path, include_aux: bool) -> None:
    """model.safetensors: contiguous CPU copies; the aux head's tensors only with `include_aux`."""
    from safetensors.torch import save_file

    tensors = {
        k: v.detach().cpu().contiguous().clone()
        for k, v in model.state_dict().items()
        if include_aux or not k.startswith("aux_head.")
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
