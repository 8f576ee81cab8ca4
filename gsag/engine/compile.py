"""Mixed precision and `torch.compile` settings shared by train, eval, predict and bench.

- `resolve_amp("auto", device)` is bf16 on a CUDA device that supports it and none (float32)
  elsewhere; fp16 is never chosen automatically (it needs a GradScaler to train).
- `apply_compile(model, mode)` compiles nothing (`none`), the segmentation head (`head`) or the
  whole model (`model`) in place with `nn.Module.compile`, so state-dict keys do not change and
  checkpoints stay loadable without compile.
- `CompileClock` wraps a model and splits the time of its calls into compilation and steady
  running: a call during which dynamo compiled a new graph counts as compiling, and its time
  minus the median of the steady calls is compile time.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

import torch
from torch import nn

COMPILE_MODES = ("none", "head", "model")
AMP_MODES = ("auto", "bf16", "fp16", "none")


def resolve_amp(amp: str, device: torch.device | str) -> str:
    """The concrete autocast setting ("bf16", "fp16" or "none") for `amp` on `device`."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp {amp!r} is unknown; choose one of {', '.join(AMP_MODES)}")
    if amp != "auto":
        return amp
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "none"


def compile_mode(value: str | bool) -> str:
    """Normalises a compile setting; the old boolean `train.compile: true` means `model`."""
    if isinstance(value, bool):
        return "model" if value else "none"
    if value not in COMPILE_MODES:
        raise ValueError(f"compile {value!r} is unknown; choose one of {', '.join(COMPILE_MODES)}")
    return value


def apply_compile(
    model: nn.Module, mode: str | bool, dynamic: bool | None = None, backend: str = "inductor"
) -> nn.Module:
    """Compiles `model` (`model`) or its `head` (`head`) in place and returns `model`.

    Args:
        model: a segmentor (`gsag.create_model` or torchvision's); `head` mode needs a `head`
            or `classifier` submodule.
        mode: none | head | model (a bool is read as by `compile_mode`).
        dynamic: passed to `torch.compile`; True for inference over images of mixed sizes,
            so that one graph serves every size instead of one compile per size.
        backend: the `torch.compile` backend; "eager" or "aot_eager" trace without generating
            code (fast; for tests of the compile paths).
    """
    mode = compile_mode(mode)
    if mode == "none":
        return model
    if mode == "model":
        model.compile(dynamic=dynamic, backend=backend)
        return model
    head = getattr(model, "head", None) or getattr(model, "classifier", None)
    if not isinstance(head, nn.Module):
        raise ValueError(
            f"compile=head: {type(model).__name__} has no `head` submodule; use compile=model"
        )
    head.compile(dynamic=dynamic, backend=backend)
    return model


def compiled_graphs() -> int:
    """Graphs dynamo has compiled in this process so far (grows by one per (re)compile)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"].get("unique_graphs", 0))


class CompileClock(nn.Module):
    """Wraps a model and times its calls, telling compiling calls from steady ones.

    `compile_seconds` is the time of the calls that compiled minus, for each, the median steady
    call (zero when nothing compiled); `recompiles` counts calls that compiled after the first.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.compiling_s: list[float] = []
        self.steady_s: list[float] = []

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        before = compiled_graphs()
        t0 = time.perf_counter()
        out = self.model(*args, **kwargs)
        elapsed = time.perf_counter() - t0
        (self.compiling_s if compiled_graphs() > before else self.steady_s).append(elapsed)
        return out

    @property
    def compile_seconds(self) -> float:
        if not self.compiling_s:
            return 0.0
        steady = statistics.median(self.steady_s) if self.steady_s else 0.0
        return sum(max(0.0, t - steady) for t in self.compiling_s)

    @property
    def recompiles(self) -> int:
        return max(0, len(self.compiling_s) - 1)


def autocast(device: torch.device, amp: str):
    """Autocast context for `amp` ("none" gives a null context; "auto" as `resolve_amp`)."""
    amp = resolve_amp(amp, device)
    if amp == "none":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return torch.autocast(device_type=device.type, dtype=dtype)
