"""One optimizer step: forward/backward over `train.accum_steps` micro-batches (DDP synchronises
gradients on the last one only), then a clipped, scaled step if every process's loss was finite."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from gsag.engine import distributed
from gsag.engine.compile import autocast
from gsag.engine.run_state import Run

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]  # (images (B, 3, H, W), masks (B, H, W))


def train_step(run: Run, batches: Batches) -> tuple[dict[str, float], bool]:
    """Forward/backward over `accum_steps` micro-batches, then one optimizer step if finite.

    Returns:
        ({"loss", "loss_main", "loss_aux"} as floats, the loss averaged over the micro-batches;
        whether the step ran).
    """
    tc, dev, model, scaler = run.cfg.train, run.dist.device, run.model, run.scaler
    run.optimizer.zero_grad(set_to_none=True)
    totals = torch.zeros(3, device=dev)  # loss, main, aux
    finite = True
    for a in range(tc.accum_steps):
        images, masks = next(batches)
        images = images.to(dev, non_blocking=True)
        masks = masks.to(dev, non_blocking=True)
        if tc.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        sync = a == tc.accum_steps - 1  # DDP averages the gradients after the last only
        with _no_sync(model, sync), autocast(dev, tc.amp):
            out = model(images)
            main = run.loss_fn(out["out"], masks)
            aux = run.loss_fn(out["aux"], masks) if "aux" in out else main.new_zeros(())
            loss = (main + run.cfg.loss.aux_weight * aux) / tc.accum_steps
        finite = finite and bool(torch.isfinite(loss))
        # Every rank runs backward, finite or not, so DDP's collectives stay matched.
        with _no_sync(model, sync):
            scaler.scale(loss).backward()
        totals += torch.stack([loss.detach(), main.detach(), aux.detach()]).float() / torch.tensor(
            [1.0, tc.accum_steps, tc.accum_steps], device=dev
        )
    stepped = distributed.all_true(finite, dev)
    if stepped:
        scaler.unscale_(run.optimizer)
        max_norm = run.cfg.optim.grad_clip if run.cfg.optim.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(run.raw_model.parameters(), max_norm)
        # With a GradScaler (fp16) inf gradients are the scaler's business: it skips the step.
        if not scaler.is_enabled() and not torch.isfinite(norm):
            stepped = False
            scaler.update()
        else:
            scaler.step(run.optimizer)
            scaler.update()
    if not stepped:
        run.optimizer.zero_grad(set_to_none=True)
    losses = dict(zip(("loss", "loss_main", "loss_aux"), totals.tolist(), strict=True))
    return losses, stepped


def _no_sync(model: nn.Module, sync: bool) -> AbstractContextManager[Any]:
    """`model.no_sync()` for a DDP model's micro-batches that are not the last; a no-op
    otherwise."""
    if sync or not isinstance(model, nn.parallel.DistributedDataParallel):
        return nullcontext()
    return model.no_sync()


def grad_scaler(enabled: bool) -> torch.amp.GradScaler:
    """A GradScaler for fp16 training; disabled, it passes everything through unchanged."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3
