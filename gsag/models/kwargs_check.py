"""One validator for `model.kwargs`: names, types and values, read from the head signatures.

New head options are covered as soon as they appear in a head's `__init__` signature.
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import types
import typing
from functools import partial
from typing import Any, Union

from gsag.config import ConfigError

# create_model arguments that are config keys of their own, not head options
MODEL_ARGS = ("backbone", "pretrained", "output_stride", "aux", "num_classes")
EXTRA = ("levels",)  # create_model keywords that may be given through model.kwargs


def _head_hints(name: str) -> dict[str, Any]:
    """{keyword: type hint} of a model's head builder (without in_channels/num_classes)."""
    from gsag.models.segmentor import MODELS, head_kwargs

    builder = MODELS[name]
    func = builder.func if isinstance(builder, partial) else builder
    target = func.__init__ if inspect.isclass(func) else func
    hints = typing.get_type_hints(target)
    return {k: hints.get(k, Any) for k in head_kwargs(name) if k not in MODEL_ARGS}


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


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_head_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Raise `ConfigError` naming `model.kwargs.<key>` for an unknown name, a wrong type or a
    value the head refuses (checked by building the head once on small dummy inputs)."""
    from gsag.models.segmentor import MODELS

    hints = _head_hints(name)
    valid = [*hints, *EXTRA]
    for key, value in kwargs.items():
        if key in MODEL_ARGS:
            raise ConfigError(
                f"model.kwargs.{key} is a model setting, not a head option; use "
                f"--set model.{key}={value} instead"
            )
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            raise ConfigError(
                f"model.kwargs.{key} is not an option of {name}; {hint}it accepts: "
                f"{', '.join(valid)}"
            )
        if key in hints and not _matches(value, hints[key]):
            raise ConfigError(f"model.kwargs.{key} is {value!r}; expected {_hint_name(hints[key])}")
    head_kw = {k: v for k, v in kwargs.items() if k in hints}
    try:  # values: the head's own checks, on 3 dummy levels of 64 channels
        MODELS[name]([64, 64, 64], 2, **head_kw)
    except (ValueError, TypeError, ZeroDivisionError, KeyError, RuntimeError) as e:
        raise ConfigError(f"model.kwargs for {name}: {e}") from e
