"""Timing: CUDA events on a GPU, wall and process CPU time on a CPU; interleaved rounds."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gsag.engine.compile import autocast


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timings:
    """Per-call wall-clock times and, on CPU, process CPU times (milliseconds).

    With one thread on a shared machine, CPU time is the robust number: it counts the work done
    while the process ran and not the time other jobs held the core.
    """

    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)


def _timed(fn: Callable[[], Any], device: torch.device, out: Timings) -> None:
    if device.type == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        out.wall_ms.append(start.elapsed_time(end))
        return
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    out.wall_ms.append((time.perf_counter() - t0) * 1000.0)
    out.cpu_ms.append((time.process_time() - c0) * 1000.0)


def time_inference(model: nn.Module, x: torch.Tensor, warmup: int = 2, repeats: int = 5) -> Timings:
    """Times `repeats` forwards of `model(x)` after `warmup` untimed ones (CUDA events on GPU)."""
    device = x.device
    times = Timings()
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        _sync(device)
        for _ in range(repeats):
            _timed(lambda: model(x), device, times)
    return times


def train_step_fn(
    model: nn.Module, x: torch.Tensor, num_classes: int, amp: str = "none"
) -> Callable[[], None]:
    """One training step (forward, cross-entropy on main + 0.4 aux, backward, SGD) as a call.

    fp16 scales the loss with a GradScaler, as training does.
    """
    device = x.device
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    gen = torch.Generator(device="cpu").manual_seed(0)
    target = torch.randint(0, num_classes, (x.shape[0], *x.shape[2:]), generator=gen).to(device)
    loss_fn = nn.CrossEntropyLoss(ignore_index=255)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    def step() -> None:
        with autocast(device, amp):
            out = model(x)
            loss = loss_fn(out["out"], target)
            if "aux" in out:
                loss = loss + 0.4 * loss_fn(out["aux"], target)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def time_train_step(
    model: nn.Module, x: torch.Tensor, num_classes: int, repeats: int = 2
) -> Timings:
    """Times `repeats` training steps (see `train_step_fn`) after one untimed warm-up step."""
    device = x.device
    step = train_step_fn(model, x, num_classes)
    step()
    _sync(device)
    times = Timings()
    for _ in range(repeats):
        _timed(step, device, times)
    model.eval()
    return times


def interleaved(
    calls: dict[Any, Callable[[], Any]], rounds: int, repeats: int, device: torch.device
) -> dict[Any, list[Timings]]:
    """Times every call `repeats` times per round; round r starts at the r-th call (rotated).

    Returns, for each key, one `Timings` per round.
    """
    keys = list(calls)
    out: dict[Any, list[Timings]] = {k: [] for k in keys}
    for r in range(rounds):
        order = keys[r % len(keys) :] + keys[: r % len(keys)] if keys else []
        for key in order:
            times = Timings()
            for _ in range(repeats):
                _timed(calls[key], device, times)
            out[key].append(times)
    return out
