"""The model table: model name -> head builder, and what a head's signature says about its
options (defaults, type hints). A new head is one entry in `MODELS`."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from gsag.models.decoders import DeepLabV3PlusHead, SegFormerHead, UPerHead
from gsag.models.gsag import GSAGHead
from gsag.models.heads import DANetHead, DeepLabV3Head, FCNHead, FCNPoolHead, PSPHead
from gsag.models.levels import D8, LevelSpec

# create_model arguments that are settings of their own, never head options
MODEL_SETTINGS = ("backbone", "pretrained", "output_stride", "aux", "num_classes")
EXTRA = ("levels",)  # create_model keywords that may be given among the head options

# Model name -> head builder(in_channels, num_classes, **head_kwargs). `output_stride` is passed
# to builders that accept it; a builder's `levels` (a `LevelSpec`) says which levels it reads.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "fcn": FCNHead,
    "fcn_pool": FCNPoolHead,
    "pspnet": PSPHead,
    "gsag_basic": partial(GSAGHead, variant="basic"),
    "gsag_incremental": partial(GSAGHead, variant="incremental"),
    "gsag_hybrid": partial(GSAGHead, variant="hybrid"),
    "deeplabv3": DeepLabV3Head,
    "danet": DANetHead,
    "deeplabv3plus": DeepLabV3PlusHead,
    "upernet": UPerHead,
    "segformer": SegFormerHead,
}


def list_models() -> list[str]:
    """Names accepted by `create_model`."""
    return list(MODELS)


def head_levels(name: str) -> LevelSpec:
    """The levels a model's head reads (its builder's `levels`; `D8` when it declares none)."""
    builder = MODELS[name]
    func = builder.func if isinstance(builder, partial) else builder
    spec = getattr(func, "levels", D8)
    return spec if isinstance(spec, LevelSpec) else D8


def head_parameters(name: str) -> dict[str, inspect.Parameter]:
    """Parameters of a model's head builder, less in_channels, num_classes, in_index and those
    `MODELS` fixes (e.g. the GSAG variant)."""
    builder = MODELS[name]
    fixed = builder.keywords if isinstance(builder, partial) else {}
    func = builder.func if isinstance(builder, partial) else builder
    params = inspect.signature(func).parameters
    skip = ("self", "in_channels", "num_classes", "in_index", *fixed)
    return {k: p for k, p in params.items() if k not in skip}


def head_defaults(name: str) -> dict[str, Any]:
    """{option: default} of a model's head options: the keyword arguments of `create_model`
    besides its own (output_stride, which heads may also read, is a model setting)."""
    return {k: p.default for k, p in head_parameters(name).items() if k not in MODEL_SETTINGS}


def head_hints(name: str) -> dict[str, Any]:
    """{option: type hint} of a model's head options (those of `head_defaults(name)`)."""
    builder = MODELS[name]
    func = builder.func if isinstance(builder, partial) else builder
    target = func.__init__ if inspect.isclass(func) else func
    hints = typing.get_type_hints(target)
    return {k: hints.get(k, Any) for k in head_defaults(name)}
