"""The optimizer a config describes: SGD or AdamW over parameter groups that set each weight's
learning rate and weight decay.

- `optim.head_lr_mult`: everything outside `model.backbone` trains at lr x head_lr_mult.
- `optim.layer_decay` (d < 1): layer-wise learning-rate decay (BEiT, DINOv2 and ConvNeXt
  segmentation recipes). The backbone is cut into its embeddings or stem (layer 0), its units
  1..L, and what follows them (layer L + 1: a final norm, the plain-ViT pyramid); a weight of
  layer i trains at lr x d ** (L + 1 - i). A unit is a block of a plain ViT (`blocks.3`) or a
  stage of a hierarchical backbone (ConvNeXt `stages.2`, Swin `layers.1`, ResNet `layer4`,
  EfficientNet `blocks.5`), downsampling layers included in the stage that holds them.
- `optim.no_decay_norm_bias`: no weight decay on 1-D weights (norms, biases, layer scales) and
  on position embeddings and tokens; off by default, so that configs written before it train
  as they did.

The groups are kept in a fixed order (backbone layers up, then the head; with decay before
without), so a resumed optimizer state fits them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gsag.config import Config, ConfigError

#: A block or stage of a backbone, found in a parameter name (the outermost one counts).
_UNIT = re.compile(r"(?:^|\.)((?:blocks|stages|layers|layer)[._]?\d+)(?=\.)")
#: Parameters that are embeddings or tokens rather than weights (no weight decay when asked).
NO_DECAY_NAMES = frozenset(
    {
        "pos_embed",
        "cls_token",
        "reg_token",
        "dist_token",
        "mask_token",
        "absolute_pos_embed",
        "relative_position_bias_table",
    }
)


@dataclass
class GroupKey:
    """What sets one group's learning rate and weight decay."""

    part: str  # "backbone" or "head"
    layer: int | None  # the backbone layer under layer decay, else None
    decay: bool  # whether the weight decay applies


def backbone_layers(model: nn.Module) -> tuple[dict[str, int], int]:
    """({parameter name: layer id} for the parameters of `model.backbone`, L): units numbered
    1..L in the order they are registered, what comes before the first 0, after the last L + 1.

    Raises:
        ConfigError: the backbone has no blocks or stages to count.
    """
    names = [
        n for n, p in model.named_parameters() if n.startswith("backbone.") and p.requires_grad
    ]
    units: dict[str, int] = {}
    ids: dict[str, int] = {}
    for name in names:
        match = _UNIT.search(name)
        if match is not None:
            unit = name[: match.end()]
            ids[name] = units.setdefault(unit, len(units) + 1)
        else:
            ids[name] = 0 if not units else -1  # after a unit: placed below
    last = len(units)
    if last == 0:
        raise ConfigError(
            "optim.layer_decay needs a backbone made of blocks or stages (ViT, Swin, ConvNeXt, "
            "ResNet, EfficientNet, ...); this one has none it can count: set optim.layer_decay=1"
        )
    return {n: (last + 1 if i == -1 else i) for n, i in ids.items()}, last


def group_key(name: str, param: nn.Parameter, cfg: Config, layers: dict[str, int]) -> GroupKey:
    """The group of parameter `name`."""
    part = "backbone" if name.startswith("backbone.") else "head"
    leaf = name.rsplit(".", 1)[-1]
    no_decay = param.ndim <= 1 or name.endswith(".bias") or leaf in NO_DECAY_NAMES
    decay = not (cfg.optim.no_decay_norm_bias and no_decay)
    return GroupKey(part, layers.get(name) if part == "backbone" else None, decay)


def param_groups(cfg: Config, model: nn.Module) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: {"params", "lr", "lr_mult", "weight_decay", "name"}.

    `lr_mult` scales the schedule's learning rate (`gsag.engine.schedule.PolySchedule`)."""
    o = cfg.optim
    layers, last = backbone_layers(model) if o.layer_decay != 1 else ({}, 0)
    groups: dict[tuple[bool, int, bool], dict[str, Any]] = {}  # in the order of their keys
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = group_key(name, p, cfg, layers)
        if key.part == "head":
            mult = o.head_lr_mult
        else:
            mult = 1.0 if key.layer is None else o.layer_decay ** (last + 1 - key.layer)
        order = (key.part == "head", -1 if key.layer is None else key.layer, not key.decay)
        group = groups.setdefault(
            order,
            {
                "params": [],
                "lr": o.lr * mult,
                "lr_mult": mult,
                "weight_decay": o.weight_decay if key.decay else 0.0,
                "name": _group_name(key),
            },
        )
        group["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def _group_name(key: GroupKey) -> str:
    name = key.part if key.layer is None else f"backbone layer {key.layer}"
    return name if key.decay else f"{name}, no decay"


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """SGD or AdamW over `param_groups(cfg, model)`."""
    o = cfg.optim
    groups = param_groups(cfg, model)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)


def group_rows(groups: list[dict[str, Any]]) -> list[tuple[str, int, int, float, float]]:
    """(name, tensors, parameters, lr, weight decay) of each group, for `gsag train --dry-run`."""
    return [
        (
            g["name"],
            len(g["params"]),
            sum(p.numel() for p in g["params"]),
            g["lr"],
            g["weight_decay"],
        )
        for g in groups
    ]
