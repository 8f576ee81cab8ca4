"""One validator for the arguments of `create_model`: model name, backbone, head options.

`create_model` calls `check_model_args` before it builds anything, and the training engine calls
it on the config's model section, mapping `ModelArgError.key` onto the config key
(`model.name`, `model.backbone`, `model.kwargs.<option>`). Head options are read from the head
signatures, so a new option is covered as soon as it appears in a head's `__init__`.
"""

from __future__ import annotations

import collections.abc
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, Union

import torch

from gsag.models.backbone import BACKBONES, check_backbone_name, probe_backbone
from gsag.models.errors import ModelArgError, ModelArgTypeError
from gsag.models.table import (
    EXTRA,
    MODEL_SETTINGS,
    MODELS,
    head_hints,
    head_levels,
    list_models,
)


def _one_of(key: str, value: Any, valid: list[str]) -> None:
    if value not in valid:
        near = difflib.get_close_matches(str(value), valid, n=1)
        hint = f"did you mean {near[0]}? " if near else ""
        raise ModelArgError(key, f"is {value!r}; {hint}valid: {', '.join(valid)}")


def _matches(value: Any, hint: Any) -> bool:
    """Whether `value` fits the type hint (ints count as floats; bools are not numbers)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin in (list, tuple, collections.abc.Sequence):
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def hint_name(hint: Any) -> str:
    """A type hint as it reads in a signature: int, float | None, Sequence[int]."""
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_model_args(
    name: str,
    backbone: str,
    kwargs: Mapping[str, Any],
    *,
    num_classes: int | None = None,
    aux: bool = False,
) -> None:
    """Raise `ModelArgError` for the first argument of `create_model` that cannot work.

    Checks the model name and backbone (a short name or any timm model; the nearest names
    otherwise; one that gives feature maps at any input size, `probe_backbone`), `num_classes`
    when given,
    and `kwargs`: the head options plus `levels`, as `model.kwargs` holds them. Each option's
    name and type are checked against the head's signature, then its values by building the
    head once on the meta device (no memory, no random numbers drawn).
    """
    _one_of("name", name, list_models())
    check_backbone_name(backbone)
    if backbone not in BACKBONES:  # ours take any size (test_short_names_take_any_input_size)
        probe_backbone(backbone)  # feature maps at any input size (cached: a meta build)
    if num_classes is not None and (
        not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1
    ):
        raise ModelArgError("num_classes", f"must be a positive integer, got {num_classes!r}")
    hints = {**head_hints(name), "levels": collections.abc.Sequence[int]}
    valid = list(hints)
    for key, value in kwargs.items():
        if key in MODEL_SETTINGS:
            raise ModelArgError(
                f"kwargs.{key}", "is a model setting, not a head option", fix=(key, value)
            )
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            raise ModelArgTypeError(
                f"kwargs.{key}",
                f"is not an option of {name}; {hint}it accepts: {', '.join(valid)}",
            )
        if not _matches(value, hints[key]):
            raise ModelArgTypeError(
                f"kwargs.{key}", f"is {value!r}; expected {hint_name(hints[key])}"
            )
    levels = kwargs.get("levels")
    spec = head_levels(name)
    if levels is not None and len(levels) < spec.min_levels:
        raise ModelArgError(
            "kwargs.levels",
            f"is {list(levels)}; {name} fuses at least {spec.min_levels} levels (a fine one "
            f"first, the last one last), e.g. levels at strides {list(spec.strides)}",
        )
    if aux and levels is not None and len(levels) < 2:
        raise ModelArgError(
            "kwargs.levels", f"is {list(levels)}; the aux head needs at least two levels"
        )
    head_kw = {k: v for k, v in kwargs.items() if k not in EXTRA}
    in_channels = [64] * (len(spec.strides) if levels is None else len(levels))
    try:  # values: the head's own checks, on dummy levels of 64 channels
        with torch.device("meta"):
            MODELS[name](in_channels, 2, **head_kw)
    except (ValueError, TypeError, ZeroDivisionError, KeyError, IndexError, RuntimeError) as e:
        raise ModelArgError("kwargs", f"for {name}: {e}") from e
