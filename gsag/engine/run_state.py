"""A training run's state: `Run` (what it is built from), `LoopState` (where its loop stands),
and how both go into last.pt/best.pt and come back on a resume, every process's RNG included."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gsag.config import Config
from gsag.data.base import SegmentationDataset
from gsag.engine.checkpoint import (
    FORMAT,
    VERSION,
    atomic_save,
    load_checkpoint,
    load_resume_weights,
    rng_state,
    set_rng_state,
)
from gsag.engine.distributed import DistInfo
from gsag.engine.run_log import note
from gsag.engine.schedule import PolySchedule
from gsag.hints import dotted


@dataclass
class Run:
    """What one training run is built from; the step, the evaluation and the checkpoints work
    on it."""

    cfg: Config
    dist: DistInfo
    model: nn.Module  # what runs forward: `raw_model`, maybe wrapped in DDP and/or compiled
    raw_model: nn.Module  # what checkpoints hold
    optimizer: torch.optim.Optimizer
    schedule: PolySchedule
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    val_set: SegmentationDataset
    meta: dict[str, Any]  # `gsag.engine.datasets.dataset_meta` of the training set
    run_dir: Path

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"

    def to_save(self) -> dict[str, Any]:
        """The objects whose state dicts a checkpoint holds, by checkpoint key."""
        return {
            "model": self.raw_model,
            "optimizer": self.optimizer,
            "scheduler": self.schedule,
            "scaler": self.scaler,
        }


@dataclass
class LoopState:
    """Where the loop stands after `iteration` iterations."""

    iteration: int = 0
    best_miou: float = -1.0
    bad_steps: int = 0  # non-finite steps skipped since this process started
    bad_streak: int = 0  # ... of them in a row, up to now
    metrics: dict[str, Any] = field(default_factory=dict)  # the last evaluation


def save_state(
    run: Run,
    path: Path,
    state: LoopState,
    rngs: list[dict[str, Any]] | None = None,
    resumable: bool = True,
) -> None:
    """Write a checkpoint: the state dicts of `run.to_save()`, the loop state and the RNG states
    (this process's unless `rngs` gives every process's).

    `resumable=False` (best.pt, a checkpoint for use) keeps the model alone: no optimizer,
    scheduler, scaler or RNG states, which only last.pt needs to resume."""
    saved = run.to_save() if resumable else {"model": run.raw_model}
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "iteration": state.iteration,
        "best_miou": float(state.best_miou),
        **{name: obj.state_dict() for name, obj in saved.items()},
        "config": run.cfg.to_dict(),
        "meta": {**run.meta, "model_args": run.raw_model.model_args},
    }
    if resumable:
        ckpt["rng"] = rngs if rngs is not None else [rng_state()]
    atomic_save(ckpt, path)


def gather_rng(dist: DistInfo) -> list[dict[str, Any]]:
    """RNG states of every rank (rank order); collective under DDP."""
    import torch.distributed as torch_dist

    local = rng_state()
    if not dist.distributed:
        return [local]
    states: list[Any] = [None] * dist.world_size
    torch_dist.all_gather_object(states, local)
    return states


# Config keys a resume cannot honour, and why; a key ending in "." stands for all below it. Any
# other key may change on a resume and takes effect from there (docs/training.md, "What resume
# may change").
RESUME_REFUSES: dict[str, str] = {
    **dict.fromkeys(
        ("model.name", "model.backbone", "model.output_stride", "model.aux", "model.kwargs."),
        "last.pt holds the weights of the model it was trained as",
    ),
    "optim.name": "the optimizer state in last.pt is for the other optimizer",
    "optim.lr": "the optimizer state in last.pt keeps the learning rate it was trained with",
    "optim.head_lr_mult": "the optimizer state in last.pt keeps the learning rates it had",
    "optim.momentum": "the optimizer state in last.pt keeps its momentum",
    "optim.weight_decay": "the optimizer state in last.pt keeps its weight decay",
    "optim.layer_decay": "the optimizer state in last.pt keeps the learning rates it had",
    "optim.no_decay_norm_bias": "the optimizer state in last.pt holds the groups it had",
    "train.seed": "the random states are restored from last.pt",
    "train.batch_size": "the images already seen are counted in batches of the old size",
    "train.amp": "the gradient scaler state in last.pt is for the old precision",
}


#: The model keys of `RESUME_REFUSES` are compared as the model they build (`_resolved_model`).
RESOLVED_MODEL_KEYS = ("model.name", "model.backbone", "model.output_stride", "model.aux")


def config_changes(
    old: dict[str, Any],
    cfg: Config,
    old_model: dict[str, Any] | None = None,
    device: torch.device | str | None = None,
) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (value in `old`, value in `cfg`)} for every key whose value differs; `old`
    is a checkpoint's config dict, completed with today's defaults where it can be.

    The keys of `RESUME_REFUSES` are compared as resolved, so that a value spelled otherwise
    is no change: the model section as the model it builds (`_resolved_model`: head defaults
    filled in, the output stride and levels a `None` stands for, the backbone's timm name;
    `old_model` is the checkpoint's `model_args`, else the model is read from `old`),
    `optim.momentum` only for SGD (AdamW has none), and `train.amp` as it resolves on `device`.
    """
    from gsag.config import from_dict

    with contextlib.suppress(ValueError):  # keys this version no longer knows: compare as is
        old = from_dict(old, source="last.pt").to_dict()
    raw_before, raw_after = dotted(old), dotted(cfg.to_dict())
    before, after = _resolved(raw_before, device), _resolved(raw_after, device)
    if isinstance(old.get("model"), dict):
        num_classes = (old_model or {}).get("num_classes", 2)
        theirs = old_model or _config_model(old["model"], num_classes)
        before.update(_resolved_model(theirs))
        after.update(_resolved_model(_config_model(cfg.to_dict()["model"], num_classes)))
    else:  # no model section to build: compare the keys as written
        before.update({k: v for k, v in raw_before.items() if k.startswith("model.")})
        after.update({k: v for k, v in raw_after.items() if k.startswith("model.")})
    if "adamw" in (before.get("optim.name"), after.get("optim.name")):
        before.pop("optim.momentum", None)  # AdamW has none (an optimizer change is refused)
        after.pop("optim.momentum", None)
    keys = sorted(set(before) | set(after))
    # a changed key is shown as written where it was written (resnet18, not resnet18.tv_in1k)
    return {
        k: (raw_before.get(k, before.get(k)), raw_after.get(k, after.get(k)))
        for k in keys
        if before.get(k) != after.get(k)
    }


def _resolved(flat: dict[str, Any], device: torch.device | str | None) -> dict[str, Any]:
    """`flat` with the non-model values of `RESUME_REFUSES` resolved (see `config_changes`)."""
    from gsag.engine.compile import resolve_amp

    out = {
        k: v for k, v in flat.items() if not k.startswith(("model.kwargs", *RESOLVED_MODEL_KEYS))
    }
    if device is not None and isinstance(out.get("train.amp"), str):
        with contextlib.suppress(Exception):  # a value this version does not know: as is
            out["train.amp"] = resolve_amp(out["train.amp"], torch.device(device))
    return out


def _config_model(model: dict[str, Any], num_classes: int) -> dict[str, Any]:
    """The `create_model` arguments of a config's model section."""
    keys = ("name", "backbone", "output_stride", "aux")
    return {
        **{k: model.get(k) for k in keys},
        "num_classes": num_classes,
        **model.get("kwargs", {}),
    }


def _resolved_model(args: dict[str, Any]) -> dict[str, Any]:
    """Flat `model.*` values of the model `args` (`create_model` arguments) build: built on the
    meta device (no memory, nothing downloaded) for the output stride and levels a `None` stands
    for, every head option with its default, the backbone by its timm name. Arguments this
    version cannot build are compared as stored (the resume then refuses them anyway)."""
    from gsag.models.backbone import timm_name
    from gsag.models.segmentor import create_model
    from gsag.models.table import head_defaults, list_models

    with contextlib.suppress(ValueError, TypeError, KeyError), torch.device("meta"):
        args = create_model(**{**args, "pretrained": False}).model_args
    name = args.get("name")
    kwargs = {k: v for k, v in args.items() if k not in ("num_classes", "pretrained")}
    flat = {key: kwargs.pop(key.split(".")[1], None) for key in RESOLVED_MODEL_KEYS}
    flat["model.backbone"] = timm_name(str(flat["model.backbone"]))
    defaults = head_defaults(name) if name in list_models() else {}
    flat.update({f"model.kwargs.{k}": v for k, v in {**defaults, **kwargs}.items()})
    return flat


def _refusal(key: str) -> str | None:
    for rule, why in RESUME_REFUSES.items():
        if key == rule or (rule.endswith(".") and f"{key}.".startswith(rule)):
            return why
    return None


def refused_changes(changes: dict[str, tuple[Any, Any]]) -> list[str]:
    """The changes of `config_changes` that `RESUME_REFUSES` refuses, as "key old -> new (why)"."""
    return [f"{k} {a!r} -> {b!r} ({why})" for k, (a, b) in changes.items() if (why := _refusal(k))]


def read_resume(
    cfg: Config, show: bool, warn: bool = True, device: torch.device | str | None = None
) -> dict[str, Any] | None:
    """last.pt of `cfg`'s run folder, checked against `cfg` before anything is written: None
    when there is none (a fresh start). Warns about the config keys that changed since it was
    saved (with `warn`, the main process, whatever `--quiet` says; `show` prints the rest).

    Raises:
        ConfigError: a changed key the resume cannot honour (`RESUME_REFUSES`), or `train.iters`
            below the iterations already done.
    """
    from gsag.config import ConfigError
    from gsag.engine.checkpoint import model_args

    path = Path(cfg.output.run_dir) / "last.pt"
    if not path.is_file():
        if show:
            note(f"no {path} yet: starting from iteration 0")
        return None
    ckpt = load_checkpoint(path, map_location="cpu")
    try:
        stored = model_args(ckpt["config"], ckpt["meta"])
    except (KeyError, TypeError):  # a checkpoint without model_args nor a model section
        stored = None
    changes = config_changes(ckpt.get("config", {}), cfg, stored, device)
    changes.pop("output.run_dir", None)  # a run folder may be moved or renamed
    refused = refused_changes(changes)
    if refused:
        raise ConfigError(
            f"cannot resume {path} with changed settings: {'; '.join(refused)}. Resume with the "
            "values it was trained with (see config.yaml beside it), or start anew with "
            "--overwrite or another --out"
        )
    done = int(ckpt["iteration"])
    if cfg.train.iters < done:
        raise ConfigError(
            f"train.iters {cfg.train.iters} is below the {done} iterations {path} has done; "
            f"resume with train.iters >= {done}"
        )
    if changes and warn:
        shown = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items())
        note(f"[yellow]warning[/]: resuming with changed settings: {shown}")
    return ckpt


def resume_state(
    run: Run, ckpt: dict[str, Any] | None, show: bool
) -> tuple[LoopState, list[dict[str, Any]] | None]:
    """Load `ckpt` (last.pt, from `read_resume`) into `run`: the state to go on from and the RNG
    states of the processes that saved it (None for a fresh start)."""
    if ckpt is None:
        return LoopState(), None
    path = run.last_path
    load_resume_weights(run.raw_model, ckpt, path, run.cfg)
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.schedule.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    state = LoopState(iteration=int(ckpt["iteration"]), best_miou=float(ckpt["best_miou"]))
    if show:
        note(f"resuming {path} at iteration {state.iteration}")
    return state, ckpt["rng"]


def restore_rng(
    rng_states: list[dict[str, Any]] | None, dist: DistInfo, show: bool, warn: bool = True
) -> None:
    """Give this process the RNG state it had when last.pt was saved (when there is one): rank
    r takes entry r of `gather_rng`'s list. Saved by another number of processes, the states
    cannot be matched to ranks: every rank keeps its fresh seed, with a warning (`warn`)."""
    if rng_states is None:
        return
    if len(rng_states) == dist.world_size:
        set_rng_state(rng_states[dist.rank])
    elif warn:
        note(
            f"[yellow]warning[/]: the RNG states in last.pt were saved by {len(rng_states)} "
            f"process(es), this run has {dist.world_size}: reseeding, so the run is not "
            "bit-identical to an uninterrupted one"
        )
