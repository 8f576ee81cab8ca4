"""The facts a reader needs to interpret the numbers: versions, device, load, SDPA kernels."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

# profiler event name -> backend name
_SDPA_KERNELS = {
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (CPU fused)",
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_fused_attention_overrideable": "fused (overrideable)",
    "aten::_scaled_dot_product_attention_math": "math",
}


def sdpa_backends(model: nn.Module, x: torch.Tensor) -> str:
    """Names the scaled-dot-product-attention kernels that ran in one forward ("-" if none)."""
    from torch.profiler import ProfilerActivity, profile

    with (
        _quiet_stderr(),
        torch.inference_mode(),
        profile(activities=[ProfilerActivity.CPU]) as prof,
    ):
        model(x)
    names = {evt.key for evt in prof.key_averages()}
    found = [label for key, label in _SDPA_KERNELS.items() if key in names]
    return ", ".join(found) if found else "-"


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silences the profiler backend's native log lines (written straight to file descriptor 2)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def load_average() -> float | None:
    """The 1-minute load average now, to 2 decimals (None where the OS has none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def code_version(root: str | os.PathLike | None = None) -> dict[str, str | bool | None]:
    """The git commit the code runs from and whether its tree differs from it ("dirty": tracked
    changes, or untracked files git does not ignore). `root`: the checkout (default: the folder
    holding the `gsag` package). None for both where `root` is not the top of a git checkout (an
    installed package) or git is missing."""
    top = os.path.abspath(root or Path(__file__).resolve().parents[2])

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", top, *args], capture_output=True, text=True)
        except OSError:
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    toplevel = git("rev-parse", "--show-toplevel")
    if toplevel is None or os.path.realpath(toplevel) != os.path.realpath(top):
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "-unormal")  # untracked files too, whatever the config
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def environment(device: str = "cpu", threads: int | None = None) -> dict:
    """The facts a reader needs to interpret the numbers (`threads`: the torch CPU threads the
    work used, when it is not the count in effect now)."""
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
        "threads": threads or torch.get_num_threads(),
        "cpu": _cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the kernels torch picks
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "code": code_version(),  # the git commit and whether the tree was dirty
    }
    if (load := load_average()) is not None:
        info["load_average_1min_at_start"] = load
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
