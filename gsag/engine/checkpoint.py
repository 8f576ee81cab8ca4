"""Checkpoints: atomic writes, every RNG state, and rebuilding a model from a file alone.

A training checkpoint (`.pt`) is a plain dict of tensors, numbers, strings, lists and dicts, so
it loads with `torch.load(weights_only=True)` (nothing is unpickled):

    format, version, iteration, best_miou, model, optimizer, scheduler, scaler, rng,
    config (the resolved config as a dict), meta (classes, palette, num_classes, ignore_index,
    mean, std, model_args)

last.pt holds all of it, to resume; best.pt (for use: eval, predict, export) leaves out
optimizer, scheduler, scaler and rng, which are 2x the weights' size with AdamW or momentum SGD.

`meta["model_args"]` holds the `create_model` arguments of the model (`Segmentor.model_args`);
`load_model` rebuilds the model from them alone with `gsag.models.model_from_args`
(`model_args` derives them from the config for checkpoints written before they were stored).

`export_safetensors` writes the model weights alone, with config and meta as JSON metadata.
"""

from __future__ import annotations

import json
import os
import random
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from gsag.atomic import atomic_path
from gsag.engine.load_checks import check_meta, check_tensors, load_weights
from gsag.errors import CheckpointError

if TYPE_CHECKING:
    from gsag.models.segmentor import Segmentor

FORMAT = "gsag-checkpoint"
WEIGHTS_FORMAT = "gsag-weights"
VERSION = 1


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` to a temporary file in the same folder, then `os.replace` onto `path`.

    torch writes through a Python file object, so a full disk surfaces as an `OSError`
    (ENOSPC), which `atomic_path` turns into the disk-full line naming `path`.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def rng_state() -> dict[str, Any]:
    """Every RNG state (torch CPU and CUDA, numpy, Python) as tensors and plain numbers."""
    version, mt, gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": torch.tensor(mt, dtype=torch.int64),
        "python_version": int(version),
        "python_gauss": [] if gauss is None else [float(gauss)],
        "numpy": torch.from_numpy(np.asarray(np_keys).astype(np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states saved by `rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    gauss = state["python_gauss"][0] if state["python_gauss"] else None
    mt = tuple(int(v) for v in state["python"].tolist())
    random.setstate((state["python_version"], mt, gauss))
    keys = state["numpy"].numpy().astype(np.uint32)
    np.random.set_state(
        ("MT19937", keys, state["numpy_pos"], state["numpy_has_gauss"], state["numpy_gauss"])
    )
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a training checkpoint safely (`weights_only=True`) and check its format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # a refused file gets one clear error, not warnings too
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"checkpoint {path} could not be read safely ({_load_failure(e)}); "
            "gsag only loads its own .pt checkpoints or .safetensors weights"
        ) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a gsag checkpoint (no format={FORMAT!r} entry); "
            "train one with `gsag train` or load .safetensors weights exported by gsag"
        )
    check_contents(ckpt, path)
    return ckpt


#: What every gsag checkpoint holds, with the type each entry must have.
CHECKPOINT_KEYS: dict[str, type | tuple[type, ...]] = {
    "model": dict,
    "config": dict,
    "meta": dict,
    "iteration": int,
    "best_miou": (int, float),
}
#: What every checkpoint's `meta` (and a .safetensors file's) holds.
META_KEYS: dict[str, type | tuple[type, ...]] = {
    "classes": list,
    "palette": list,
    "num_classes": int,
    "ignore_index": int,
}


def check_contents(ckpt: dict[str, Any], path: str | os.PathLike) -> None:
    """Raise `CheckpointError` naming the first entry a checkpoint lacks or holds wrongly
    (`model`, `config`, `meta`, `meta.num_classes`, ...), before anything uses it."""
    _check_entries(ckpt, CHECKPOINT_KEYS, "", path)
    meta = ckpt["meta"]
    _check_entries(meta, META_KEYS, "meta.", path)
    num_classes, classes = meta["num_classes"], meta["classes"]
    if num_classes < 1 or len(classes) != num_classes or len(meta["palette"]) < num_classes:
        raise CheckpointError(
            f"{path} is damaged: meta.num_classes is {num_classes} but it names "
            f"{len(classes)} classes and {len(meta['palette'])} colours; use another checkpoint"
        )


def _check_entries(
    d: dict[str, Any], keys: dict[str, type | tuple[type, ...]], prefix: str, path: Any
) -> None:
    for key, kind in keys.items():
        if key not in d:
            raise CheckpointError(
                f"{path} is damaged or incomplete: it has no {prefix}{key}; use another "
                "checkpoint (last.pt or best.pt of the run) or re-export it"
            )
        value = d[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise CheckpointError(
                f"{path} is damaged: {prefix}{key} is a {type(value).__name__}, not {names}; "
                "use another checkpoint"
            )


def _load_failure(e: Exception) -> str:
    """Why `torch.load(weights_only=True)` refused a file, in a few words."""
    text = str(e).strip()
    if "WeightsUnpickler error:" in text:
        rest = text.split("WeightsUnpickler error:", 1)[1].splitlines()
        detail = next((ln.strip() for ln in rest if ln.strip()), "")
        return f"it holds Python objects besides tensors, which could run code: {detail}"
    first = text.split(". ")[0].splitlines()[0] if text else ""
    return f"{type(e).__name__}: {first}"


def model_args(config: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The `create_model` arguments of a checkpoint's model (without weights).

    Stored as `meta["model_args"]`; checkpoints written before that are read from the config's
    model section and `meta["num_classes"]`, as their model was built.
    """
    if "model_args" in meta:
        return dict(meta["model_args"])
    m = config["model"]
    return dict(
        name=m["name"],
        num_classes=meta["num_classes"],
        backbone=m["backbone"],
        output_stride=m["output_stride"],
        aux=m["aux"],
        **m.get("kwargs", {}),
    )


def load_model(path: str | os.PathLike, map_location: Any = "cpu") -> tuple[Segmentor, dict]:
    """Rebuild a trained model from a `.pt` checkpoint or exported `.safetensors` weights.

    The weights and the metadata are checked first (`gsag.engine.load_checks`): a missing,
    extra or renamed tensor, a tensor of the wrong kind, a NaN or Inf, class names that do not
    match the outputs or a malformed mean, std or palette is a `CheckpointError`.

    Returns:
        (model in eval mode, meta) where meta has "config" (dict), "classes", "palette",
        "num_classes", "ignore_index", "mean", "std", "model_args" and, for `.pt` files,
        "iteration" and "best_miou".
    """
    from gsag.models.segmentor import model_from_args

    path = Path(path)
    if path.suffix == ".safetensors":
        state, config, meta = _read_safetensors(path)
        extra: dict[str, Any] = {}
    else:
        ckpt = load_checkpoint(path, map_location="cpu")
        state, config, meta = ckpt["model"], ckpt["config"], ckpt["meta"]
        extra = {"iteration": ckpt["iteration"], "best_miou": ckpt["best_miou"]}
    try:
        model = model_from_args(model_args(config, meta))
    except ValueError as e:  # ModelArgError: a model this version of gsag cannot build
        raise CheckpointError(f"{path}: its model cannot be rebuilt ({e})") from e
    except (KeyError, TypeError) as e:  # no model_args, and a config without its model section
        raise CheckpointError(
            f"{path} is damaged: its model cannot be rebuilt, meta.model_args and "
            f"config.model lack {e}; use another checkpoint"
        ) from e
    load_weights(model, state, str(path))  # strict, typed, finite
    check_meta(meta, model.model_args["num_classes"], str(path))
    model.to(map_location).eval()
    return model, {"config": config, **meta, "model_args": model.model_args, **extra}


def load_resume_weights(model: nn.Module, ckpt: dict[str, Any], path: Path, config: Any) -> None:
    """Load a resumed checkpoint's weights into `model`, or say which model it was trained as;
    a tensor of the wrong kind or holding NaN or Inf is a `CheckpointError` naming it.

    Args:
        config: the current run's `Config` (compared with the checkpoint's model section).
    """
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        theirs = ckpt.get("config", {}).get("model", {})
        mine = config.model
        raise CheckpointError(
            f"{path} holds a {theirs.get('name')} on {theirs.get('backbone')} that does not fit "
            f"this config's {mine.name} on {mine.backbone} ({str(e).splitlines()[0]}); "
            "resume with the config it was trained with, or start anew with another --out "
            "or --overwrite"
        ) from e
    check_tensors(model.state_dict(), ckpt["model"], str(path))  # kinds as the model's, finite


def export_safetensors(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the weights of a `.pt` checkpoint as `.safetensors` with config and meta inside."""
    from safetensors.torch import save_file

    ckpt = load_checkpoint(checkpoint)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in ckpt["model"].items()}
    metadata = {
        "format": WEIGHTS_FORMAT,
        "config": json.dumps(ckpt["config"]),
        "meta": json.dumps(ckpt["meta"]),
    }
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return out


def _read_safetensors(path: Path) -> tuple[dict, dict, dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as e:  # SafetensorError, OSError: truncated, random or foreign bytes
        raise CheckpointError(
            f"{path} is not a readable .safetensors file ({type(e).__name__}: {e}); re-export "
            "it with `gsag export` or use the .pt checkpoint"
        ) from e
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise CheckpointError(
            f"{path} has no gsag metadata (format={WEIGHTS_FORMAT!r}); export it from a gsag "
            "checkpoint with gsag.engine.checkpoint.export_safetensors"
        )
    parsed = {}
    for key in ("config", "meta"):
        try:
            parsed[key] = json.loads(metadata.get(key) or "")
        except json.JSONDecodeError as e:
            given = "empty or missing" if not metadata.get(key) else f"not JSON ({e.msg})"
            raise CheckpointError(
                f"{path} is damaged: its {key} metadata is {given}; re-export it with "
                "`gsag export` or use the .pt checkpoint"
            ) from e
    try:
        state = load_file(str(path))
    except Exception as e:  # SafetensorError: the header is fine, the tensors are not
        raise CheckpointError(f"{path}: its tensors cannot be read ({e})") from e
    check_contents({**parsed, "model": state, "iteration": 0, "best_miou": 0.0}, path)
    return state, parsed["config"], parsed["meta"]
