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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from gsag.atomic import atomic_path, write_json, write_text
from gsag.engine.run_dir import aside_name, aside_path, check_movable
from gsag.errors import CheckpointError, RunFolderError, UsageError
from gsag.safe_yaml import YamlError, load_yaml
from gsag.trained.card import is_own_evaluation, render_card, write_plots
from gsag.trained.folder import (
    CARD_NAME,
    CONFIG_NAME,
    EVAL_KEYS,
    FORMAT,
    FORMAT_VERSION,
    ONNX_NAME,
    WEIGHTS_NAME,
    Trained,
    example_size,
    is_model_folder,
    load_folder,
)
from gsag.trained.meta import complete_meta
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
    overwrite: bool = False,
    classes: list[str] | None = None,
    palette: list[list[int]] | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    ignore_index: int | None = None,
) -> Path:
    """Write a pretrained folder (its format: `gsag.trained.folder`) and return it.

    The folder is written whole or not at all: into a temporary folder beside it, renamed into
    place once complete.

    Args:
        model_or_run: a run folder (its best.pt, else last.pt), a `.pt` / `.safetensors`
            file, a pretrained folder, a `Predictor`, or a model in memory (a `Segmentor` from
            `gsag.create_model`, with or without `meta`).
        folder: where to write: a new or empty folder. A folder holding a saved model is
            refused, or with `overwrite` moved aside to `FOLDER.old-<time>` first; any other
            folder that is not empty is refused.
        checkpoint: in a run folder, the checkpoint file name to save (e.g. "last.pt").
        meta: classes, palette, mean, std, ignore_index of a model in memory (as `load_model`
            returns them); what it lacks comes from the model: the backbone's mean and std,
            classes class_0 .. class_{N-1}, the default palette (see `gsag.trained.meta`).
        classes, palette, mean, std, ignore_index: override the same fields of `meta` or of the
            checkpoint's metadata.
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
    replace = check_target(folder, overwrite)  # before any work
    fields = dict(classes=classes, palette=palette, mean=mean, std=std, ignore_index=ignore_index)
    trained = gather(model_or_run, checkpoint, meta, fields, evaluation)
    config = folder_config(trained, include_aux)
    with _staged(folder, replace) as tmp:
        _write_weights(trained.model, tmp / WEIGHTS_NAME, include_aux)
        write_json(tmp / CONFIG_NAME, config)
        if onnx:
            from gsag.trained.export import export_onnx  # onnx only when asked for

            size = example_size(config["eval"].get("crop_size"))
            export_onnx(trained.model.eval(), tmp / ONNX_NAME, *size)
        plots = write_plots(trained, tmp)
        write_text(tmp / CARD_NAME, render_card(trained, config, plots, repo_id or None))
    return folder


def check_target(folder: Path, overwrite: bool = False) -> bool:
    """Whether `save_pretrained` must move an earlier saved model in `folder` aside; refuses a
    file, a non-empty folder that holds no saved model (whatever `overwrite` says), and a saved
    model without `overwrite`. Writes nothing."""
    if os.path.lexists(folder) and not folder.exists():
        raise UsageError(f"{folder} is a link to nothing; fix or remove it, or pass a new folder")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file; pass a folder to write the model into")
    cwd = Path.cwd().resolve()
    if folder.resolve() == cwd or folder.resolve() in cwd.parents:
        raise UsageError(
            f"{folder} holds the working directory {cwd}; pass a new folder, e.g. models/NAME"
        )
    if not folder.is_dir() or not any(folder.iterdir()):
        return False
    if not is_model_folder(folder):
        raise UsageError(
            f"{folder} is not empty and holds no saved gsag model; nothing there is touched: "
            "pass a new or empty folder"
        )
    if not overwrite:
        raise RunFolderError(
            f"{folder} already holds a saved model; choose a new folder, or move it to "
            f"{aside_name(folder)} first with `gsag save RUN {folder} --overwrite` "
            "(save_pretrained(..., overwrite=True) in Python)"
        )
    check_movable(folder, is_model_folder, "a saved gsag model (config.json, model.safetensors)")
    return True


@contextmanager
def _staged(folder: Path, replace: bool) -> Iterator[Path]:
    """A new temporary folder beside `folder` to write into; renamed to `folder` when the block
    succeeds (the earlier folder moved aside first with `replace`, an empty one removed), deleted
    when it fails."""
    target = folder.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    tmp = target.with_name(f"{STAGING_PREFIX}{target.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if replace:
            target.rename(aside_path(target))
        elif target.is_dir():
            target.rmdir()  # empty (checked before any work)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: Temporary folders of a save in progress: `.saving-FOLDER.PID`, beside FOLDER.
STAGING_PREFIX = ".saving-"


def _remove_stale(target: Path) -> None:
    """Remove the temporary folders of earlier saves to `target` whose process is gone."""
    for tmp in target.parent.glob(f"{STAGING_PREFIX}{target.name}.*"):
        pid = tmp.name.rpartition(".")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def gather(
    model_or_run: Any,
    checkpoint: str | None = None,
    meta: dict[str, Any] | None = None,
    fields: dict[str, Any] | None = None,
    evaluation: str | os.PathLike | None = None,
) -> Trained:
    """A `Trained` from any of what `save_pretrained` accepts, with the evaluation its card
    reports (`evaluation`, else the run's own: `own_evaluation`); `fields` (classes, palette,
    mean, std, ignore_index; None = keep) override its metadata (`complete_meta`)."""
    fields = {k: v for k, v in (fields or {}).items() if v is not None}
    if isinstance(model_or_run, Predictor):
        trained = Trained(model_or_run.model, dict(model_or_run.meta))  # type: ignore[arg-type]
    elif isinstance(model_or_run, nn.Module):
        full = complete_meta(model_or_run, meta, where="save_pretrained", **fields)
        return Trained(model_or_run, full)  # type: ignore[arg-type]
    else:
        trained = _gather_path(Path(model_or_run), checkpoint, evaluation)
    if fields:
        trained.meta = complete_meta(trained.model, trained.meta, "save_pretrained", **fields)
    return trained


def _gather_path(
    path: Path, checkpoint: str | None, evaluation: str | os.PathLike | None
) -> Trained:
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
        config = load_yaml((run_dir / "config.yaml").read_text(), str(run_dir / "config.yaml"))
    except (OSError, YamlError):
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
        except (OSError, ValueError, AttributeError, RecursionError):
            continue
        if named and same_checkpoint(Path(named), checkpoint, path):
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


def same_checkpoint(named: Path, checkpoint: Path, metrics: Path) -> bool:
    """Whether a metrics.json's `settings.checkpoint` (as typed, maybe relative to another working
    folder) is `checkpoint`: the same file, or the same name in the run it lies in."""
    if named.exists() and named.resolve() == checkpoint.resolve():
        return True
    inside = checkpoint.parent.resolve() in metrics.resolve().parents
    return named.name == checkpoint.name and not named.is_absolute() and inside


def folder_config(trained: Trained, include_aux: bool = False) -> dict[str, Any]:
    """config.json of a pretrained folder."""
    from gsag.config import EvalConfig

    meta = trained.meta
    run_config = dict(meta.get("config") or {})
    eval_section = run_config.get("eval") or {}
    defaults = EvalConfig()
    mean, std = [float(v) for v in meta["mean"]], [float(v) for v in meta["std"]]
    model_args = dict(trained.model.model_args or meta["model_args"])
    model_args["aux"] = bool(include_aux and model_args.get("aux"))
    config: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gsag_version": __version__,
        "model_args": model_args,
        "classes": list(meta["classes"]),
        "palette": [list(c) for c in meta["palette"][: len(meta["classes"])]],
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
