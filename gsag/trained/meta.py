"""The metadata of a model in memory (classes, palette, input mean and std, ignore index): what
`save_pretrained` and `Predictor.from_model` need besides the weights.

A model from `gsag.create_model` carries none of it; `complete_meta` fills what is not given
from the model itself (the backbone's mean and std, classes named class_0 .. class_{N-1}, the
default palette) and checks the result as a loaded checkpoint's is checked
(`gsag.engine.load_checks.check_meta`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from gsag.data.io import voc_colormap
from gsag.engine.load_checks import check_meta
from gsag.errors import UsageError

#: The fields `complete_meta` fills and checks.
FIELDS = ("classes", "palette", "mean", "std", "ignore_index")


def unnamed_classes(n: int) -> list[str]:
    """The class names of a model saved without names: class_0 .. class_{n-1}."""
    return [f"class_{i}" for i in range(n)]


def num_outputs(model: nn.Module, meta: dict[str, Any]) -> int:
    """How many classes `model` predicts: its `model_args`, else the classes `meta` names."""
    args = getattr(model, "model_args", None) or meta.get("model_args") or {}
    if isinstance(args.get("num_classes"), int):
        return args["num_classes"]
    if isinstance(meta.get("classes"), list):
        return len(meta["classes"])
    raise UsageError(
        f"cannot tell how many classes this {type(model).__name__} predicts; pass meta= with "
        "classes (and palette, mean, std), or use a model from gsag.create_model"
    )


def complete_meta(
    model: nn.Module, meta: dict[str, Any] | None = None, where: str = "meta", **fields: Any
) -> dict[str, Any]:
    """`meta` (default: none) with `fields` (keyword arguments that are not None) over it, and
    defaults for what neither gives: classes class_0.., the VOC palette, the model's `mean` and
    `std`, ignore index 255; checked (`check_meta`, a `CheckpointError` naming the field).

    A "mean" or "std" neither gives nor the model has is an error, never a silent default.
    `where` names the caller in errors, e.g. "save_pretrained".
    """
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise UsageError(f"unknown metadata {', '.join(unknown)}; give {', '.join(FIELDS)}")
    out = dict(meta or {})
    out.update({k: v for k, v in fields.items() if v is not None})
    n = num_outputs(model, out)
    if "classes" not in out:
        out["classes"] = unnamed_classes(n)
    out.setdefault("palette", [list(c) for c in voc_colormap(n)])
    out.setdefault("ignore_index", 255)
    for key in ("mean", "std"):
        if key not in out and getattr(model, key, None) is not None:
            out[key] = [float(v) for v in getattr(model, key)]
    for key in ("classes", "palette", "mean", "std"):
        if isinstance(out.get(key), tuple):
            out[key] = list(out[key])
    out["palette"] = [list(c) if isinstance(c, tuple) else c for c in out["palette"]]
    names = {k: k for k in (*FIELDS, "prediction_ids")}
    check_meta(out, n, where, names, "pass it in meta= or as a keyword argument")
    out.setdefault("num_classes", n)
    out.setdefault("config", {})
    if getattr(model, "model_args", None):
        out.setdefault("model_args", dict(model.model_args))  # type: ignore[arg-type]
    return out
