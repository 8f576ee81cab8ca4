"""What a loaded model must be before anything uses it, for every way one is loaded (a `.pt`
checkpoint, `.safetensors` weights, a pretrained folder, a Hub repo, and `last.pt` on
`--resume`):

- weights that fit the rebuilt model exactly (`load_weights`): no tensor missing, extra or
  renamed, every shape the model's, floating-point tensors where the model holds floating-point
  ones (and integers where integers), every floating-point value finite;
- metadata that describes the model's outputs (`check_meta`): one distinct class name per
  output, an [r, g, b] colour in 0..255 for each, a numeric input mean and std of three values.

Each failure is one `CheckpointError` naming the file and the tensor or field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from gsag.errors import CheckpointError


def load_weights(model: nn.Module, state: Mapping[str, Any], where: str) -> None:
    """Load `state` into `model` strictly, after checking every tensor (see the module).

    `where` names the weights in errors, e.g. "runs/demo/best.pt" or "demo-model:
    model.safetensors".
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        raise CheckpointError(f"{where} does not fit its model: {_mismatch(missing, extra)}")
    check_tensors(expected, state, where)
    model.load_state_dict(dict(state), strict=True)


def check_tensors(expected: Mapping[str, Any], state: Mapping[str, Any], where: str) -> None:
    """Check each tensor of `state` against the one of the same name in `expected` (a model's
    `state_dict()`, which names every tensor of `state`): shape, kind, finite values."""
    for name, tensor in state.items():
        _check_tensor(name, tensor, expected[name], where)


def _mismatch(missing: list[str], extra: list[str]) -> str:
    def listed(names: list[str]) -> str:
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        return ", ".join(names[:3]) + more

    parts = []
    if missing:
        parts.append(f"it lacks {listed(missing)}")
    if extra:
        parts.append(f"it holds {listed(extra)}, which the model does not have")
    hint = " (renamed tensors?)" if missing and extra else ""
    return "; ".join(parts) + hint + "; save the model again or use the file it came with"


def _kind(t: torch.Tensor) -> str:
    if t.dtype == torch.bool:
        return "boolean"
    return "floating-point" if t.is_floating_point() or t.is_complex() else "integer"


def _check_tensor(name: str, tensor: Any, want: torch.Tensor, where: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise CheckpointError(f"{where}: {name} is a {type(tensor).__name__}, not a tensor")
    if tensor.shape != want.shape:
        raise CheckpointError(
            f"{where}: tensor {name} has shape {list(tensor.shape)}, the model's "
            f"{list(want.shape)}; the weights are of another model"
        )
    if _kind(tensor) != _kind(want):
        raise CheckpointError(
            f"{where}: tensor {name} is {tensor.dtype} ({_kind(tensor)}) where the model holds "
            f"{want.dtype} ({_kind(want)}); the weights are damaged or converted wrongly"
        )
    if tensor.is_floating_point():
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise CheckpointError(
                f"{where}: tensor {name} holds {bad} non-finite value(s) (NaN or Inf) of "
                f"{tensor.numel()}; the model is broken (a diverged run?): use an earlier "
                "checkpoint"
            )


#: How `check_meta` names each field, for a checkpoint's meta (pretrained folders pass theirs).
META_FIELDS = {
    "classes": "meta.classes",
    "palette": "meta.palette",
    "mean": "meta.mean",
    "std": "meta.std",
    "ignore_index": "meta.ignore_index",
    "prediction_ids": "meta.prediction_ids",
}


def check_meta(
    meta: Mapping[str, Any],
    num_outputs: int,
    where: str,
    fields: Mapping[str, str] = META_FIELDS,
    fix: str = "use another checkpoint",
) -> None:
    """Raise `CheckpointError` naming the first field of `meta` that does not describe a model of
    `num_outputs` classes: classes (distinct strings, one per output), palette (an [r, g, b] of
    ints in 0..255 per class), mean and std (three finite numbers, std > 0), ignore_index (an int
    in 0..255) and prediction_ids (absent, or one int in 0..255 per class)."""

    def fail(key: str, problem: str) -> CheckpointError:
        return CheckpointError(f"{where}: {fields[key]} {problem}; {fix}")

    classes = meta.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise fail("classes", f"is {_short(classes)}, not a list of class names")
    if len(classes) != num_outputs:
        raise fail(
            "classes", f"names {len(classes)} classes but the model has {num_outputs} outputs"
        )
    if len(set(classes)) != len(classes):
        twice = next(c for c in classes if classes.count(c) > 1)
        raise fail("classes", f"names {twice!r} more than once")
    palette = meta.get("palette")
    if not isinstance(palette, list) or len(palette) < num_outputs:
        raise fail("palette", f"is {_short(palette)}, not a list of {num_outputs} [r, g, b]")
    for i, colour in enumerate(palette):
        if not (isinstance(colour, (list, tuple)) and len(colour) == 3 and all(map(_byte, colour))):
            raise fail("palette", f"entry {i} is {_short(colour)}, not [r, g, b] in 0..255")
    for key in ("mean", "std"):
        value = meta.get(key)
        if key not in meta:
            raise fail(key, "is missing: the input normalisation is unknown")
        if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(map(_number, value))):
            raise fail(key, f"is {_short(value)}, not three finite numbers (R, G, B)")
    if not all(s > 0 for s in meta["std"]):
        raise fail("std", f"is {list(meta['std'])}; every value must be above 0")
    if not _byte(meta.get("ignore_index", 255)):
        raise fail("ignore_index", f"is {_short(meta.get('ignore_index'))}, not an int in 0..255")
    ids = meta.get("prediction_ids")
    if ids is not None and not (
        isinstance(ids, list) and len(ids) == num_outputs and all(map(_byte, ids))
    ):
        raise fail("prediction_ids", f"is {_short(ids)}, not {num_outputs} ints in 0..255")


def _byte(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
