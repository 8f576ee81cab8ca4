"""Where training time goes: seconds per iteration, data-wait share, images/s, peak GPU memory.

`IterationTimer.wrap(batches)` times each `next()` on the loader (the time the loop waits for
data); `tick()` closes an iteration; `summary()` gives the fields logged every
`train.log_interval` iterations and starts a new interval. Iterations during which dynamo
compiled a graph are kept out of the interval's speed and counted as compile time instead
(their time minus the interval's steady median).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import torch

from gsag.engine.compile import compiled_graphs

# metrics.jsonl keys that measure time or memory (they differ between otherwise equal runs)
TIMING_KEYS = ("sec_per_iter", "data_share", "images_per_s", "peak_mem_gib", "compile_s", "eval_s")


class IterationTimer:
    """Accumulates per-iteration wall time and loader wait time for one log interval."""

    def __init__(self, batch_size: int, device: torch.device) -> None:
        self.batch_size = batch_size  # images per optimizer step over all processes
        self.device = device
        self.compile_s = 0.0  # cumulative over the run
        self._reset()
        self._t_iter = time.perf_counter()
        self._graphs = compiled_graphs()

    def _reset(self) -> None:
        self.iter_s: list[float] = []
        self.wait_s = 0.0
        self.compiling_s: list[float] = []
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def wrap(self, batches: Iterator[Any]) -> Iterator[Any]:
        """Yields from `batches`, adding the time each item took to arrive to the wait time."""
        while True:
            t0 = time.perf_counter()
            try:
                item = next(batches)
            except StopIteration:
                return
            self.wait_s += time.perf_counter() - t0
            yield item

    def restart(self) -> None:
        """Starts the next iteration's clock now (after evaluation or saving)."""
        self._t_iter = time.perf_counter()

    def tick(self) -> None:
        """Ends one iteration."""
        now = time.perf_counter()
        graphs = compiled_graphs()
        (self.compiling_s if graphs > self._graphs else self.iter_s).append(now - self._t_iter)
        self._graphs = graphs
        self._t_iter = now

    def summary(self) -> dict[str, float]:
        """The interval's timing fields (NaN where nothing was measured); resets the interval."""
        steady = statistics.median(self.iter_s) if self.iter_s else 0.0
        self.compile_s += sum(max(0.0, t - steady) for t in self.compiling_s)
        total = sum(self.iter_s) + sum(self.compiling_s)
        sec = statistics.mean(self.iter_s) if self.iter_s else float("nan")
        out = {
            "sec_per_iter": sec,
            "data_share": self.wait_s / total if total > 0 else float("nan"),
            "images_per_s": self.batch_size / sec if sec == sec and sec > 0 else float("nan"),
            "compile_s": self.compile_s,
        }
        if self.device.type == "cuda":
            out["peak_mem_gib"] = torch.cuda.max_memory_allocated(self.device) / 1024.0**3
        self._reset()
        return out
