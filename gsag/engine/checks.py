"""The checks of a training config before any work: the model section (its errors named by
config key), the precision on this device, the batch split over processes."""

from __future__ import annotations

from pathlib import Path

import torch

from gsag.config import Config, ConfigError
from gsag.engine.compile import resolve_amp
from gsag.engine.distributed import DistInfo


def check_model_config(cfg: Config, device: torch.device | str | None = None) -> None:
    """Name the config key at fault before any work: model name, backbone, head options (the
    checks of `gsag.models.check_model_args`, whose error keys sit below `model.`), and, given
    the `device` the run uses, a local-attention implementation that cannot run there."""
    from gsag.models import ModelArgError, check_model_args
    from gsag.models.local_attention_dispatch import impl_problem

    m = cfg.model
    try:
        check_model_args(m.name, m.backbone, m.kwargs, aux=m.aux)
    except ModelArgError as e:
        fix = f"; use --set model.{e.fix[0]}={e.fix[1]} instead" if e.fix else ""
        raise ConfigError(f"model.{e.key} {e.detail}{fix}") from e
    impl = m.kwargs.get("attention_impl")
    problem = impl_problem(impl, device) if device is not None and impl else None
    if problem:
        raise ConfigError(
            f"model.kwargs.attention_impl is {impl!r}, which {problem}: e.g. --set "
            "model.kwargs.attention_impl=auto"
        )
    if isinstance(m.pretrained, str) and not Path(m.pretrained).is_file():
        raise ConfigError(
            f"model.pretrained is {m.pretrained!r}, which is not a file; give a local weights "
            "file, true (download from timm's hub) or false"
        )


def check_amp(cfg: Config, dist: DistInfo) -> str:
    """`train.amp` resolved for the device: "none", "bf16" or "fp16"."""
    amp = resolve_amp(cfg.train.amp, dist.device)
    if amp == "fp16" and dist.device.type != "cuda":
        raise ConfigError(
            "train.amp=fp16 needs CUDA (it uses a GradScaler); use bf16 or none on CPU"
        )
    return amp


def micro_batch(cfg: Config, dist: DistInfo) -> int:
    """Images per process and forward pass: `train.batch_size` / (accum_steps x processes)."""
    tc = cfg.train
    micro = tc.batch_size // (tc.accum_steps * dist.world_size)
    if micro * tc.accum_steps * dist.world_size != tc.batch_size or micro == 0:
        raise ConfigError(
            f"train.batch_size {tc.batch_size} cannot be split over {dist.world_size} process(es) "
            f"x {tc.accum_steps} accumulation step(s); make it a multiple of their product"
        )
    return micro
