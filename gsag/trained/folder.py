"""The pretrained folder: one format for a trained model, on disk and on the Hugging Face Hub.

    model.safetensors  the weights (without the training-only aux head unless asked for)
    config.json        model_args, classes, palette, input conventions (mean/std), eval
                       settings, gsag version and the full training config
    README.md          a model card generated from the run (`gsag.trained.card`)
    model.onnx         optional, from `gsag.trained.export.export_onnx`
    plots/             the run's training curve and confusion matrix, where they exist

This module reads a folder (`load_folder`); `gsag.trained.save` writes one, `gsag.trained.hub`
fetches one from the Hub. Only `model.safetensors` is ever read from a folder: pickled weights
(`*.bin`, `*.pt`) are refused, never unpickled.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gsag.errors import CheckpointError
from gsag.version import __version__

if TYPE_CHECKING:
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
#: The entries of config.json that are mappings (the others are checked by `check_meta`).
MAPPINGS = ("model_args", "input", "eval", "training", "config")


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
    from gsag.engine.load_checks import check_meta, load_weights
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
    load_weights(model, state, f"{name}: {WEIGHTS_NAME}")  # strict, typed, finite
    check_meta(_meta_fields(config), model.model_args["num_classes"], name, FOLDER_FIELDS)
    model.to(map_location).eval()
    return model, meta_from_config(config)


def is_model_folder(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a saved model: model.safetensors and a config.json of this
    format (what `gsag save --overwrite` may move aside)."""
    folder = Path(folder)
    if not (folder / WEIGHTS_NAME).is_file():
        return False
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(config, dict) and config.get("format") == FORMAT


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
    path = folder / CONFIG_NAME
    if not path.is_file():
        found = ", ".join(files if files is not None else _files(folder)) or "nothing"
        raise CheckpointError(f"{name} is not a gsag model: it has no {CONFIG_NAME} ({found})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{name}: {CONFIG_NAME} is not valid JSON ({e})") from e
    except RecursionError:
        raise CheckpointError(f"{name}: {CONFIG_NAME} is nested too deeply to read") from None
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
    for key in MAPPINGS:
        optional = key not in REQUIRED_KEYS and config.get(key) is None
        if not optional and not isinstance(config[key], dict):
            raise CheckpointError(
                f"{name}: {CONFIG_NAME} {key} is a {type(config[key]).__name__}, not a mapping; "
                "save the model again with `gsag save`"
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


#: How a pretrained folder's fields are named in errors (`gsag.engine.load_checks.check_meta`).
FOLDER_FIELDS = {
    "classes": f"{CONFIG_NAME} classes",
    "palette": f"{CONFIG_NAME} palette",
    "mean": f"{CONFIG_NAME} input.mean",
    "std": f"{CONFIG_NAME} input.std",
    "ignore_index": f"{CONFIG_NAME} ignore_index",
    "prediction_ids": f"{CONFIG_NAME} prediction_ids",
}


def _meta_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The fields of config.json that `check_meta` checks, under its names."""
    fields: dict[str, Any] = {
        k: config[k] for k in ("classes", "palette", "ignore_index") if k in config
    }
    source = config["input"] if isinstance(config["input"], dict) else {}
    fields.update({k: source[k] for k in ("mean", "std") if k in source})
    if config.get("prediction_ids") is not None:
        fields["prediction_ids"] = config["prediction_ids"]
    return fields


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


def example_size(crop: Any) -> tuple[int, int]:
    """(H, W) of the example input for ONNX and GFLOPs: the eval crop, at most 512x512."""
    if isinstance(crop, int):
        return min(crop, 512), min(crop, 512)
    if isinstance(crop, (list, tuple)) and len(crop) == 2:
        return min(int(crop[0]), 512), min(int(crop[1]), 512)
    return 512, 512
