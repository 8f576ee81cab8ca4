"""The pretrained folder: one format for a trained model, on disk and on the Hugging Face Hub.

    model.safetensors  the weights (without the training-only aux head unless asked for)
    config.json        model_args, classes, palette, input conventions (mean/std), eval
                       settings, gsag version and the full training config
    README.md          a model card generated from the run (see `gsag.model_card`)
    model.onnx         optional, from `gsag.export.export_onnx`
    plots/             the run's training curve and confusion matrix, where they exist

    import gsag
    gsag.save_pretrained("runs/demo", "demo-model")
    predictor = gsag.Predictor.from_pretrained("demo-model")

Only `model.safetensors` is ever read from a folder: pickled weights (`*.bin`, `*.pt`) are
refused, never unpickled. `gsag.hub` fetches and pushes such folders.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gsag.errors import CheckpointError, UsageError

if TYPE_CHECKING:
    from torch import nn

    from gsag.models.segmentor import Segmentor

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
ONNX_NAME = "model.onnx"
PLOTS_DIR = "plots"
FORMAT = "gsag-pretrained"
FORMAT_VERSION = 1  # raise when a reader of version 1 could no longer read the folder
REQUIRED_KEYS = ("model_args", "classes", "palette", "input", "eval")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
EVAL_KEYS = ("mode", "crop_size", "stride", "scales", "flip")


@dataclass
class Trained:
    """A trained model and where it came from: what a pretrained folder and its card are made of.

    `meta` is as `gsag.engine.checkpoint.load_model` returns it; `metrics` is the evaluation of
    this checkpoint found in its run folder (a metrics.json), if any.
    """

    model: Segmentor
    meta: dict[str, Any]
    checkpoint: Path | None = None
    run_dir: Path | None = None
    metrics: dict[str, Any] | None = None
    metrics_path: Path | None = None


# ---- reading a folder ---------------------------------------------------------------------------


def load_folder(
    folder: str | os.PathLike,
    map_location: Any = "cpu",
    name: str | None = None,
    listing: list[str] | None = None,
) -> tuple[Segmentor, dict[str, Any]]:
    """Rebuild the model of a pretrained folder from config.json and model.safetensors.

    `name` is how errors call it (default: the folder); `listing` is the repo's file list when
    known (else the folder's files), for naming what is there instead of what is missing.
    """
    from gsag.models.segmentor import model_from_args

    folder = Path(folder)
    name = name or str(folder)
    files = listing if listing is not None else _files(folder)
    if WEIGHTS_NAME not in files:
        raise CheckpointError(_no_weights_message(name, files))
    config = read_config(folder, name, files)
    state = _read_weights(folder / WEIGHTS_NAME, name)
    try:
        model = model_from_args(config["model_args"])
    except (ValueError, TypeError) as e:  # a model this version of gsag cannot build
        raise CheckpointError(f"{name}: its model cannot be rebuilt ({e})") from e
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(
            f"{name}: {WEIGHTS_NAME} does not fit its config.json: {first}"
        ) from e
    model.to(map_location).eval()
    return model, meta_from_config(config)


def _files(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist; pass a folder written by gsag save")
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _no_weights_message(name: str, files: list[str]) -> str:
    if "config.yaml" in files and {"best.pt", "last.pt"} & set(files):
        return (
            f"{name} is a training run folder, not a gsag model folder (no {WEIGHTS_NAME}); "
            f"pass {name}/best.pt, or write a model folder with `gsag save {name} FOLDER`"
        )
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles:
        return (
            f"{name} holds only pickled weights ({', '.join(pickles)}); gsag never loads pickles "
            f"from a model folder or repo (unpickling can run code): it needs {WEIGHTS_NAME}, "
            "written by `gsag save` or `gsag push`"
        )
    found = ", ".join(files[:8]) or "nothing"
    return f"{name} is not a gsag model: it has no {WEIGHTS_NAME} (found: {found})"


def read_config(folder: Path, name: str, files: list[str] | None = None) -> dict[str, Any]:
    """config.json of a pretrained folder, checked: gsag's format, not too new, all keys there."""
    from gsag.version import __version__

    path = folder / CONFIG_NAME
    if not path.is_file():
        found = ", ".join(files if files is not None else _files(folder)) or "nothing"
        raise CheckpointError(f"{name} is not a gsag model: it has no {CONFIG_NAME} ({found})")
    try:
        config = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{name}: {CONFIG_NAME} is not valid JSON ({e})") from e
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(
            f"{name} is not a gsag model: its {CONFIG_NAME} has no format={FORMAT!r} entry"
        )
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{name} was saved by gsag {config.get('gsag_version', '?')} in folder format "
            f"{version}; this gsag {__version__} reads format {FORMAT_VERSION}: upgrade gsag "
            "(pip install -U gsag)"
        )
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise CheckpointError(
            f"{name} is not a complete gsag model: its {CONFIG_NAME} lacks {', '.join(missing)}"
        )
    return config


def _read_weights(path: Path, name: str) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # SafetensorError, OSError: truncated, random or foreign bytes
        raise CheckpointError(
            f"{name}: {WEIGHTS_NAME} is not a readable safetensors file ({type(e).__name__}: "
            f"{e}); save the model again with `gsag save`"
        ) from e


def meta_from_config(config: dict[str, Any]) -> dict[str, Any]:
    """The `meta` dict `load_model` returns, from a folder's config.json: its eval settings
    become the training config's eval section, which `Predictor` and `gsag eval` read."""
    run_config = dict(config.get("config") or {})
    run_config["eval"] = {**(run_config.get("eval") or {}), **config["eval"]}
    meta = {
        "config": run_config,
        "classes": list(config["classes"]),
        "palette": [list(c) for c in config["palette"]],
        "num_classes": len(config["classes"]),
        "ignore_index": config.get("ignore_index", 255),
        "mean": list(config["input"]["mean"]),
        "std": list(config["input"]["std"]),
        "model_args": dict(config["model_args"]),
        **dict(config.get("training") or {}),
    }
    if config.get("prediction_ids") is not None:
        meta["prediction_ids"] = list(config["prediction_ids"])
    return meta


# ---- writing a folder -------------------------------------------------------------------------


def save_pretrained(
    model_or_run: Any,
    folder: str | os.PathLike,
    *,
    checkpoint: str | None = None,
    meta: dict[str, Any] | None = None,
    include_aux: bool = False,
    onnx: bool = False,
    repo_id: str | None = None,
) -> Path:
    """Write a pretrained folder (see the module docstring) and return it.

    Args:
        model_or_run: a run folder (its best.pt, else last.pt), a `.pt` / `.safetensors`
            file, a `Predictor`, or a `Segmentor` with `meta` (as `load_model` returns it).
        folder: where to write; an existing folder must be empty or a gsag pretrained folder.
        checkpoint: in a run folder, the checkpoint file name to save (e.g. "last.pt").
        include_aux: keep the training-only auxiliary head (for fine-tuning).
        onnx: also write model.onnx.
        repo_id: the Hub repo the card's usage example names (default: a placeholder).
    """
    from gsag.atomic import write_json, write_text
    from gsag.model_card import render_card, write_plots

    folder = Path(folder)
    if isinstance(model_or_run, (str, os.PathLike)) and Path(model_or_run).resolve() == (
        folder.resolve()
    ):
        raise UsageError(f"{folder} is both the model and the target; pass another folder")
    trained = gather(model_or_run, checkpoint=checkpoint, meta=meta)
    _prepare_target(folder)
    config = folder_config(trained, include_aux)
    _write_weights(trained.model, folder / WEIGHTS_NAME, include_aux)
    write_json(folder / CONFIG_NAME, config)
    if onnx:
        from gsag.export import export_onnx

        size = example_size(config["eval"].get("crop_size"))
        export_onnx(trained.model.eval(), folder / ONNX_NAME, *size)
    plots = write_plots(trained, folder)
    write_text(folder / CARD_NAME, render_card(trained, config, plots, repo_id or None))
    return folder


def example_size(crop: Any) -> tuple[int, int]:
    """(H, W) of the example input for ONNX and GFLOPs: the eval crop, at most 512x512."""
    if isinstance(crop, int):
        return min(crop, 512), min(crop, 512)
    if isinstance(crop, (list, tuple)) and len(crop) == 2:
        return min(int(crop[0]), 512), min(int(crop[1]), 512)
    return 512, 512


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
    model_or_run: Any, checkpoint: str | None = None, meta: dict[str, Any] | None = None
) -> Trained:
    """A `Trained` from any of what `save_pretrained` accepts."""
    from torch import nn

    from gsag.predict import Predictor

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
    run_dir, ckpt, metrics_path = find_checkpoint(path, checkpoint)
    from gsag.engine.checkpoint import load_model

    model, ckpt_meta = load_model(ckpt)
    metrics = json.loads(metrics_path.read_text()) if metrics_path else None
    return Trained(model, ckpt_meta, ckpt, run_dir, metrics, metrics_path)


def find_checkpoint(path: Path, name: str | None = None) -> tuple[Path, Path, Path | None]:
    """(run folder, checkpoint, its metrics.json or None) for a run folder or a checkpoint file.

    In a run folder: `name`, else the first of best.pt and last.pt that the run holds an
    evaluation of, else best.pt, else last.pt.
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
    evaluated = [(p, find_evaluation(path, p)) for p in present]
    return (path, *next((e for e in evaluated if e[1] is not None), (present[0], None)))


def find_evaluation(run_dir: Path, checkpoint: Path) -> Path | None:
    """The newest metrics.json in `run_dir` (or one folder down: eval_*/, report/) whose
    settings name `checkpoint`; None when the run holds no evaluation of it."""
    found = []
    for path in [run_dir / "metrics.json", *run_dir.glob("*/metrics.json")]:
        try:
            named = json.loads(path.read_text()).get("settings", {}).get("checkpoint")
        except (OSError, ValueError, AttributeError):
            continue
        if named and _same_file(Path(named), checkpoint, path):
            found.append(path)
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


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
    from gsag.version import __version__

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

    from gsag.atomic import atomic_path

    tensors = {
        k: v.detach().cpu().contiguous().clone()
        for k, v in model.state_dict().items()
        if include_aux or not k.startswith("aux_head.")
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
