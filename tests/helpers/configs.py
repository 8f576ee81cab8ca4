"""Tiny, fast training configs on the generated data, for the engine and CLI tests."""

from __future__ import annotations

from pathlib import Path

from gsag.config import Config, load_config


def tiny_config(data_root: Path, run_dir: Path, *overrides: str) -> Config:
    """The GSAG hybrid on the ~0.4 M-parameter test backbone, 32x32 crops, batch 2."""
    base = [
        f"data.root={data_root}",
        "data.crop_size=32",
        "data.base_size=[64, 64]",
        "data.scale_range=[0.5, 1.0]",
        "model.name=gsag_hybrid",
        "model.backbone=test_resnet",
        "model.pretrained=false",
        "model.kwargs={head_channels: 16, key_channels: 8, num_heads: 2, fuse_channels: 16}",
        "loss.type=ohem",
        "loss.min_kept=256",
        "train.iters=4",
        "train.batch_size=2",
        "train.eval_interval=2",
        "train.save_interval=2",
        "train.log_interval=1",
        "train.num_workers=0",
        "train.num_threads=1",  # not the cores free: runs compared in a test use one count
        "train.tb_images=1",
        "eval.max_images=2",
        f"output.run_dir={run_dir}",
    ]
    return load_config(None, [*base, *overrides])


# `--set` arguments that shrink a CLI run (gsag ablate / gsag demo) to a couple of iterations.
TINY_CLI_SETS = [
    "--set", "train.iters=2", "--set", "train.eval_interval=2", "--set", "train.save_interval=2",
    "--set", "train.batch_size=2", "--set", "train.num_workers=0", "--set", "data.crop_size=64",
    "--set", "data.base_size=[64,64]", "--set", "train.log_interval=1",
    "--set", "loss.min_kept=100", "--set", "model.backbone=test_resnet",
    "--set", "train.num_threads=1",
]  # fmt: skip
