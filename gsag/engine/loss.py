"""The loss a config describes (`loss.*`): its terms and weights, and the class weights, given
or counted from the training split's masks (`loss.class_weights: auto`, kept in the run folder's
class_counts.json so that a resumed run uses the same ones without counting again)."""

from __future__ import annotations

import time
from pathlib import Path

from gsag.config import Config, ConfigError
from gsag.data.base import SegmentationDataset
from gsag.data.counts import COUNTS_FILE, ClassCounts, count_classes, read_counts, save_counts
from gsag.engine import distributed
from gsag.engine.distributed import DistInfo
from gsag.engine.run_log import note
from gsag.losses import LossSum, build_loss


def config_loss(cfg: Config, train_set: SegmentationDataset, dist: DistInfo, show: bool) -> LossSum:
    """`gsag.losses.build_loss` with the config's loss section and the class weights."""
    lc = cfg.loss
    return build_loss(
        lc.type,
        ignore_index=train_set.ignore_index,
        weights=lc.weights,
        class_weights=class_weights(cfg, train_set, dist, show),
        label_smoothing=lc.label_smoothing,
        focal_gamma=lc.focal_gamma,
        thresh=lc.thresh,
        min_kept=lc.min_kept,
    )


def class_weights(
    cfg: Config, train_set: SegmentationDataset, dist: DistInfo, show: bool
) -> list[float] | None:
    """`loss.class_weights` for this dataset: None for [], the list checked against the class
    count, or the median-frequency weights of the training split for "auto".

    Raises:
        ConfigError: a list of the wrong length, or weights that are all 0.
    """
    given = cfg.loss.class_weights
    check_class_weights(cfg, train_set.num_classes)
    if given == []:
        return None
    if given == "auto":
        mine = _counts(cfg, train_set, show).weights() if dist.is_main else []
        weights = distributed.from_rank0(mine)
    else:
        weights = [float(w) for w in given]
    if not any(weights):
        raise ConfigError(
            f"loss.class_weights gives every class of split {cfg.data.train_split!r} weight 0 "
            "(no labelled pixel); give weights above 0 or []"
        )
    return weights


def check_class_weights(cfg: Config, num_classes: int) -> None:
    """Refuse a `loss.class_weights` list that does not give one weight per class."""
    given = cfg.loss.class_weights
    if isinstance(given, list) and given and len(given) != num_classes:
        raise ConfigError(
            f"loss.class_weights has {len(given)} values for the {num_classes} classes of "
            f"{cfg.data.root}; give one per class, auto, or []"
        )


def _counts(cfg: Config, train_set: SegmentationDataset, show: bool) -> ClassCounts:
    """The counts of the run folder's class_counts.json when it holds this split's, else the
    training split counted now (with a progress bar) and written there."""
    path = Path(cfg.output.run_dir) / COUNTS_FILE
    kept = read_counts(path)
    same = kept is not None and kept.split == train_set.split
    if kept is not None and same and len(kept.pixels) == train_set.num_classes:
        if show:
            note(f"class weights (auto) from {path}")
        return kept
    start = time.perf_counter()
    counts = _count_with_bar(train_set, show)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_counts(counts, path, train_set.classes)
    if show:
        note(
            f"class weights (auto): counted the {counts.images} masks of split "
            f"{train_set.split!r} in {time.perf_counter() - start:.1f} s; counts and weights "
            f"in {path}"
        )
    return counts


def _count_with_bar(train_set: SegmentationDataset, show: bool) -> ClassCounts:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())
    console = Console(stderr=True)
    with Progress(*columns, TimeRemainingColumn(), console=console, disable=not show) as bar:
        task = bar.add_task("counting classes", total=len(train_set))
        return count_classes(train_set, lambda done, _: bar.update(task, completed=done))
