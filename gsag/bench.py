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
  norm needs it); median over `train_repeats` after one warm-up step.
"""

from __future__ import annotations

import contextlib
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
from typing import Any

import torch
from torch import nn

from gsag.atomic import write_text

BASELINE = "deeplabv3"
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
    error: str = ""
    ratios: dict = field(default_factory=dict)

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


def time_train_step(
    model: nn.Module, x: torch.Tensor, num_classes: int, repeats: int = 2
) -> Timings:
    """Times full training steps (forward, cross-entropy on main + 0.4 aux, backward, SGD).

    One untimed warm-up step comes first.
    """
    device = x.device
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    gen = torch.Generator(device="cpu").manual_seed(0)
    target = torch.randint(0, num_classes, (x.shape[0], *x.shape[2:]), generator=gen).to(device)
    loss_fn = nn.CrossEntropyLoss(ignore_index=255)

    def step() -> None:
        out = model(x)
        loss = loss_fn(out["out"], target)
        if "aux" in out:
            loss = loss + 0.4 * loss_fn(out["aux"], target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    _sync(device)
    times = Timings()
    for _ in range(repeats):
        _timed(step, device, times)
    model.eval()
    return times


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
    from gsag.models.segmentor import create_model

    torch.manual_seed(0)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    model = create_model(
        spec["model"],
        num_classes=spec["num_classes"],
        backbone=spec["backbone"],
        pretrained=False,
        aux=False,
        **spec["model_kwargs"],
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


def bench_one(
    name: str, backbone: str, height: int, width: int, batch: int, settings: BenchSettings
) -> BenchRow:
    """Measures one model at one size. Errors (e.g. out of memory) land in `row.error`."""
    from gsag.flops import count_gflops, count_params
    from gsag.models.segmentor import create_model

    row = BenchRow(name, backbone, height, width, batch)
    device = torch.device(settings.device)

    def build(aux: bool) -> nn.Module:
        return create_model(
            name,
            num_classes=settings.num_classes,
            backbone=backbone,
            pretrained=False,
            aux=aux,
            **settings.model_kwargs,
        )

    try:
        torch.manual_seed(0)
        model = build(aux=False)
        model.eval().to(device)
        row.params_m = count_params(model) / 1e6
        x = torch.randn(batch, 3, height, width, device=device)
        row.gflops = count_gflops(model, (height, width), batch)
        row.sdpa_backend = sdpa_backends(model, x)
        times = time_inference(model, x, settings.warmup, settings.repeats)
        row.latency_ms = statistics.median(times.wall_ms)
        row.latency_p10_ms = _percentile(times.wall_ms, 0.1)
        row.latency_p90_ms = _percentile(times.wall_ms, 0.9)
        if times.cpu_ms:
            row.cpu_ms = statistics.median(times.cpu_ms)
        row.throughput = batch * 1000.0 / row.latency_ms
        if settings.memory:
            if device.type == "cuda":
                row.peak_mem_mb = cuda_peak_memory_mb(model, x)
            else:
                row.peak_mem_mb = cpu_peak_memory_mb(
                    name, backbone, height, width, batch, settings.num_classes,
                    settings.model_kwargs,
                )  # fmt: skip
        del model
        if settings.train_step:
            torch.manual_seed(0)
            train_model = build(aux=True).to(device)
            xt = torch.randn(max(batch, 2), 3, height, width, device=device)
            steps = time_train_step(train_model, xt, settings.num_classes, settings.train_repeats)
            row.train_step_ms = statistics.median(steps.wall_ms)
            if steps.cpu_ms:
                row.train_step_cpu_ms = statistics.median(steps.cpu_ms)
            del train_model
    except (RuntimeError, MemoryError, ValueError) as err:
        row.error = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


_RATIO_FIELDS = (
    "params_m",
    "gflops",
    "latency_ms",
    "cpu_ms",
    "peak_mem_mb",
    "train_step_ms",
    "train_step_cpu_ms",
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


def run_bench(
    models: Sequence[str],
    backbones: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    batch: int = 1,
    settings: BenchSettings | None = None,
    on_row: Callable[[BenchRow], None] | None = None,
) -> list[BenchRow]:
    """Benchmarks every model x backbone x size, always with a DeepLabV3 row per backbone/size.

    Args:
        models: model names (see `gsag.list_models()`); DeepLabV3 is added when missing.
        backbones: backbone names.
        sizes: (height, width) pairs, e.g. an input-size sweep.
        batch: inference batch size.
        settings: what to measure; defaults to `BenchSettings()`.
        on_row: called after each row (e.g. to advance a progress bar).

    Returns:
        The rows, ratios to the baseline filled in.
    """
    settings = settings or BenchSettings()
    names = list(dict.fromkeys([*models, BASELINE]))
    rows = []
    for height, width in sizes:
        for backbone in backbones:
            for name in names:
                row = bench_one(name, backbone, height, width, batch, settings)
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    add_ratios(rows)
    return rows


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


def to_markdown(rows: list[BenchRow], env: dict) -> str:
    """A markdown table, one row per model and size, with ratios to the DeepLabV3 row."""
    load = env.get("load_average_1min_at_start", "n/a")
    lines = [
        f"Device: {env.get('gpu') or env.get('cpu')} ({env['device']}, {env['threads']} "
        f"thread(s)), torch {env['torch']}, {env['date']}; 1-min load average at start {load}"
        + (
            f", at end {env['load_average_1min_at_end']}"
            if "load_average_1min_at_end" in env
            else ""
        )
        + ".",
        "",
        "| model | backbone | input | params (M) | GFLOPs | latency ms (p10-p90) | CPU ms "
        "| img/s | peak mem MiB | train step ms (CPU ms) | SDPA backend | latency x | CPU x "
        "| params x | mem x | train CPU x |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: "
        "| ---: | ---: | ---: |",
    ]
    for r in rows:
        head = (
            f"| {r.model} | {r.backbone} | {r.batch}x{r.height}x{r.width} | {_fmt(r.params_m, 2)} |"
        )
        if r.error:
            lines.append(f"{head} error: {r.error} |" + " |" * 14)
            continue
        lines.append(
            f"{head} {_fmt(r.gflops)} | {_fmt(r.latency_ms, 0)} "
            f"({_fmt(r.latency_p10_ms, 0)}-{_fmt(r.latency_p90_ms, 0)}) | {_fmt(r.cpu_ms, 0)} | "
            f"{_fmt(r.throughput, 2)} | {_fmt(r.peak_mem_mb, 0)} | {_fmt(r.train_step_ms, 0)} "
            f"({_fmt(r.train_step_cpu_ms, 0)}) | {r.sdpa_backend} | {_ratio(r, 'latency_ms')} | "
            f"{_ratio(r, 'cpu_ms')} | {_ratio(r, 'params_m')} | {_ratio(r, 'peak_mem_mb')} | "
            f"{_ratio(r, 'train_step_cpu_ms')} |"
        )
    return "\n".join(lines) + "\n"


def write_results(rows: list[BenchRow], env: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Writes bench.json and bench.md into `out_dir` atomically; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"environment": env, "rows": [r.as_dict() for r in rows]}
    paths = {"json": out / "bench.json", "markdown": out / "bench.md"}
    write_text(paths["json"], json.dumps(payload, indent=2) + "\n")
    write_text(paths["markdown"], to_markdown(rows, env))
    return paths
