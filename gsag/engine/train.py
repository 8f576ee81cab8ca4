"""The training loop, top to bottom: data, model, optimizer, iterations, evaluation, checkpoints.

The images of every optimizer step are the same for 1 or N processes and any `accum_steps`, and a
resumed run goes on bit for bit where it stopped (see `gsag.engine.sampler`).

Run directory: config.yaml (resolved), metrics.jsonl and TensorBoard events (see
`gsag.engine.run_log`), last.pt, best.pt.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from gsag.config import Config, save_config
from gsag.data.base import SegmentationDataset
from gsag.engine import distributed
from gsag.engine.checkpoint import export_safetensors, rng_state, set_rng_state
from gsag.engine.checks import check_amp, check_model_config, micro_batch
from gsag.engine.compile import apply_compile, compile_mode
from gsag.engine.datasets import dataset_meta, ensure_data, make_dataset
from gsag.engine.distributed import DistInfo
from gsag.engine.evaluate import evaluate
from gsag.engine.infer import inference_options
from gsag.engine.loggers import check_loggers
from gsag.engine.loss import config_loss
from gsag.engine.optim import build_optimizer
from gsag.engine.progress import Progress, open_progress
from gsag.engine.run_dir import claim_run_dir
from gsag.engine.run_log import RunLog, note
from gsag.engine.run_state import (
    LoopState,
    Run,
    gather_rng,
    read_resume,
    restore_rng,
    resume_state,
    save_state,
)
from gsag.engine.sampler import seed_everything, stream_loader
from gsag.engine.schedule import PolySchedule
from gsag.engine.step import Batches, grad_scaler, train_step
from gsag.engine.timing import IterationTimer


class TrainingDiverged(RuntimeError):
    """The loss stayed non-finite for `train.max_bad_steps` iterations in a row, or the weights
    became non-finite."""


def train(
    cfg: Config,
    *,
    resume: bool = False,
    quiet: bool = False,
    stop_after: int | None = None,
    device: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train `cfg.model` on `cfg.data` and evaluate it every `train.eval_interval` iterations.

    Run under `torchrun` for DDP; the process group is read from the environment.

    Args:
        cfg: a resolved config (see `gsag.config.load_config`).
        resume: continue from `<run_dir>/last.pt` if it exists (a fresh start otherwise).
        quiet: no progress bar and no printing (for callers with their own progress).
        stop_after: stop once this iteration is done, like a killed run: no final evaluation and
            no checkpoint beyond the regular `save_interval` ones (for tests and time-boxed runs).
        device: "cpu" or "cuda"; by default CUDA when available.
        overwrite: a run folder that already holds a run is moved aside first (without it, and
            without `resume`, such a folder is refused; see `gsag.engine.run_dir`).

    Returns:
        {"run_dir", "device", "threads", "best_miou", "metrics" (last evaluation),
        "checkpoint" (best.pt), "last" (last.pt), "iteration", "bad_steps", "seconds",
        "compile_seconds"}; "best_miou" is NaN and "checkpoint" None when no evaluation had
        labelled pixels (no best.pt).

    Raises:
        TrainingDiverged: too many non-finite losses in a row, or non-finite weights; last.pt
            is left as it was.
        RunFolderError: the run folder is in use, or holds a run and neither `resume` nor
            `overwrite` is set.
    """
    dist = distributed.setup(device)
    old_threads = torch.get_num_threads()
    outer_rng = rng_state()
    try:
        if cfg.train.num_threads > 0:
            torch.set_num_threads(cfg.train.num_threads)
        check_model_config(cfg, dist.device)
        check_loggers(cfg)
        keep = [cfg.data.root]  # a dataset generated inside the run folder stays there
        with claim_run_dir(cfg.output.run_dir, dist, resume, overwrite, keep, cfg):
            result = _train(cfg, dist, resume=resume, quiet=quiet, stop_after=stop_after)
        # rank 0 writes files after the last collective: no rank leaves the group before all are
        # done (only on success: a rank that failed alone must not wait for the others here)
        distributed.barrier()
        return result
    finally:
        torch.set_num_threads(old_threads)
        set_rng_state(outer_rng)
        distributed.cleanup(dist)


def _train(
    cfg: Config, dist: DistInfo, resume: bool, quiet: bool, stop_after: int | None
) -> dict[str, Any]:
    t0 = time.perf_counter()
    tc = cfg.train
    show = dist.is_main and not quiet
    amp = check_amp(cfg, dist)
    micro = micro_batch(cfg, dist)
    # refuses before anything is written; warnings are printed whatever --quiet says
    ckpt = read_resume(cfg, show, dist.is_main, dist.device) if resume else None
    seed_everything(tc.seed + dist.rank)
    train_set, val_set, meta = _datasets(cfg, dist)
    run = _build(cfg, dist, amp, (train_set, val_set), meta, show, resuming=ckpt is not None)
    state, rng_states = resume_state(run, ckpt, show)
    del ckpt
    log = _open_log(run, state.iteration)
    loader = stream_loader(
        train_set, batch_size=tc.batch_size, micro=micro, accum_steps=tc.accum_steps,
        rank=dist.rank, world_size=dist.world_size, seed=tc.seed, start=state.iteration,
        iters=tc.iters, num_workers=tc.num_workers, pin_memory=dist.device.type == "cuda",
    )  # fmt: skip
    timer = IterationTimer(tc.batch_size, dist.device)
    batches = timer.wrap(iter(loader))
    restore_rng(rng_states, dist, show, dist.is_main)  # after the loader: it draws nothing
    end = tc.iters if stop_after is None else min(tc.iters, stop_after)
    if show and state.iteration >= end:
        note(f"{run.last_path} is at iteration {state.iteration} of {tc.iters}: nothing to train")
    progress = open_progress(
        show and state.iteration < end, state.iteration, tc.iters, state.best_miou
    )
    try:
        _loop(run, state, batches, end, timer, log, progress)
    finally:
        progress.close()
        log.close()
    done = state.iteration == tc.iters
    if dist.is_main and cfg.output.safetensors and done and run.best_path.is_file():
        export_safetensors(run.best_path, run.run_dir / "best.safetensors")
    kept = run.best_path.is_file()  # none when no evaluation had labelled pixels
    return {
        "run_dir": str(run.run_dir),
        "device": str(dist.device),
        "threads": torch.get_num_threads(),  # the count training used (restored after it)
        "best_miou": state.best_miou if kept else math.nan,
        "metrics": state.metrics,
        "checkpoint": str(run.best_path) if kept else None,
        "last": str(run.last_path),
        "iteration": state.iteration,
        "bad_steps": state.bad_steps,
        "seconds": time.perf_counter() - t0,
        "compile_seconds": timer.compile_s,
    }


def _loop(
    run: Run,
    state: LoopState,
    batches: Batches,
    end: int,
    timer: IterationTimer,
    log: RunLog,
    progress: Progress,
) -> None:
    """Iterate up to `end`: a step, then the logging, evaluation and checkpoints that are due."""
    tc = run.cfg.train
    while state.iteration < end:
        run.model.train()
        losses, stepped = train_step(run, batches)
        run.schedule.step()
        state.iteration += 1
        it = state.iteration
        timer.tick()
        _count_bad_step(run, state, stepped)
        _check_finite_weights(run, state)
        lr = run.schedule.base_lr()
        progress.update(it, losses["loss"], lr)
        if it % tc.log_interval == 0 or it == end:
            times = timer.summary()
            progress.log(it, log.train(it, losses, lr, state.bad_steps, times), lr, times)
        if it % tc.eval_interval == 0 or it == tc.iters:
            state.metrics = _evaluate(run, it, log, progress)
            unlabelled = math.isnan(state.metrics["mIoU"]) and state.best_miou < 0
            if unlabelled and run.dist.is_main and it <= tc.eval_interval:  # the first only
                note(no_labels_message(run))
            if run.dist.is_main and state.metrics["mIoU"] > state.best_miou:
                state.best_miou = state.metrics["mIoU"]
                save_state(run, run.best_path, state, resumable=False)  # weights for use
        # No save in the middle of a run of non-finite losses: last.pt stays a healthy state.
        if (it % tc.save_interval == 0 or it == tc.iters) and state.bad_streak == 0:
            rngs = gather_rng(run.dist)
            if run.dist.is_main:
                save_state(run, run.last_path, state, rngs)
        timer.restart()  # evaluation and saving are not iteration time


def _count_bad_step(run: Run, state: LoopState, stepped: bool) -> None:
    """Count a skipped (non-finite) step; stop after `train.max_bad_steps` of them in a row."""
    if stepped:
        state.bad_streak = 0
        return
    state.bad_steps += 1
    state.bad_streak += 1
    if state.bad_streak >= run.cfg.train.max_bad_steps:
        raise TrainingDiverged(
            f"the loss was NaN/inf for {state.bad_streak} iterations in a row "
            f"(up to iteration {state.iteration}); stopped. The last good checkpoint is "
            f"{run.last_path} (if one was saved). Lower optim.lr, set optim.grad_clip, add "
            f"schedule.warmup_iters, or train with train.amp=none"
        )


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every value of `tensors` is finite, read back with one device sync."""
    total_norm = getattr(torch.nn.utils, "get_total_norm", None)  # torch >= 2.6: fused kernels
    if total_norm is not None:
        return bool(torch.isfinite(total_norm(tensors, norm_type=math.inf)))
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())  # torch 2.4, 2.5


def _check_finite_weights(run: Run, state: LoopState) -> None:
    """Stop at once when the weights or BatchNorm statistics hold NaN/inf (a step with an
    enormous learning rate, say), before anything is evaluated or saved from them."""
    model = run.raw_model
    tensors = [t.detach() for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    if _all_finite(tensors):
        return
    named = [*model.named_parameters(), *model.named_buffers()]
    bad = next(n for n, t in named if t.is_floating_point() and not torch.isfinite(t).all())
    raise TrainingDiverged(
        f"the weights became NaN/inf at iteration {state.iteration} (first: {bad}). "
        f"The last good checkpoint is {run.last_path} (if one was saved). Lower optim.lr, set "
        f"optim.grad_clip, add schedule.warmup_iters, or train with train.amp=none"
    )


def no_labels_message(run: Run) -> str:
    """Why a run keeps no best.pt: its validation masks hold nothing but ignore_index."""
    return (
        f"[yellow]warning[/]: the validation split {run.cfg.data.val_split!r} has no labelled "
        f"pixels (every mask pixel is {run.meta['ignore_index']}), so mIoU is undefined and no "
        f"best.pt is kept; {run.last_path} is the checkpoint"
    )


# -- setting up ------------------------------------------------------------------------------
def _datasets(
    cfg: Config, dist: DistInfo
) -> tuple[SegmentationDataset, SegmentationDataset, dict[str, Any]]:
    """(training set, validation set, `dataset_meta`); the main process generates missing
    synthetic data first."""
    if dist.is_main:
        ensure_data(cfg)
    distributed.barrier()
    train_set = make_dataset(cfg, cfg.data.train_split, train=True)
    val_set = make_dataset(cfg, cfg.data.val_split, train=False)
    return train_set, val_set, dataset_meta(train_set, cfg)


def _build(
    cfg: Config,
    dist: DistInfo,
    amp: str,
    splits: tuple[SegmentationDataset, SegmentationDataset],
    meta: dict[str, Any],
    show: bool,
    resuming: bool = False,
) -> Run:
    """The model (SyncBatchNorm, DDP and compiled as configured), optimizer, schedule, loss
    (its class weights from the training split of `splits`, (train, val)). `resuming`: last.pt's
    weights replace the model's, so no pretrained weights are fetched or read for it (a resumed
    run needs no network for `model.pretrained: true`)."""
    train_set, val_set = splits
    tc = cfg.train
    dev = dist.device
    built = replace(cfg, model=replace(cfg.model, pretrained=False)) if resuming else cfg
    model = build_train_model(built, meta["num_classes"]).to(dev)
    if tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if dist.distributed and dev.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(cfg, model)
    s = cfg.schedule
    schedule = PolySchedule(optimizer, tc.iters, s.power, s.min_lr, s.warmup_iters, s.warmup_ratio)
    scaler = grad_scaler(amp == "fp16")
    loss_fn = config_loss(cfg, train_set, dist, show).to(dev)
    raw_model = model
    if compile_mode(tc.compile) == "head":  # in place: checkpoint keys stay the same
        apply_compile(raw_model, "head")
    if dist.distributed:
        ids = [dev.index] if dev.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if compile_mode(tc.compile) == "model":
        # Static shapes: this wrapper only sees training batches (of one size; evaluation runs
        # `raw_model`), and a dynamic training graph trips inductor on views whose strides are
        # conv output sizes ((H - 1) // 8 + 1), e.g. the head's `heads_to_map`. Without
        # dynamic=False, dynamo makes the graph dynamic as soon as the process has compiled
        # Segmentor.forward at another size before (an earlier run, bench row or test).
        model = cast(nn.Module, torch.compile(model, dynamic=False))  # an OptimizedModule
    return Run(
        cfg=cfg,
        dist=dist,
        model=model,
        raw_model=raw_model,
        optimizer=optimizer,
        schedule=schedule,
        scaler=scaler,
        loss_fn=loss_fn,
        val_set=val_set,
        meta=meta,
        run_dir=Path(cfg.output.run_dir),
    )


def _open_log(run: Run, start: int) -> RunLog:
    """Write the resolved config.yaml (main process) and open the run's log at `start`."""
    if run.dist.is_main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(run.cfg, run.run_dir / "config.yaml")
    return RunLog(run.run_dir, start, run.dist, run.cfg)


# -- model ---------------------------------------------------------------------------------
def build_train_model(cfg: Config, num_classes: int) -> nn.Module:
    """`gsag.create_model` with the config's model section (pretrained weights allowed)."""
    from gsag.models.segmentor import create_model

    m = cfg.model
    return create_model(
        m.name,
        num_classes,
        backbone=m.backbone,
        pretrained=m.pretrained,
        output_stride=m.output_stride,
        aux=m.aux,
        **m.kwargs,
    )


# -- evaluation ---------------------------------------------------------------------------------
def _evaluate(run: Run, it: int, log: RunLog, progress: Progress) -> dict[str, Any]:
    """Evaluate `run.raw_model` on the validation set (shared over processes) and log it."""
    e = run.cfg.eval
    progress.eval_start(it)
    t0 = time.perf_counter()
    distributed.broadcast_buffers(run.raw_model)  # every rank evaluates the model rank 0 saves
    metrics = evaluate(
        run.raw_model,
        run.val_set,
        **inference_options(e),
        num_classes=run.meta["num_classes"],
        ignore_index=run.meta["ignore_index"],
        max_images=e.max_images,
        batch_size=e.batch_size,
        num_workers=min(run.cfg.train.num_workers, 2),
        amp=run.cfg.train.amp,
        rank=run.dist.rank,
        world_size=run.dist.world_size,
        keep_samples=run.cfg.train.tb_images if run.dist.is_main else 0,
    )
    seconds = time.perf_counter() - t0
    samples = metrics.pop("samples", [])
    progress.eval_done(it, metrics, seconds)
    log.val(it, metrics, samples, run.meta, seconds)
    return metrics
