"""Running the benchmark: build each model, time it eager and compiled, fill its row."""

from __future__ import annotations

import contextlib
import copy
import gc
import statistics
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import torch
from torch import nn

from gsag.bench.environment import sdpa_backends
from gsag.bench.memory import MIB, cpu_peak_memory_mb, cuda_peak_memory_during, cuda_peak_memory_mb
from gsag.bench.models import build_model, valid_models
from gsag.bench.rows import (
    BASELINE,
    PEER,
    PEER_BACKBONE,
    PEER_LABEL,
    BenchRow,
    BenchSettings,
    add_ratios,
)
from gsag.bench.timing import Timings, _percentile, _timed, interleaved, train_step_fn
from gsag.engine.compile import apply_compile, autocast


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


def run_bench(
    models: Sequence[str],
    backbones: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    batch: int = 1,
    settings: BenchSettings | None = None,
    on_row: Callable[[BenchRow], None] | None = None,
    on_progress: Callable[[list[BenchRow]], None] | None = None,
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
        on_progress: called with every row so far (some only partly measured) after each
            phase (inference, training step) of each backbone and size, e.g. to write them.

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
    rows: list[BenchRow] = []
    peer_group = PEER_BACKBONE if PEER_BACKBONE in backbones else backbones[0]
    for height, width in sizes:
        for backbone in backbones:
            group = [
                BenchRow(n, PEER_LABEL if n == PEER else backbone, height, width, batch)
                for n in names
                if n != PEER or backbone == peer_group  # the peer once: its own backbone
            ]

            def progress(group=group) -> None:
                if on_progress is not None:
                    on_progress(rows + group)

            bench_group(group, settings, progress)
            for row in group:
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    add_ratios(rows)
    return rows


def bench_group(
    rows: list[BenchRow], settings: BenchSettings, progress: Callable[[], None] = lambda: None
) -> None:
    """Measures the models of `rows` (one backbone and size) in place; errors go to `row.error`.

    `progress` is called after each model's set-up (its size facts, compile time and warm-up
    times: what a time limit keeps when the next model's compile is cut short) and after each
    phase."""
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
            row.compile = row.compile if settings.best else settings.compile
        progress()
    results = interleaved(timed, settings.rounds, settings.repeats, device)
    _keep_best(rows, results, "latency", settings)
    timed.clear()
    _release(device)
    progress()  # inference done: a time limit from here on keeps these numbers
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
    progress()


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
    row.warmup_ms[mode] = statistics.median(steady.wall_ms)
    if mode != "none":
        row.compile_s[mode] = max(0.0, first.wall_ms[0] - statistics.median(steady.wall_ms)) / 1e3
    return call


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
