"""The datasets a config describes: generate the synthetic one if asked, open a split with the
training or the evaluation pipeline (normalised as the backbone expects), and the dataset facts
every checkpoint stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gsag.config import Config
from gsag.data.base import SegmentationDataset


def input_norm(cfg: Config) -> tuple[list[float], list[float]]:
    """The (mean, std) images are normalised with: data.mean / data.std, or where they are
    empty the ones the backbone's pretrained weights expect."""
    from gsag.models.backbone import backbone_mean_std

    own_mean, own_std = (
        ([], []) if cfg.data.mean and cfg.data.std else backbone_mean_std(cfg.model.backbone)
    )
    return list(cfg.data.mean or own_mean), list(cfg.data.std or own_std)


def synth_seed(cfg: Config) -> int:
    """The generator seed of `data.synthetic` data, for `gsag train` and `gsag demo` alike: 0,
    whatever `train.seed` is, so that the runs of a seed grid share one dataset (other data:
    `gsag data synth --seed N` into a folder, and `data.synthetic=false`)."""
    return 0


def ensure_data(cfg: Config) -> None:
    """Generate the synthetic dataset at `data.root` when it is missing and `data.synthetic`.

    The data is always generator seed 0 at the default size, whatever `train.seed` is: the runs
    of a seed grid must share one dataset, not take the `train.seed` of whichever ran first (other
    seeds or sizes: `gsag data synth --seed/--size` and `data.synthetic=false`).
    """
    root = Path(cfg.data.root)
    if root.exists() and any(root.iterdir()):
        return
    if not cfg.data.synthetic:
        raise FileNotFoundError(
            f"data.root {root} does not exist or is empty; fetch VOC with `gsag data prepare-voc "
            f"--download`, point data.root at your dataset (--set data.root=...), generate the "
            f"context benchmark there (`gsag data synth --out {root}`), or set "
            f"data.synthetic=true to generate a small one there"
        )
    from gsag.data.synth import generate

    generate(root, seed=synth_seed(cfg))  # the current generator version


def make_dataset(cfg: Config, split: str, train: bool) -> SegmentationDataset:
    """Open one split of `cfg.data` with the training or the evaluation pipeline."""
    from gsag.data.layout import open_dataset
    from gsag.data.transforms import eval_transforms, train_transforms

    d = cfg.data
    mean, std = input_norm(cfg)
    if train:
        tf = train_transforms(
            crop_size=d.crop_size,
            base_size=tuple(d.base_size) if d.base_size else None,
            scale_range=tuple(d.scale_range),
            cat_max_ratio=d.cat_max_ratio,
            hflip=d.hflip,
            photometric=d.photometric,
            mean=tuple(mean),
            std=tuple(std),
        )
    else:
        scale = tuple(d.eval_scale) if d.eval_scale else None
        tf = eval_transforms(scale, mean=tuple(mean), std=tuple(std))
    return open_dataset(d.root, split, transforms=tf, skip_bad=cfg.train.skip_bad, layout=d.layout)


def dataset_meta(dataset: SegmentationDataset, cfg: Config) -> dict[str, Any]:
    """What predict/export need besides the weights (stored in every checkpoint)."""
    mean, std = input_norm(cfg)
    return {
        "classes": list(dataset.classes),
        "palette": [list(map(int, c)) for c in dataset.palette],
        "num_classes": int(dataset.num_classes),
        "ignore_index": int(dataset.ignore_index),
        "prediction_ids": getattr(dataset, "prediction_ids", None),
        "mean": mean,
        "std": std,
    }
