"""The training loop, top to bottom: data, model, optimizer, iterations, evaluation, checkpoints.

Data order. Iteration `it` uses samples `it*B .. (it+1)*B - 1` of one endless stream (B =
`train.batch_size`, the total batch), where the stream is a fresh seeded permutation of the
dataset every epoch and each sample's augmentation is seeded by its stream position. So the
images of every optimizer step are the same for 1 or N processes and any `accum_steps`, and a
resumed run picks the stream up exactly where it stopped.

Run directory: config.yaml (resolved), metrics.jsonl, last.pt, best.pt, TensorBoard events.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from gsag.atomic import write_text as atomic_write_text
from gsag.config import Config, ConfigError, save_config
from gsag.engine import distributed
from gsag.engine.checkpoint import (
    FORMAT,
    VERSION,
    atomic_save,
    export_safetensors,
    load_checkpoint,
    load_resume_weights,
    rng_state,
    set_rng_state,
)
from gsag.engine.compile import apply_compile, compile_mode, resolve_amp
from gsag.engine.evaluate import autocast, evaluate, inference_options
from gsag.engine.run_dir import claim_run_dir
from gsag.engine.schedule import PolySchedule
from gsag.engine.timing import IterationTimer
from gsag.losses import build_loss


class TrainingDiverged(RuntimeError):
    """The loss stayed non-finite for `train.max_bad_steps` iterations in a row."""


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
        {"run_dir", "best_miou", "metrics" (last evaluation), "checkpoint" (best.pt),
        "last" (last.pt), "iteration", "bad_steps", "seconds"}.

    Raises:
        TrainingDiverged: too many non-finite losses in a row; last.pt is left as it was.
        RunFolderError: the run folder is in use, or holds a run and neither `resume` nor
            `overwrite` is set.
    """
    info = distributed.setup(device)
    old_threads = torch.get_num_threads()
    outer_rng = rng_state()
    try:
        if cfg.train.num_threads > 0:
            torch.set_num_threads(cfg.train.num_threads)
        check_model_config(cfg)
        keep = [cfg.data.root]  # a dataset generated inside the run folder stays there
        with claim_run_dir(cfg.output.run_dir, info, resume, overwrite, keep):
            return _train(cfg, info, resume=resume, quiet=quiet, stop_after=stop_after)
    finally:
        torch.set_num_threads(old_threads)
        set_rng_state(outer_rng)
        distributed.cleanup(info)


def _train(
    cfg: Config, info: distributed.DistInfo, resume: bool, quiet: bool, stop_after: int | None
) -> dict[str, Any]:
    t0 = time.perf_counter()
    tc = cfg.train
    dev = info.device
    show = info.is_main and not quiet
    run_dir = Path(cfg.output.run_dir)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"

    amp = resolve_amp(tc.amp, dev)
    if amp == "fp16" and dev.type != "cuda":
        raise ConfigError(
            "train.amp=fp16 needs CUDA (it uses a GradScaler); use bf16 or none on CPU"
        )
    micro = tc.batch_size // (tc.accum_steps * info.world_size)
    if micro * tc.accum_steps * info.world_size != tc.batch_size or micro == 0:
        raise ConfigError(
            f"train.batch_size {tc.batch_size} cannot be split over {info.world_size} process(es) "
            f"x {tc.accum_steps} accumulation step(s); make it a multiple of their product"
        )

    _seed_everything(tc.seed + info.rank)

    # -- data ---------------------------------------------------------------------------------
    if info.is_main:
        ensure_data(cfg)
    distributed.barrier()
    train_set = make_dataset(cfg, cfg.data.train_split, train=True)
    val_set = make_dataset(cfg, cfg.data.val_split, train=False)
    meta = dataset_meta(train_set, cfg)

    # -- model, optimizer, schedule -----------------------------------------------------------
    model = build_train_model(cfg, meta["num_classes"]).to(dev)
    if tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if info.distributed and dev.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(cfg, model)
    schedule = PolySchedule(
        optimizer,
        tc.iters,
        cfg.schedule.power,
        cfg.schedule.min_lr,
        cfg.schedule.warmup_iters,
        cfg.schedule.warmup_ratio,
    )
    scaler = _grad_scaler(amp == "fp16")
    loss_fn = build_loss(cfg.loss.type, cfg.loss.thresh, cfg.loss.min_kept, meta["ignore_index"])
    raw_model = model  # what checkpoints hold
    if compile_mode(tc.compile) == "head":  # in place: checkpoint keys stay the same
        apply_compile(raw_model, "head")
    if info.distributed:
        ids = [dev.index] if dev.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if compile_mode(tc.compile) == "model":
        model = torch.compile(model)

    # -- resume ------------------------------------------------------------------------------
    start, best_miou, rng_states = 0, -1.0, None
    if resume and last_path.is_file():
        ckpt = load_checkpoint(last_path, map_location="cpu")
        load_resume_weights(raw_model, ckpt, last_path, cfg)
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        start, best_miou = int(ckpt["iteration"]), float(ckpt["best_miou"])
        rng_states = ckpt["rng"]
        if show:
            _print(f"resuming {last_path} at iteration {start}")
    elif resume and show:
        _print(f"no {last_path} yet: starting from iteration 0")

    writer = None
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        _trim_log(run_dir / "metrics.jsonl", start)
        writer = _tensorboard(run_dir, start)

    # -- loader: created before restoring RNG, it draws nothing from the global generator -----
    sampler = StreamSampler(
        len(train_set), tc.batch_size, micro, tc.accum_steps, info.rank, info.world_size,
        tc.seed, start, tc.iters,
    )  # fmt: skip
    loader = DataLoader(
        SeededSamples(train_set, tc.seed),
        batch_size=micro,
        sampler=sampler,
        num_workers=tc.num_workers,
        pin_memory=dev.type == "cuda",
        generator=torch.Generator(),
        persistent_workers=False,
    )
    timer = IterationTimer(tc.batch_size, dev)
    batches = timer.wrap(iter(loader))
    if rng_states is not None:
        if len(rng_states) == info.world_size:
            set_rng_state(rng_states[info.rank])
        elif show:
            _print("RNG states were saved by a different number of processes: reseeding")

    # -- loop ---------------------------------------------------------------------------------
    state = {"bad_steps": 0, "bad_streak": 0, "metrics": {}, "best_miou": best_miou}
    end = tc.iters if stop_after is None else min(tc.iters, stop_after)
    progress = _Progress(show, start, tc.iters)
    parts_to_save = {"model": raw_model, "optimizer": optimizer, "scheduler": schedule}
    parts_to_save["scaler"] = scaler
    it = start
    try:
        while it < end:
            model.train()
            loss, parts, stepped = _step(
                model, raw_model, batches, optimizer, scaler, loss_fn, cfg, dev
            )
            schedule.step()
            it += 1
            timer.tick()
            if stepped:
                state["bad_streak"] = 0
            else:
                state["bad_steps"] += 1
                state["bad_streak"] += 1
                if state["bad_streak"] >= tc.max_bad_steps:
                    raise TrainingDiverged(
                        f"the loss was NaN/inf for {state['bad_streak']} iterations in a row "
                        f"(up to iteration {it}); stopped. The last good checkpoint is {last_path} "
                        f"(if one was saved). Lower optim.lr, set optim.grad_clip, add "
                        f"schedule.warmup_iters, or train with train.amp=none"
                    )
            progress.update(it, loss, schedule.get_last_lr()[0])
            if it % tc.log_interval == 0 or it == end:
                times = timer.summary()
                progress.timing(times)
                _log_train(writer, run_dir, it, parts, schedule.get_last_lr(), state, info, times)
            if it % tc.eval_interval == 0 or it == tc.iters:
                last_eval = _evaluate(
                    cfg, model, raw_model, val_set, meta, info, writer, run_dir, it, progress
                )
                state["metrics"] = last_eval
                if info.is_main and last_eval["mIoU"] > state["best_miou"]:
                    state["best_miou"] = last_eval["mIoU"]
                    _save(best_path, parts_to_save, it, state, cfg, meta)
            # No save in the middle of a run of non-finite losses: last.pt stays a healthy state.
            if (it % tc.save_interval == 0 or it == tc.iters) and state["bad_streak"] == 0:
                rngs = _gather_rng(info)
                if info.is_main:
                    _save(last_path, parts_to_save, it, state, cfg, meta, rngs)
            timer.restart()  # evaluation and saving are not iteration time
    finally:
        progress.close()
        if writer is not None:
            writer.close()
    if info.is_main and cfg.output.safetensors and it == tc.iters and best_path.is_file():
        export_safetensors(best_path, run_dir / "best.safetensors")

    return {
        "run_dir": str(run_dir),
        "best_miou": state["best_miou"],
        "metrics": state["metrics"],
        "checkpoint": str(best_path),
        "last": str(last_path),
        "iteration": it,
        "bad_steps": state["bad_steps"],
        "seconds": time.perf_counter() - t0,
        "compile_seconds": timer.compile_s,
    }


# -- one optimizer step ----------------------------------------------------------------------
def _step(model, raw_model, batches, optimizer, scaler, loss_fn, cfg: Config, dev):
    """Forward/backward over `accum_steps` micro-batches, then one optimizer step if finite.

    Returns:
        (mean loss as float, {"loss", "loss_main", "loss_aux"} floats, whether the step ran).
    """
    tc = cfg.train
    optimizer.zero_grad(set_to_none=True)
    totals = torch.zeros(3, device=dev)  # loss, main, aux
    finite = True
    for a in range(tc.accum_steps):
        images, masks = next(batches)
        images = images.to(dev, non_blocking=True)
        masks = masks.to(dev, non_blocking=True)
        if tc.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        sync = a == tc.accum_steps - 1 or not isinstance(model, nn.parallel.DistributedDataParallel)
        with _no_sync(model, sync), autocast(dev, tc.amp):
            out = model(images)
            main = loss_fn(out["out"], masks)
            aux = loss_fn(out["aux"], masks) if "aux" in out else main.new_zeros(())
            loss = (main + cfg.loss.aux_weight * aux) / tc.accum_steps
        finite = finite and bool(torch.isfinite(loss))
        # Every rank runs backward, finite or not, so DDP's collectives stay matched.
        with _no_sync(model, sync):
            scaler.scale(loss).backward()
        totals += torch.stack([loss.detach(), main.detach(), aux.detach()]).float() / torch.tensor(
            [1.0, tc.accum_steps, tc.accum_steps], device=dev
        )
    stepped = distributed.all_true(finite, dev)
    if stepped:
        scaler.unscale_(optimizer)
        max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), max_norm)
        # With a GradScaler (fp16) inf gradients are the scaler's business: it skips the step.
        if not scaler.is_enabled() and not torch.isfinite(norm):
            stepped = False
            scaler.update()
        else:
            scaler.step(optimizer)
            scaler.update()
    if not stepped:
        optimizer.zero_grad(set_to_none=True)
    parts = dict(zip(("loss", "loss_main", "loss_aux"), totals.tolist(), strict=True))
    return parts["loss"], parts, stepped


class _no_sync:
    """`model.no_sync()` for DDP micro-batches that are not the last; a no-op otherwise."""

    def __init__(self, model: nn.Module, sync: bool) -> None:
        self.ctx = None if sync else model.no_sync()

    def __enter__(self):
        return self.ctx.__enter__() if self.ctx is not None else None

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc) if self.ctx is not None else False


def _grad_scaler(enabled: bool):
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3


# -- building blocks -------------------------------------------------------------------------
def ensure_data(cfg: Config) -> None:
    """Generate the synthetic dataset at `data.root` when it is missing and `data.synthetic`."""
    root = Path(cfg.data.root)
    if root.exists() and any(root.iterdir()):
        return
    if not cfg.data.synthetic:
        raise FileNotFoundError(
            f"data.root {root} does not exist or is empty; fetch VOC with `gsag data prepare-voc "
            f"--download`, point data.root at your dataset (--set data.root=...), or set "
            f"data.synthetic=true to generate a small one there"
        )
    from gsag.data.synth import generate

    generate(root, seed=cfg.train.seed)  # the current generator version


def make_dataset(cfg: Config, split: str, train: bool) -> Dataset:
    """Open one split of `cfg.data` with the training or the evaluation pipeline."""
    from gsag.data import open_dataset
    from gsag.data.transforms import eval_transforms, train_transforms

    d = cfg.data
    if train:
        tf = train_transforms(
            crop_size=d.crop_size,
            base_size=tuple(d.base_size) if d.base_size else None,
            scale_range=tuple(d.scale_range),
            cat_max_ratio=d.cat_max_ratio,
            hflip=d.hflip,
            photometric=d.photometric,
            mean=tuple(d.mean),
            std=tuple(d.std),
        )
    else:
        scale = tuple(d.eval_scale) if d.eval_scale else None
        tf = eval_transforms(scale, mean=tuple(d.mean), std=tuple(d.std))
    return open_dataset(d.root, split, transforms=tf, skip_bad=cfg.train.skip_bad, layout=d.layout)


def dataset_meta(dataset: Dataset, cfg: Config) -> dict[str, Any]:
    """What predict/export need besides the weights (stored in every checkpoint)."""
    return {
        "classes": list(dataset.classes),
        "palette": [list(map(int, c)) for c in dataset.palette],
        "num_classes": int(dataset.num_classes),
        "ignore_index": int(dataset.ignore_index),
        "prediction_ids": getattr(dataset, "prediction_ids", None),
        "mean": list(cfg.data.mean),
        "std": list(cfg.data.std),
    }


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


def check_model_config(cfg: Config) -> None:
    """Name the config key at fault before any work: model name, backbone, head options (the
    checks of `gsag.models.check_model_args`, whose error keys sit below `model.`)."""
    from gsag.models import ModelArgError, check_model_args

    m = cfg.model
    try:
        check_model_args(m.name, m.backbone, m.kwargs, aux=m.aux)
    except ModelArgError as e:
        fix = f"; use --set model.{e.fix[0]}={e.fix[1]} instead" if e.fix else ""
        raise ConfigError(f"model.{e.key} {e.detail}{fix}") from e
    if isinstance(m.pretrained, str) and not Path(m.pretrained).is_file():
        raise ConfigError(
            f"model.pretrained is {m.pretrained!r}, which is not a file; give a local weights "
            "file, true (download from timm's hub) or false"
        )


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """SGD or AdamW; parameters outside `model.backbone` get `optim.head_lr_mult` x lr."""
    o = cfg.optim
    backbone, head = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (backbone if name.startswith("backbone.") else head).append(p)
    groups = [
        {"params": backbone, "lr": o.lr, "lr_mult": 1.0},
        {"params": head, "lr": o.lr * o.head_lr_mult, "lr_mult": o.head_lr_mult},
    ]
    groups = [g for g in groups if g["params"]]
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)


class StreamSampler(Sampler):
    """This process's share of the training stream, from iteration `start` to `iters`.

    Yields `(dataset index, stream position)` pairs; see the module docstring.
    """

    def __init__(
        self,
        length: int,
        batch_size: int,
        micro: int,
        accum_steps: int,
        rank: int,
        world_size: int,
        seed: int,
        start: int,
        iters: int,
    ) -> None:
        self.length, self.batch_size, self.micro = length, batch_size, micro
        self.accum_steps, self.rank, self.world_size = accum_steps, rank, world_size
        self.seed, self.start, self.iters = seed, start, iters
        self._perm: tuple[int, list[int]] | None = None

    def _index(self, pos: int) -> int:
        epoch = pos // self.length
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(self.length, generator=g).tolist())
        return self._perm[1][pos % self.length]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for it in range(self.start, self.iters):
            for a in range(self.accum_steps):
                first = it * self.batch_size + (a * self.world_size + self.rank) * self.micro
                for pos in range(first, first + self.micro):
                    yield self._index(pos), pos

    def __len__(self) -> int:
        return (self.iters - self.start) * self.accum_steps * self.micro


class SeededSamples(Dataset):
    """Wraps a dataset so that sample `(index, position)` is augmented with a seed derived from
    its stream position, independent of workers, processes and resumption. The global RNG
    states of the calling process are left as they were."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, pos = key
        s = (self.seed * 1_000_003 + pos * 7_919 + 12_345) % (2**63)
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(s)
            random.seed(s)
            np.random.seed(s % 2**32)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- evaluation, logging, checkpoints --------------------------------------------------------
def _evaluate(cfg, model, raw_model, val_set, meta, info, writer, run_dir, it, progress):
    e = cfg.eval
    progress.pause(f"evaluating at iteration {it}")
    distributed.broadcast_buffers(raw_model)  # every rank evaluates the model rank 0 saves
    metrics = evaluate(
        raw_model,
        val_set,
        **inference_options(e),
        num_classes=meta["num_classes"],
        ignore_index=meta["ignore_index"],
        max_images=e.max_images,
        num_workers=min(cfg.train.num_workers, 2),
        amp=cfg.train.amp,
        rank=info.rank,
        world_size=info.world_size,
        keep_samples=cfg.train.tb_images if info.is_main else 0,
    )
    progress.resume(metrics["mIoU"])
    samples = metrics.pop("samples", [])
    if info.is_main:
        record = {
            "type": "val",
            "iteration": it,
            **{k: metrics[k] for k in ("mIoU", "aAcc", "mAcc", "FWIoU")},
            "IoU": dict(zip(meta["classes"], metrics["IoU"], strict=True)),
        }
        _append_jsonl(run_dir / "metrics.jsonl", record)
        if writer is not None:
            for k in ("mIoU", "aAcc", "mAcc", "FWIoU"):
                writer.add_scalar(f"val/{k}", metrics[k], it)
            for name, iou in zip(meta["classes"], metrics["IoU"], strict=True):
                if not math.isnan(iou):
                    writer.add_scalar(f"val_IoU/{name}", iou, it)
            for i, (image, mask, pred) in enumerate(samples):
                writer.add_image(f"val_predictions/{i}", _panel(image, mask, pred, meta), it)
    return metrics


def _panel(image, mask, pred, meta) -> torch.Tensor:
    """(3, H, 3W) uint8: image | ground truth | prediction, masks coloured by the palette."""
    mean = torch.tensor(meta["mean"]).view(3, 1, 1)
    std = torch.tensor(meta["std"]).view(3, 1, 1)
    img = ((image.float() * std + mean).clamp(0, 1) * 255).to(torch.uint8)  # (3, H, W)
    lut = torch.zeros(256, 3, dtype=torch.uint8)
    lut[: len(meta["palette"])] = torch.tensor(meta["palette"], dtype=torch.uint8)
    lut[meta["ignore_index"]] = 255

    def color(m: torch.Tensor) -> torch.Tensor:
        return lut[m.clamp(0, 255).long()].permute(2, 0, 1)  # (H, W) -> (3, H, W)

    if img.shape[-2:] != mask.shape[-2:]:
        img = torch.nn.functional.interpolate(img[None].float(), size=mask.shape[-2:])[0].to(
            torch.uint8
        )
    return torch.cat([img, color(mask), color(pred)], dim=2)


def _log_train(writer, run_dir, it, parts, lrs, state, info, times: dict[str, float]) -> None:
    parts = {
        k: float(distributed.mean_over_processes(torch.tensor(v, device=info.device)))
        for k, v in parts.items()
    }
    if not info.is_main:
        return
    record = {
        "type": "train",
        "iteration": it,
        **parts,
        "lr": lrs[0],
        "bad_steps": state["bad_steps"],
        **times,  # rank 0's timing: seconds per iteration, data share, images/s, memory
    }
    _append_jsonl(run_dir / "metrics.jsonl", record)
    if writer is not None:
        for k, v in parts.items():
            writer.add_scalar(f"train/{k}", v, it)
        for k, v in times.items():
            if v == v:  # skip NaN
                writer.add_scalar(f"time/{k}", v, it)
        writer.add_scalar("train/lr", lrs[0], it)
        writer.add_scalar("train/bad_steps", state["bad_steps"], it)


def _gather_rng(info: distributed.DistInfo) -> list[dict]:
    """RNG states of every rank (rank order); collective under DDP."""
    import torch.distributed as dist

    local = rng_state()
    if not info.distributed:
        return [local]
    states: list[Any] = [None] * info.world_size
    dist.all_gather_object(states, local)
    return states


def _save(path, parts: dict, it: int, state: dict, cfg: Config, meta: dict, rngs=None) -> None:
    """Write a checkpoint: the state dicts of `parts` (model, optimizer, scheduler, scaler)."""
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "iteration": it,
        "best_miou": float(state["best_miou"]),
        **{name: obj.state_dict() for name, obj in parts.items()},
        "rng": rngs if rngs is not None else [rng_state()],
        "config": cfg.to_dict(),
        "meta": {**meta, "model_args": parts["model"].model_args},
    }
    atomic_save(ckpt, path)


def _append_jsonl(path: Path, record: dict) -> None:
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
    if "IoU" in clean:
        clean["IoU"] = {k: (None if math.isnan(v) else v) for k, v in clean["IoU"].items()}
    with open(path, "a") as f:
        f.write(json.dumps(clean) + "\n")


def _trim_log(path: Path, start: int) -> None:
    """Keep only the records up to iteration `start` (a killed run may have logged past it)."""
    if not path.exists():
        return
    if start == 0:
        path.unlink()
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("iteration", 0) <= start]
    atomic_write_text(path, "".join(ln + "\n" for ln in kept))


def _tensorboard(run_dir: Path, start: int):
    """A TensorBoard writer that drops the killed run's steps after `start` (None without
    tensorboard installed); its write errors never stop training."""
    from gsag.engine.tb import open_writer

    return open_writer(run_dir, resumed_at=start)


def _print(msg: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(msg)


class _Progress:
    """A rich progress bar with loss, lr, it/s and ETA (nothing when `enabled` is false)."""

    def __init__(self, enabled: bool, start: int, total: int) -> None:
        self.enabled = enabled
        self.bar = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}"),
            TextColumn("{task.fields[speed]}"),
            TextColumn("{task.fields[timing]}"),
            TextColumn("mIoU {task.fields[miou]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
        )
        self.bar.start()
        self.task = self.bar.add_task(
            "train",
            total=total,
            completed=start,
            loss=math.nan,
            lr=0.0,
            speed="",
            timing="",
            miou="–",
            note="",
        )
        self.t_last, self.it_last = time.perf_counter(), start

    def update(self, it: int, loss: float, lr: float) -> None:
        if self.bar is None:
            return
        now = time.perf_counter()
        fields = {"loss": loss, "lr": lr}
        if now - self.t_last >= 1.0:
            fields["speed"] = f"{(it - self.it_last) / (now - self.t_last):.2f} it/s"
            self.t_last, self.it_last = now, it
        self.bar.update(self.task, completed=it, **fields)

    def timing(self, times: dict[str, float]) -> None:
        """Shows the last log interval's s/it, images/s, data-wait share and peak memory."""
        if self.bar is None or times["sec_per_iter"] != times["sec_per_iter"]:
            return
        text = (
            f"{times['sec_per_iter']:.3f} s/it  {times['images_per_s']:.1f} img/s  "
            f"data {100 * times['data_share']:.0f}%"
        )
        if "peak_mem_gib" in times:
            text += f"  mem {times['peak_mem_gib']:.1f} GiB"
        self.bar.update(self.task, timing=text)

    def pause(self, note: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, note=note)

    def resume(self, miou: float) -> None:
        if self.bar is not None:
            shown = "–" if math.isnan(miou) else f"{100 * miou:.1f}"
            self.bar.update(self.task, note="", miou=shown)
            self.t_last = time.perf_counter()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
