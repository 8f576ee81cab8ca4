"""The error of a model argument that cannot work, shared by the backbone and the model check."""

from __future__ import annotations

from typing import Any

from gsag.errors import GsagError, UsageError


class ModelArgError(UsageError, ValueError):
    """A `create_model` argument that cannot work (`gsag` prints it as one line, exit code 2).

    Attributes:
        key: what is at fault, as a path below the config's `model` section: "name",
            "backbone", "num_classes", "kwargs.<option>" (one head option, or `levels`) or
            "kwargs" (a combination of head options the head refuses).
        detail: the problem and the valid values, without the key.
        fix: (setting, value) when a model setting was given as a head option.
    """

    def __init__(self, key: str, detail: str, fix: tuple[str, Any] | None = None) -> None:
        self.key, self.detail, self.fix = key, detail, fix
        label = {"name": "model name", "kwargs": "head options"}.get(key, key)
        label = label.removeprefix("kwargs.")
        hint = f"; pass {fix[0]}={fix[1]!r} to create_model instead" if fix else ""
        super().__init__(f"{label} {detail}{hint}")


class ModelArgTypeError(ModelArgError, TypeError):
    """An unknown head option, or one of the wrong type (a `TypeError`, as Python's own)."""


class WeightsDownloadError(GsagError, RuntimeError):
    """The pretrained backbone weights could not be fetched from the Hub (offline, a mirror
    down): one line with the fix, exit code 1 (the run failed), as for `gsag.trained.hub`."""
