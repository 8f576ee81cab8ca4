"""Experiment configuration: nested dataclasses loaded from one flat YAML file.

A config file holds only the keys it changes; everything else takes the defaults below. Unknown
keys are errors that suggest the nearest valid key, and `--set a.b=c` overrides any value from
the command line. Every run saves its resolved config (`config.yaml`) beside its checkpoints, and
that file loads back with `load_config` to the same `Config`.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gsag.atomic import write_text
from gsag.errors import ConfigError
from gsag.hints import build, check_key, convert
from gsag.rules import Rule
from gsag.safe_yaml import YamlError, load_yaml

#: Image scales of multi-scale inference (`eval.scales`, `gsag predict --tta`).
DEFAULT_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
#: Inference modes of `gsag eval` / `gsag predict` (eval.mode).
EVAL_MODES = ("whole", "slide", "multiscale")
#: Whole-image passes above this many pixels run as sliding windows instead (4096 x 4096).
DEFAULT_MAX_PIXELS = 4096 * 4096
#: ONNX opset of `gsag export` and `export_onnx` (>= 14 for scaled_dot_product_attention).
DEFAULT_OPSET = 17


@dataclass
class DataConfig:
    """Where the data lives and how training crops are made."""

    root: str = "data/VOCdevkit/VOC2012"
    layout: str = "auto"  # auto | voc | folder | cityscapes | ade20k | context59 | context60
    train_split: str = "train"
    val_split: str = "val"
    synthetic: bool = False  # generate a synthetic VOC-format dataset at `root` if it is missing
    crop_size: int | list[int] = 512  # side, or [height, width]
    base_size: list[int] = field(default_factory=lambda: [2048, 512])
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    cat_max_ratio: float = 0.75
    hflip: float = 0.5
    photometric: bool = True
    # evaluation: keep-ratio resize of the image into [long edge, short edge]; [] keeps its size
    eval_scale: list[int] = field(default_factory=list)
    # input normalisation on the [0, 1] scale; [] = the backbone's own
    # (`gsag.engine.datasets.input_norm`)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)


@dataclass
class ModelConfig:
    """Which model `gsag.create_model` builds; `kwargs` go to the model builder unchanged."""

    name: str = "gsag_hybrid"
    backbone: str = "resnet50"
    pretrained: bool | str = True  # True: timm weights; a string: a local weights file
    # None: the head's (8; 32 for upernet, segformer) where timm can dilate the backbone, else
    # the backbone's own
    output_stride: int | None = None
    aux: bool = True
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    """Loss of the main head; the auxiliary head uses the same loss times `aux_weight`."""

    type: str = "ohem"  # ce | ohem | dice | focal | lovasz, or a sum joined by + (ce+dice)
    weights: list[float] = field(default_factory=list)  # one per term of `type`; [] = 1 each
    # one per class, "auto" (median frequency over the training split), or [] for none
    class_weights: list[float] | str = field(default_factory=list)
    label_smoothing: float = 0.0  # of ce and ohem
    focal_gamma: float = 2.0
    thresh: float = 0.7  # ohem
    min_kept: int = 100_000  # ohem
    aux_weight: float = 0.4


@dataclass
class OptimConfig:
    """Optimizer; `head_lr_mult` scales the learning rate of everything but the backbone,
    `layer_decay` that of each backbone block or stage by its depth (docs/training.md)."""

    name: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    head_lr_mult: float = 1.0
    layer_decay: float = 1.0  # lr x layer_decay ** (layers above); 1 = the same lr everywhere
    no_decay_norm_bias: bool = False  # no weight decay on norms, biases, position embeddings
    grad_clip: float = 0.0  # max gradient norm; 0 disables clipping


@dataclass
class ScheduleConfig:
    """Linear warm-up, then poly decay to `min_lr`, stepped every iteration."""

    power: float = 0.9
    min_lr: float = 1e-4
    warmup_iters: int = 0
    warmup_ratio: float = 1e-6  # lr factor at iteration 0 of the warm-up


@dataclass
class TrainConfig:
    """The training loop. `batch_size` is the total batch of one optimizer step.

    Each process gets `batch_size / (world_size * accum_steps)` images per forward pass, so the
    same config reproduces the same batch on 1 or 8 GPUs.
    """

    iters: int = 20_000
    batch_size: int = 16
    accum_steps: int = 1
    amp: str = "auto"  # auto (bf16 on a CUDA GPU that has it, else float32) | bf16 | fp16 | none
    channels_last: bool = False
    compile: str | bool = "none"  # none | head | model (old configs: true = model, false = none)
    eval_interval: int = 2_000
    save_interval: int = 2_000
    log_interval: int = 50
    num_workers: int = 4
    seed: int = 0
    skip_bad: bool = False
    max_bad_steps: int = 5  # consecutive non-finite losses that stop the run
    num_threads: int = 0  # torch CPU threads during the run; 0: the cores free at its start
    tb_images: int = 4  # validation images in the prediction panel of each evaluation
    loggers: list[str] = field(default_factory=lambda: ["tensorboard"])  # and csv, wandb, mlflow
    project: str = "gsag"  # the W&B project and MLflow experiment of the run


@dataclass
class EvalConfig:
    """Inference used for validation and `gsag eval`."""

    mode: str = "whole"  # whole | slide | multiscale
    crop_size: int | list[int] = 512  # slide window: side, or [height, width]
    stride: int | list[int] = 341
    scales: list[float] = field(default_factory=lambda: list(DEFAULT_SCALES))
    flip: bool = False
    max_images: int = 0  # evaluate only the first N validation images; 0 = all
    # images per forward pass: consecutive images of one size are stacked, never padded
    batch_size: int = 1
    amp: str = "auto"  # autocast of validation, `gsag eval` and `gsag predict`; as train.amp
    compile: str = "none"  # none | head | model for `gsag eval`/`gsag predict` (dynamic shapes)


@dataclass
class OutputConfig:
    """Where the run writes; `run_dir` defaults to runs/<config file name>."""

    run_dir: str = ""
    safetensors: bool = True  # also write best.safetensors (weights + config) at the end


@dataclass
class Config:
    """One experiment."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON friendly)."""
        return dataclasses.asdict(self)


LAYOUTS = ("auto", "voc", "folder", "cityscapes", "ade20k", "context59", "context60")
#: The terms of `loss.type` (`gsag.losses`).
LOSS_NAMES = ("ce", "ohem", "dice", "focal", "lovasz")
#: What `train.loggers` takes (`gsag.engine.loggers`); wandb and mlflow are optional extras.
LOGGERS = ("tensorboard", "csv", "wandb", "mlflow")
AMP_MODES = ("auto", "bf16", "fp16", "none")
COMPILE_MODES = ("none", "head", "model")
#: Output strides the backbones support (`gsag.models.backbone`).
OUTPUT_STRIDES = (8, 16, 32)
#: What `data.mean` / `data.std` hold.
NORM_HINT = "R, G, B of images scaled to [0, 1], or [] for the backbone's own"
#: Largest image side, crop, stride or resize target in pixels.
MAX_SIDE = 16384
#: Largest resize factor of training (`data.scale_range`) and inference (`eval.scales`).
MAX_SCALE = 16.0
#: Most torch CPU threads (`train.num_threads`, `--threads`): a fixed cap, not the CPU count
#: of this machine, so that a config written on a large machine loads on any other.
MAX_THREADS = 1024
#: Most data loader worker processes (`train.num_workers`, `--workers`).
MAX_WORKERS = 256
#: Most classes of a model built by name (`--num-classes`; 16-bit masks hold up to 65535).
MAX_CLASSES = 65535
#: Smallest input side of `gsag bench`, `gsag export` and `gsag models` (the deepest stride).
MIN_INPUT = 32

_SIZE = Rule(low=1, high=MAX_SIDE, lengths=(2,), hint="one side, or [height, width]")
_COUNT = Rule(low=1)
_ANY = Rule()  # strings, flags and names checked elsewhere (model names: gsag.models)
#: The rule of every config key beyond its type (the type is the dataclass field's). Floats
#: must be finite and ints fit a C int everywhere; `tests/test_value_rules.py` checks that
#: every key has a rule here and that each rule refuses what it should.
RULES: dict[str, Rule] = {
    "data.root": _ANY,
    "data.layout": Rule(choices=LAYOUTS),
    "data.train_split": _ANY,
    "data.val_split": _ANY,
    "data.synthetic": _ANY,
    "data.crop_size": _SIZE,
    "data.base_size": Rule(
        low=1, high=MAX_SIDE, lengths=(0, 2), hint="[long edge, short edge], or [] to keep"
    ),
    "data.scale_range": Rule(
        low=0, high=MAX_SCALE, low_open=True, lengths=(2,), increasing=True, hint="[low, high]"
    ),
    "data.cat_max_ratio": Rule(low=0, high=1, low_open=True),
    "data.hflip": Rule(low=0, high=1, hint="a probability"),
    "data.photometric": _ANY,
    "data.eval_scale": Rule(
        low=1,
        high=MAX_SIDE,
        lengths=(0, 2),
        hint="[long edge, short edge], e.g. [2048, 512], or [] for the original size",
    ),
    "data.mean": Rule(low=0, high=1, lengths=(0, 3), hint=NORM_HINT),
    "data.std": Rule(low=0, high=1, low_open=True, lengths=(0, 3), hint=NORM_HINT),
    "model.name": _ANY,
    "model.backbone": _ANY,
    "model.pretrained": _ANY,
    "model.output_stride": Rule(choices=(None, *OUTPUT_STRIDES)),  # None: see ModelConfig
    "model.aux": _ANY,
    "model.kwargs": _ANY,  # each head option is checked by gsag.models.check_model_args
    "loss.type": Rule(words=LOSS_NAMES, sums=True, hint="e.g. ce+dice"),
    "loss.weights": Rule(low=0, hint="one weight per term of loss.type, or [] for 1 each"),
    "loss.class_weights": Rule(low=0, words=("auto",), hint="one weight per class, or [] for none"),
    "loss.label_smoothing": Rule(low=0, high=1, high_open=True),
    "loss.focal_gamma": Rule(low=0, high=16),
    "loss.thresh": Rule(low=0, high=1, low_open=True),
    "loss.min_kept": _COUNT,
    "loss.aux_weight": Rule(low=0),
    "optim.name": Rule(choices=("sgd", "adamw")),
    "optim.lr": Rule(low=0),  # 0 freezes the weights (a check of the seeding)
    "optim.momentum": Rule(low=0, high=1, high_open=True),
    "optim.weight_decay": Rule(low=0),
    "optim.head_lr_mult": Rule(low=0, low_open=True),
    "optim.layer_decay": Rule(low=0, high=1, low_open=True, hint="1 turns it off"),
    "optim.no_decay_norm_bias": _ANY,
    "optim.grad_clip": Rule(low=0),
    "schedule.power": Rule(low=0),
    "schedule.min_lr": Rule(low=0),
    "schedule.warmup_iters": Rule(low=0),
    "schedule.warmup_ratio": Rule(low=0, high=1),
    "train.iters": _COUNT,
    "train.batch_size": _COUNT,
    "train.accum_steps": _COUNT,
    "train.amp": Rule(choices=AMP_MODES),
    "train.channels_last": _ANY,
    "train.compile": Rule(choices=COMPILE_MODES),
    "train.eval_interval": _COUNT,
    "train.save_interval": _COUNT,
    "train.log_interval": _COUNT,
    "train.num_workers": Rule(low=0, high=MAX_WORKERS),
    "train.seed": Rule(low=0),
    "train.skip_bad": _ANY,
    "train.max_bad_steps": _COUNT,
    "train.num_threads": Rule(low=0, high=MAX_THREADS),
    "train.tb_images": Rule(low=0),
    "train.loggers": Rule(choices=LOGGERS),
    "train.project": _ANY,
    "eval.mode": Rule(choices=EVAL_MODES),
    "eval.crop_size": _SIZE,
    "eval.stride": _SIZE,
    "eval.scales": Rule(low=0, high=MAX_SCALE, low_open=True, nonempty=True),
    "eval.flip": _ANY,
    "eval.max_images": Rule(low=0),
    "eval.batch_size": _COUNT,
    "eval.amp": Rule(choices=AMP_MODES),
    "eval.compile": Rule(choices=COMPILE_MODES),
    "output.run_dir": _ANY,
    "output.safetensors": _ANY,
}


def load_config(path: str | os.PathLike | None, overrides: typing.Sequence[str] = ()) -> Config:
    """Load a YAML config file and apply `a.b=c` overrides.

    Args:
        path: YAML file, or None for the defaults.
        overrides: strings like `train.iters=100`; the value is parsed as YAML.

    Returns:
        The validated config; `output.run_dir` defaults to runs/<file stem>.

    Raises:
        ConfigError: unknown key (with the nearest valid one), wrong type or invalid value.
    """
    source = str(path) if path is not None else "defaults"
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist; see configs/ for examples")
        try:
            raw = load_yaml(p.read_text(encoding="utf-8"), str(p)) or {}
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"{p}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                "save the config as UTF-8"
            ) from e
        except OSError as e:
            raise ConfigError(f"{p}: cannot be read ({e.strerror or e})") from e
        except YamlError as e:
            raise ConfigError(str(e)) from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping of sections at the top level")
    cfg = from_dict(raw, source=source)
    for item in overrides:
        apply_override(cfg, item)
    if not cfg.output.run_dir:
        stem = Path(path).stem if path is not None else "default"
        cfg.output.run_dir = str(Path("runs") / stem)
    validate(cfg, source)
    return cfg


def from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    """Build a `Config` from a nested dict, checking keys and types."""
    return build(Config, raw, "", source, check=_checked)


def config_text(cfg: Config) -> str:
    """The resolved config as YAML: what `save_config` writes."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    write_text(path, config_text(cfg))


def apply_override(cfg: Config, item: str) -> None:
    """Apply one `section.key=value` override in place (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(
            f"override {item!r} must look like section.key=value, e.g. train.iters=100"
        )
    key, text = item.split("=", 1)
    parts = key.strip().split(".")
    try:
        value = load_yaml(text, f"override {item!r}: its value") if text.strip() else ""
    except YamlError as e:
        raise ConfigError(str(e)) from None
    # model.kwargs.<name>=value sets one builder keyword.
    if len(parts) == 3 and parts[:2] == ["model", "kwargs"]:
        check_value(key.strip(), value, f"override {item!r}")
        cfg.model.kwargs[parts[2]] = value
        return
    if len(parts) != 2:
        raise ConfigError(f"override {item!r}: key must be section.key, e.g. train.iters")
    section_name, name = parts
    check_key(section_name, [f.name for f in dataclasses.fields(Config)], "", f"override {item!r}")
    section = getattr(cfg, section_name)
    check_key(
        name,
        [f.name for f in dataclasses.fields(section)],
        f"{section_name}.",
        f"override {item!r}",
    )
    hint = typing.get_type_hints(type(section))[name]
    where = f"override {item!r}"
    full = f"{section_name}.{name}"
    setattr(section, name, _checked(full, convert(value, hint, full, where), where))


def validate(cfg: Config, source: str = "config") -> None:
    """Check every value against its rule in `RULES`, then the rules between keys."""
    cfg.train.compile = _upgrade("train.compile", cfg.train.compile)
    for key in RULES:
        section, name = key.split(".")
        check_value(key, getattr(getattr(cfg, section), name), source)
    terms = loss_terms(cfg.loss.type)
    if cfg.loss.weights and len(cfg.loss.weights) != len(terms):
        raise ConfigError(
            f"{source}: loss.weights {cfg.loss.weights} has {len(cfg.loss.weights)} values for "
            f"the {len(terms)} terms of loss.type {cfg.loss.type!r}; give one per term or []"
        )
    if cfg.train.batch_size % cfg.train.accum_steps:
        raise ConfigError(
            f"{source}: train.batch_size {cfg.train.batch_size} is not divisible by "
            f"train.accum_steps {cfg.train.accum_steps}; change one of them"
        )


def loss_terms(kind: str) -> list[str]:
    """The terms of `loss.type`: "ce+dice" -> ["ce", "dice"]."""
    return [term.strip() for term in kind.split("+")]


def check_value(key: str, value: Any, source: str = "config") -> None:
    """Raise `ConfigError` naming the key, the value, its rule and default when `value` breaks
    the rule of `key` in `RULES` (keys without one, like `model.kwargs.*`, must be finite)."""
    problem = RULES.get(key, _ANY).problem(value)
    if problem is None:
        return
    section, _, name = key.partition(".")
    default = getattr(getattr(Config(), section, None), name, None)
    rule = RULES.get(key, _ANY)
    note = f": {rule.hint}" if rule.hint else ""
    default = "" if "kwargs" in key else f" (default {default!r}{note})"
    raise ConfigError(f"{source}: {key} is {value!r}; it {problem}{default}")


def _upgrade(key: str, value: Any) -> Any:
    """Old spellings still accepted: `train.compile: true/false` (before compile modes)."""
    if key == "train.compile" and isinstance(value, bool):
        return "model" if value else "none"
    return value


def _checked(key: str, value: Any, source: str) -> Any:
    value = _upgrade(key, value)
    check_value(key, value, source)
    return value


def rules_markdown() -> str:
    """`RULES` as a Markdown table (key, type, values); docs/training.md holds a copy."""
    rows = ["| key | type | values |", "| --- | --- | --- |"]
    for key, rule in RULES.items():
        if rule == _ANY:
            continue
        section, name = key.split(".")
        hint = typing.get_type_hints(type(getattr(Config(), section)))[name]
        kind = str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")
        note = f" ({rule.hint})" if rule.hint else ""
        rows.append(f"| `{key}` | {kind.replace('|', 'or')} | {rule.text()}{note} |")
    return "\n".join(rows)
