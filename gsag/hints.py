"""Values read from YAML, checked against the type hints of dataclasses: a nested mapping becomes
nested dataclasses, an unknown key is an error naming the nearest valid one, and a value must fit
its field's type (ints count as floats; PyYAML's `1e-4`, read as a string, as a float).
`gsag.config` builds its `Config` with it."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable
from typing import Any, Union

from gsag.errors import ConfigError


def check_key(key: str, valid: list[str], prefix: str, where: str) -> None:
    """Raise `ConfigError` unless `key` is one of `valid`, naming the nearest valid key."""
    if key in valid:
        return
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {prefix}{near[0]}?" if near else f"; valid keys: {', '.join(valid)}"
    raise ConfigError(f"{where}: unknown key {prefix}{key}{hint}")


def build(
    cls: type, raw: Any, prefix: str, source: str, check: Callable[[str, Any, str], Any]
) -> Any:
    """The dataclass `cls` from a nested mapping: every key checked (`check_key`), nested
    dataclasses built in turn, every other value converted to its field's type hint (`convert`)
    and passed through `check(full key, value, source)`, which returns the value to keep."""
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        check_key(str(key), names, prefix, source)
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[key] = build(
                hint, value if value is not None else {}, f"{prefix}{key}.", source, check
            )
        else:
            full = f"{prefix}{key}"
            kwargs[key] = check(full, convert(value, hint, full, source), source)
    return cls(**kwargs)


def convert(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check `value` against a type hint, converting int -> float where a float is expected."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        # bool before str: `pretrained: true` stays a bool, `pretrained: weights.pth` a path.
        for option in args:
            try:
                return convert(value, option, key, source)
            except ConfigError:
                continue
        names = " or ".join(getattr(a, "__name__", str(a)) for a in args)
        raise ConfigError(f"{source}: {key} is {value!r}; expected {names}")
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} is {value!r}; expected a list, e.g. [1, 2]")
        return [convert(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} is {value!r}; expected a mapping")
        return dict(value)
    if hint is Any or (hint is type(None) and value is None):
        return value
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and is_number and float(value).is_integer():
        return int(value)
    if hint is float and is_number:
        return float(value)
    if hint is float and isinstance(value, str):  # PyYAML reads `1e-4` (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is str and isinstance(value, str):
        return value
    raise ConfigError(f"{source}: {key} is {value!r}; expected {getattr(hint, '__name__', hint)}")


def dotted(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The dotted keys of a nested mapping, as `--set` names them: {"a": {"b": 1}} -> {"a.b": 1}
    (an empty mapping stays a value)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
