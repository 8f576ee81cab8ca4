"""What `gsag train CONFIG --dry-run` shows: the loss, the trackers and the optimizer's parameter
groups a config gives, checked as training would check them, with nothing trained or written."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from gsag.config import Config, loss_terms
from gsag.data.errors import DataError
from gsag.data.synth import SYNTH_CLASSES
from gsag.engine.checks import check_model_config
from gsag.engine.loggers import check_loggers
from gsag.engine.loss import check_class_weights
from gsag.engine.optim import group_rows, param_groups


@dataclass
class Plan:
    """A training run as its config describes it."""

    num_classes: int
    data_note: str  # where the class count comes from
    loss: str  # the terms and their weights, the class weights
    loggers: list[str]
    groups: list[tuple[str, int, int, float, float]]  # `gsag.engine.optim.group_rows`


def plan(cfg: Config) -> Plan:
    """The loss, trackers and parameter groups of `cfg` (the model built without pretrained
    weights: the groups do not depend on them).

    Raises:
        ConfigError: what training would refuse before its first step (model, trackers, class
            weights).
    """
    from gsag.data.layout import open_dataset
    from gsag.engine.train import build_train_model

    check_model_config(cfg)
    check_loggers(cfg)
    try:
        dataset = open_dataset(cfg.data.root, cfg.data.train_split, layout=cfg.data.layout)
        num_classes = dataset.num_classes
        note = f"{num_classes} classes of {cfg.data.root} split {cfg.data.train_split!r}"
    except (DataError, OSError) as e:
        if cfg.data.synthetic:  # training generates it first (`gsag.engine.datasets`)
            num_classes = len(SYNTH_CLASSES)
            note = f"{num_classes} classes of the synthetic benchmark, which training generates at {cfg.data.root}"
            check_class_weights(cfg, num_classes)
        else:
            num_classes = 2
            note = f"2 classes assumed: the data does not open ({e}); only the classifier's size depends on it"
    else:
        check_class_weights(cfg, num_classes)
    quick = copy.deepcopy(cfg)
    quick.model.pretrained = False
    model = build_train_model(quick, num_classes)
    return Plan(
        num_classes,
        note,
        loss_text(cfg),
        list(cfg.train.loggers),
        group_rows(param_groups(cfg, model)),
    )


def loss_text(cfg: Config) -> str:
    """ "ce x 1 + dice x 0.5; class weights auto (...)"."""
    lc = cfg.loss
    terms = loss_terms(lc.type)
    weights = lc.weights or [1.0] * len(terms)
    text = " + ".join(f"{t} x {w:g}" for t, w in zip(terms, weights, strict=True))
    if lc.class_weights == "auto":
        text += "; class weights auto (median frequency, counted from the training split when training starts)"
    elif lc.class_weights:
        text += f"; class weights {list(lc.class_weights)}"
    if lc.label_smoothing:
        text += f"; label smoothing {lc.label_smoothing:g}"
    return text
