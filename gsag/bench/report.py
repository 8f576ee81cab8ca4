"""The outputs: the full markdown table, the compact terminal table, bench.json."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from gsag.atomic import write_text
from gsag.bench.rows import BenchRow, BenchSettings


def _fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


def _ratio(row: BenchRow, key: str) -> str:
    return f"{row.ratios[key]:.2f}x" if key in row.ratios else "n/a"


def _round_ratio(row: BenchRow, key: str) -> str:
    """The ratio (the median over rounds), with its min-max over rounds when there were
    several."""
    found = row.round_ratios.get(key)
    if not found or len(found["per_round"]) < 2:
        return _ratio(row, key)
    return f"{_ratio(row, key)} ({found['min']:.2f}-{found['max']:.2f})"


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


def compact_table(rows: list[BenchRow], env: dict) -> str:
    """The columns that matter, aligned for a terminal (the full table goes to bench.md).

    Time is CPU time on a CPU (robust to load) and wall time on a GPU, as in the ratios.
    Columns with nothing to say (all n/a; mode when nothing was compiled) are left out.
    """
    cpu = env["device"] == "cpu"
    lat, train = ("cpu_ms", "train_step_cpu_ms") if cpu else ("latency_ms", "train_step_ms")
    header = ["model", "backbone", "input", "mode", "CPU ms" if cpu else "ms", "train ms",
              "MiB", "x base", "train x"]  # fmt: skip
    table = []
    for r in rows:
        cells = [r.model, r.backbone, f"{r.batch}x{r.height}x{r.width}", r.compile]
        if r.error:
            table.append([*cells, *["-"] * 5, f"error: {r.error}"[:70]])
            continue
        table.append([*cells, _fmt(getattr(r, lat), 1), _fmt(getattr(r, train), 1),
                      _fmt(r.peak_mem_mb, 0), _ratio(r, lat), _ratio(r, train), ""])  # fmt: skip
    keep = [i for i in range(len(header))
            if any(row[i] not in ("n/a", "-", "none") for row in table) or i < 3]  # fmt: skip
    widths = {i: max(len(header[i]), *(len(row[i]) for row in table)) for i in keep}
    lines = []
    for row in [[*header, ""], *table]:
        left = "  ".join(row[i].ljust(widths[i]) for i in keep if i < 4)
        right = " ".join(row[i].rjust(widths[i]) for i in keep if i >= 4)
        lines.append(f"{left} {right}  {row[-1]}".rstrip())
    note = "x base: / deeplabv3 of the same backbone and size; n/a: nothing to compare with"
    return "\n".join([*lines, note]) + "\n"
