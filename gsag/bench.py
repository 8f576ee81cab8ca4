"""Side-by-side benchmark of segmentation models: params, GFLOPs, latency, memory, training step.

Every run includes a DeepLabV3 baseline row per backbone and input size, and reports ratios to
it. Measurement choices (also in docs/bench.md):

- Inference: `aux=False`, eval mode, `torch.inference_mode`, random weights (speed does not
  depend on the values). Latency is the median over `repeats` timed forwards after `warmup`
  untimed ones; the spread is the 10th-90th percentile range. On CUDA, CUDA events time the
  forward on the GPU.
- GFLOPs: `gsag.flops.count_gflops` (torch's FLOP counter plus analytic attention FLOPs,
  because the counter reports 0 for the fused CPU attention kernel). 1 multiply-add = 2 FLOPs.
- Peak memory: on CUDA, `torch.cuda.max_memory_allocated` over one forward minus the memory
  held before it. On CPU, a fresh subprocess per model (glibc's `MALLOC_MMAP_THRESHOLD_=65536`,
  so large tensors are returned to the system when freed) builds the model and input, runs one
  64x64 forward (one-time library set-up), resets the kernel's resident-set high-water mark
  (`/proc/self/clear_refs`), runs one forward and reports the high-water mark minus the
  resident set before it: the extra RAM one inference needs, allocator overheads included.
- SDPA backend: the attention kernels that actually ran, read from a profiler trace of one
  forward (e.g. `flash_attention_for_cpu`, `flash`, `efficient`, `cudnn`, `math`).
- Training step: aux head on, cross-entropy on random labels, SGD; batch at least 2 (batch
  norm needs it); one warm-up step, then `train_repeats` timed steps per round.
- Settings: amp, channels_last and compile mode apply to every model alike; `best` times each
  model eager and compiled and keeps the faster mode.
- Interleaved rounds: per backbone and size, round r times every model (`repeats` calls) in
  an order rotated by r; ratios to DeepLabV3 are also given per round, as median and min-max.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from gsag.atomic import write_text
from gsag.engine.compile import apply_compile
from gsag.engine.evaluate import autocast

BASELINE = "deeplabv3"
PEER = "tv_deeplabv3_resnet50"  # torchvision's DeepLabV3-ResNet50, an outside reference
MIB = 1024.0**2

# profiler event name -> backend name
_SDPA_KERNELS = {
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (CPU fused)",
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_fused_attention_overrideable": "fused (overrideable)",
    "aten::_scaled_dot_product_attention_math": "math",
}


@dataclass
class BenchRow:
    """One model at one input size."""

    model: str
    backbone: str
    height: int
    width: int
    batch: int
    params_m: float = float("nan")
    gflops: float = float("nan")
    latency_ms: float = float("nan")
    latency_p10_ms: float = float("nan")
    latency_p90_ms: float = float("nan")
    cpu_ms: float = float("nan")
    throughput: float = float("nan")
    peak_mem_mb: float = float("nan")
    train_step_ms: float = float("nan")
    train_step_cpu_ms: float = float("nan")
    sdpa_backend: str = "-"
    compile: str = "none"  # the mode timed for inference (the faster one with `best`)
    train_compile: str = "none"  # the mode timed for the training step
    compile_s: dict = field(default_factory=dict)  # mode -> first call minus a steady one (s)
    train_peak_mem_mb: float = float("nan")  # CUDA only
    error: str = ""
    rounds: dict = field(default_factory=dict)  # metric -> per-round medians (ms)
    ratios: dict = field(default_factory=dict)
    round_ratios: dict = field(default_factory=dict)  # metric -> [median, min, max] over rounds

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class BenchSettings:
    """What to measure and how often."""

    device: str = "cpu"
    warmup: int = 2
    repeats: int = 5
    train_repeats: int = 2
    num_classes: int = 21
    memory: bool = True
    train_step: bool = True
    model_kwargs: dict = field(default_factory=dict)
    amp: str = "none"  # none | bf16 | fp16 | auto
    channels_last: bool = False
    compile: str = "none"  # none | head | model
    best: bool = False  # time each model eager and compiled, keep the faster
    rounds: int = 1  # interleaved rounds; `repeats` timed calls per model per round
    compile_backend: str = "inductor"  # "eager" traces without code generation (tests)


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


def cuda_peak_memory_during(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak extra CUDA memory (MiB) allocated while `fn()` ran, above what was held before."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / MIB


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
        "from gsag.bench import _cpu_peak_worker\n"
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


def valid_models() -> list[str]:
    """Model names `gsag bench` accepts: gsag's models and the torchvision peer."""
    from gsag.models import list_models

    return [*list_models(), PEER]


def default_models() -> list[str]:
    """The models `gsag bench` compares by default: all of gsag's, the baseline added last."""
    from gsag.models import list_models

    return [name for name in list_models() if name != BASELINE]


def build_model(
    name: str, backbone: str, aux: bool, num_classes: int = 21, model_kwargs: dict | None = None
) -> nn.Module:
    """A randomly initialised model; `PEER` is torchvision's DeepLabV3 (its own ResNet-50)."""
    if name == PEER:
        from torchvision.models.segmentation import deeplabv3_resnet50

        return deeplabv3_resnet50(
            weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux
        )
    from gsag.models.segmentor import model_from_args

    kwargs = model_kwargs or {}
    return model_from_args(
        dict(name=name, num_classes=num_classes, backbone=backbone, aux=aux, **kwargs)
    )


def _describe(row: BenchRow, model: nn.Module, x: torch.Tensor, settings: BenchSettings) -> None:
    """Fills the size facts of `row`: params, GFLOPs, SDPA backend and (eager) peak memory."""
    from gsag.flops import count_gflops, count_params

    row.params_m = count_params(model) / 1e6
    row.gflops = count_gflops(model, (row.height, row.width), row.batch)
    row.sdpa_backend = sdpa_backends(model, x)
    if not settings.memory:
        return
    if x.device.type == "cuda":
        with autocast(x.device, settings.amp):
            row.peak_mem_mb = cuda_peak_memory_mb(model, x)
    else:
        row.peak_mem_mb = cpu_peak_memory_mb(
            row.model, row.backbone, row.height, row.width, row.batch, settings.num_classes,
            settings.model_kwargs,
        )  # fmt: skip


def _variants(model: nn.Module, settings: BenchSettings) -> dict[str, nn.Module]:
    """The modes to time: the settings' compile mode, or with `best` eager and compiled.

    Compiled variants are `torch.compile` wrappers (or, for `head`, a copy) of `model`.
    """
    mode = settings.compile
    if not settings.best:
        return {mode: apply_compile(model, mode, dynamic=False, backend=settings.compile_backend)}
    mode = "model" if mode == "none" else mode
    if mode == "model":
        # torch.compile wraps a Module in an OptimizedModule (typed as a plain callable)
        compiled = cast(
            nn.Module, torch.compile(model, dynamic=False, backend=settings.compile_backend)
        )
    else:
        compiled = apply_compile(copy.deepcopy(model), mode, False, settings.compile_backend)
    return {"none": model, mode: compiled}


def _channels_last(model: nn.Module, x: torch.Tensor, on: bool) -> torch.Tensor:
    if not on:
        return x
    model.to(memory_format=torch.channels_last)
    return x.contiguous(memory_format=torch.channels_last)


_RATIO_FIELDS = (
    "params_m",
    "gflops",
    "latency_ms",
    "cpu_ms",
    "peak_mem_mb",
    "train_step_ms",
    "train_step_cpu_ms",
    "train_peak_mem_mb",
)


def add_ratios(rows: list[BenchRow]) -> None:
    """Fills `row.ratios` with each metric divided by the baseline's at the same backbone/size."""
    base = {(r.backbone, r.height, r.width, r.batch): r for r in rows if r.model == BASELINE}
    for row in rows:
        ref = base.get((row.backbone, row.height, row.width, row.batch))
        row.ratios = {}
        if ref is None:
            continue
        for key in _RATIO_FIELDS:
            num, den = getattr(row, key), getattr(ref, key)
            if den == den and num == num and den > 0:  # skip NaN
                row.ratios[key] = num / den
        row.round_ratios = {}
        for key, mine in row.rounds.items():
            theirs = ref.rounds.get(key, [])
            per_round = [a / b for a, b in zip(mine, theirs, strict=False) if b > 0]
            if per_round and len(mine) == len(theirs):
                row.round_ratios[key] = [
                    statistics.median(per_round),
                    min(per_round),
                    max(per_round),
                ]


def run_bench(
    models: Sequence[str],
    backbones: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    batch: int = 1,
    settings: BenchSettings | None = None,
    on_row: Callable[[BenchRow], None] | None = None,
) -> list[BenchRow]:
    """Benchmarks every model x backbone x size, always with a DeepLabV3 row per backbone/size.

    For each backbone and size the models are timed in interleaved rounds (round r runs every
    model once, in an order rotated by r), so that load on a shared machine falls on all alike;
    then the same for the training step. With `settings.best` each model is timed eager and
    compiled and its faster mode is kept.

    Args:
        models: model names (see `valid_models()`); DeepLabV3 is added when missing.
        backbones: backbone names (the torchvision peer always uses its own ResNet-50).
        sizes: (height, width) pairs, e.g. an input-size sweep.
        batch: inference batch size (the training step uses at least 2).
        settings: what to measure; defaults to `BenchSettings()`.
        on_row: called after each row (e.g. to advance a progress bar).

    Returns:
        The rows, ratios to the baseline filled in.

    Raises:
        ValueError: an unknown model name (before anything is measured).
    """
    settings = settings or BenchSettings()
    names = list(dict.fromkeys([*models, BASELINE]))
    unknown = [n for n in names if n not in valid_models()]
    if unknown:
        raise ValueError(
            f"unknown model(s) {', '.join(unknown)}; valid: {', '.join(valid_models())}"
        )
    rows = []
    for height, width in sizes:
        for backbone in backbones:
            group = [BenchRow(n, backbone, height, width, batch) for n in names]
            bench_group(group, settings)
            for row in group:
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    add_ratios(rows)
    return rows


def bench_group(rows: list[BenchRow], settings: BenchSettings) -> None:
    """Measures the models of `rows` (one backbone and size) in place; errors go to `row.error`."""
    device = torch.device(settings.device)
    timed: dict[tuple[int, str], Callable[[], Any]] = {}
    for i, row in enumerate(rows):
        with _row_errors(row):
            torch.manual_seed(0)
            model = build_model(row.model, row.backbone, False, settings.num_classes,
                                settings.model_kwargs).eval().to(device)  # fmt: skip
            x = torch.randn(row.batch, 3, row.height, row.width, device=device)
            x = _channels_last(model, x, settings.channels_last)
            _describe(row, model, x, settings)
            for mode, variant in _variants(model, settings).items():
                timed[(i, mode)] = _inference_call(variant, x, settings, row, mode)
    results = interleaved(timed, settings.rounds, settings.repeats, device)
    _keep_best(rows, results, "latency", settings)
    timed.clear()
    _release(device)
    if not settings.train_step:
        return
    peaks: dict[tuple[int, str], float] = {}  # CUDA training peak memory per model and mode
    for i, row in enumerate(rows):
        if row.error:
            continue
        with _row_errors(row):
            torch.manual_seed(0)
            model = build_model(row.model, row.backbone, True, settings.num_classes,
                                settings.model_kwargs).to(device)  # fmt: skip
            x = torch.randn(max(row.batch, 2), 3, row.height, row.width, device=device)
            x = _channels_last(model, x, settings.channels_last)
            for mode, variant in _variants(model, settings).items():
                step = train_step_fn(variant, x, settings.num_classes, settings.amp)
                first, steady = Timings(), Timings()
                _timed(step, device, first)  # warm-up (and compilation)
                _timed(step, device, steady)
                if mode != "none":
                    row.compile_s[f"train {mode}"] = (first.wall_ms[0] - steady.wall_ms[0]) / 1e3
                if device.type == "cuda":  # the step's peak plus weights, gradients, momentum
                    state = 3 * sum(p.numel() * p.element_size() for p in model.parameters())
                    peaks[(i, mode)] = cuda_peak_memory_during(step, device) + state / MIB
                timed[(i, mode)] = step
    results = interleaved(timed, settings.rounds, settings.train_repeats, device)
    _keep_best(rows, results, "train", settings)
    for i, row in enumerate(rows):
        row.train_peak_mem_mb = peaks.get((i, row.train_compile), float("nan"))
    _release(device)


@contextlib.contextmanager
def _row_errors(row: BenchRow) -> Iterator[None]:
    """Records an error (out of memory, a Triton compilation error: any Exception) in the row
    instead of stopping the whole run; Ctrl-C still stops it."""
    try:
        yield
    except Exception as err:
        row.error = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _inference_call(
    model: nn.Module, x: torch.Tensor, settings: BenchSettings, row: BenchRow, mode: str
) -> Callable[[], Any]:
    """Warms `model` up on `x`, records the compile time of `mode`, returns the timed call."""
    device = x.device

    def call() -> Any:
        with torch.inference_mode(), autocast(device, settings.amp):
            return model(x)

    first = Timings()
    _timed(call, device, first)  # the first call compiles, if anything does
    steady = Timings()
    for _ in range(max(settings.warmup, 1)):
        _timed(call, device, steady)
    if mode != "none":
        row.compile_s[mode] = max(0.0, first.wall_ms[0] - statistics.median(steady.wall_ms)) / 1e3
    return call


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


def _keep_best(
    rows: list[BenchRow], results: dict[tuple[int, str], list[Timings]], kind: str,
    settings: BenchSettings,
) -> None:  # fmt: skip
    """Stores, for each row, the timings of its fastest mode (the only one without `best`)."""
    cpu = torch.device(settings.device).type == "cpu"
    for i, row in enumerate(rows):
        mine = {mode: t for (j, mode), t in results.items() if j == i}
        if not mine:
            continue

        def score(rounds: list[Timings]) -> float:
            return statistics.median([v for t in rounds for v in (t.cpu_ms if cpu else t.wall_ms)])

        mode = min(mine, key=lambda m: score(mine[m]))
        rounds = mine[mode]
        wall = [v for t in rounds for v in t.wall_ms]
        cpu_all = [v for t in rounds for v in t.cpu_ms]
        wall_rounds = [statistics.median(t.wall_ms) for t in rounds]
        cpu_rounds = [statistics.median(t.cpu_ms) for t in rounds if t.cpu_ms]
        if kind == "latency":
            row.compile = mode
            row.latency_ms = statistics.median(wall)
            row.latency_p10_ms = _percentile(wall, 0.1)
            row.latency_p90_ms = _percentile(wall, 0.9)
            row.cpu_ms = statistics.median(cpu_all) if cpu_all else float("nan")
            row.throughput = row.batch * 1000.0 / row.latency_ms
            row.rounds = {"latency_ms": wall_rounds, "cpu_ms": cpu_rounds}
        else:
            row.train_compile = mode
            row.train_step_ms = statistics.median(wall)
            row.train_step_cpu_ms = statistics.median(cpu_all) if cpu_all else float("nan")
            row.rounds.update(train_step_ms=wall_rounds, train_step_cpu_ms=cpu_rounds)


def environment(device: str = "cpu") -> dict:
    """The facts a reader needs to interpret the numbers."""
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
        "threads": torch.get_num_threads(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1min_at_start"] = round(os.getloadavg()[0], 2)
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


def _fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


def _ratio(row: BenchRow, key: str) -> str:
    return f"{row.ratios[key]:.2f}x" if key in row.ratios else "n/a"


def _round_ratio(row: BenchRow, key: str) -> str:
    """Median ratio over rounds, with its min-max range when there were several rounds."""
    if key not in row.round_ratios:
        return _ratio(row, key)
    med, lo, hi = row.round_ratios[key]
    spread = f" ({lo:.2f}-{hi:.2f})" if len(row.rounds.get(key, [])) > 1 else ""
    return f"{med:.2f}x{spread}"


def settings_line(settings: BenchSettings) -> str:
    """One line naming the settings every row was measured under."""
    mode = f"best of eager and {settings.compile if settings.compile != 'none' else 'model'}"
    return (
        f"Settings: amp {settings.amp}, channels_last {'on' if settings.channels_last else 'off'}, "
        f"compile {mode if settings.best else settings.compile}, {settings.rounds} interleaved "
        f"round(s) of {settings.repeats} forward(s) / {settings.train_repeats} training step(s) "
        "per model; ratios are the median over rounds of (model / DeepLabV3 in the same round), "
        "with the min-max over rounds."
    )


def to_markdown(rows: list[BenchRow], env: dict, settings: BenchSettings | None = None) -> str:
    """A markdown table, one row per model and size, with ratios to the DeepLabV3 row.

    Time ratios use CPU time on a CPU (robust to load) and wall time on a GPU.
    """
    cpu = env["device"] == "cpu"
    lat, train = ("cpu_ms", "train_step_cpu_ms") if cpu else ("latency_ms", "train_step_ms")
    load = env.get("load_average_1min_at_start", "n/a")
    end = env.get("load_average_1min_at_end")
    lines = [
        f"Device: {env.get('gpu') or env.get('cpu')} ({env['device']}, {env['threads']} "
        f"thread(s)), torch {env['torch']}, {env['date']}; 1-min load average at start {load}"
        + (f", at end {end}" if end is not None else "")
        + ".",
        "",
        *([settings_line(settings), ""] if settings is not None else []),
        "| model | backbone | input | mode | params (M) | GFLOPs | latency ms (p10-p90) | CPU ms "
        "| img/s | peak mem MiB | compile s | train step ms (CPU ms) | train mode | train peak MiB "
        f"| SDPA backend | {'CPU' if cpu else 'latency'} x | train x | params x | mem x "
        "| train mem x |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- "
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        head = f"| {r.model} | {r.backbone} | {r.batch}x{r.height}x{r.width} | {r.compile} |"
        if r.error:
            lines.append(f"{head} error: {r.error} |" + " |" * 15)
            continue
        compile_s = ", ".join(f"{m} {t:.1f}" for m, t in r.compile_s.items()) or "-"
        lines.append(
            f"{head} {_fmt(r.params_m, 2)} | {_fmt(r.gflops)} | {_fmt(r.latency_ms, 1)} "
            f"({_fmt(r.latency_p10_ms, 1)}-{_fmt(r.latency_p90_ms, 1)}) | {_fmt(r.cpu_ms, 0)} | "
            f"{_fmt(r.throughput, 2)} | {_fmt(r.peak_mem_mb, 0)} | {compile_s} | "
            f"{_fmt(r.train_step_ms, 1)} ({_fmt(r.train_step_cpu_ms, 0)}) | {r.train_compile} | "
            f"{_fmt(r.train_peak_mem_mb, 0)} | {r.sdpa_backend} | {_round_ratio(r, lat)} | "
            f"{_round_ratio(r, train)} | {_ratio(r, 'params_m')} | {_ratio(r, 'peak_mem_mb')} | "
            f"{_ratio(r, 'train_peak_mem_mb')} |"
        )
    return "\n".join(lines) + "\n"


def write_results(
    rows: list[BenchRow],
    env: dict,
    out_dir: str | os.PathLike,
    settings: BenchSettings | None = None,
) -> dict[str, Path]:
    """Writes bench.json and bench.md into `out_dir` atomically; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "environment": env,
        "settings": asdict(settings) if settings is not None else {},
        "rows": [r.as_dict() for r in rows],
    }
    paths = {"json": out / "bench.json", "markdown": out / "bench.md"}
    write_text(paths["json"], json.dumps(payload, indent=2) + "\n")
    write_text(paths["markdown"], to_markdown(rows, env, settings))
    return paths
