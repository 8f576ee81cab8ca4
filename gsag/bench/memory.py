"""Peak memory: CUDA allocator statistics, or on CPU the resident set of a fresh process."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

MIB = 1024.0**2


def cuda_peak_memory_during(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak extra CUDA memory (MiB) allocated while `fn()` ran, above what was held before."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / MIB


def _rss_bytes(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field_name}")


def peak_rss_during(fn: Callable[[], Any]) -> float:
    """Extra resident memory (MiB) the process reached while running `fn()` (Linux).

    Resets the kernel's high-water mark (VmHWM) through `/proc/self/clear_refs`, runs `fn`, and
    returns the new high-water mark minus the resident set just before. Memory that the
    allocator already holds from earlier work can be reused unseen, so call it in a fresh
    process (as `cpu_peak_memory_mb` does) for honest numbers.
    """
    gc.collect()
    base = _rss_bytes("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError as err:
        raise RuntimeError(
            f"cannot reset the memory high-water mark ({err}); run with --no-memory"
        ) from err
    fn()
    return (_rss_bytes("VmHWM") - base) / MIB


def _cpu_peak_worker(spec: dict) -> dict:
    """Runs in a fresh process: the extra resident memory one forward needs, in MiB."""
    from gsag.bench.models import build_model

    torch.manual_seed(0)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    model = build_model(
        spec["model"], spec["backbone"], False, spec["num_classes"], spec["model_kwargs"]
    ).eval()
    x = torch.randn(spec["batch"], 3, spec["height"], spec["width"])
    with torch.inference_mode():
        model(torch.randn(1, 3, 64, 64))  # one-time library set-up, kept out of the number

        def forward() -> None:
            model(x)

        return {"peak_mem_mb": peak_rss_during(forward)}


def cpu_peak_memory_mb(
    model: str,
    backbone: str,
    height: int,
    width: int,
    batch: int = 1,
    num_classes: int = 21,
    model_kwargs: dict | None = None,
    timeout: float = 1800.0,
) -> float:
    """Extra resident memory (MiB) of one CPU forward, measured in a fresh subprocess."""
    spec = {
        "model": model,
        "backbone": backbone,
        "height": height,
        "width": width,
        "batch": batch,
        "num_classes": num_classes,
        "model_kwargs": model_kwargs or {},
        "threads": torch.get_num_threads(),
    }
    code = (
        "import json, sys\n"
        "from gsag.bench.memory import _cpu_peak_worker\n"
        "print('GSAG_RESULT=' + json.dumps(_cpu_peak_worker(json.loads(sys.argv[1]))))\n"
    )
    # glibc: serve every allocation over 64 KiB with its own mmap, returned to the system when
    # freed, so the resident set follows live memory and does not depend on the heap's history
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("GSAG_RESULT="):
            return float(json.loads(line.split("=", 1)[1])["peak_mem_mb"])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    raise RuntimeError(f"memory subprocess for {model}/{backbone} failed: {' | '.join(tail)}")


def cuda_peak_memory_mb(model: nn.Module, x: torch.Tensor) -> float:
    """Peak extra CUDA memory (MiB) allocated during one forward."""
    torch.cuda.synchronize(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    before = torch.cuda.memory_allocated(x.device)
    with torch.inference_mode():
        model(x)
    torch.cuda.synchronize(x.device)
    return (torch.cuda.max_memory_allocated(x.device) - before) / MIB
