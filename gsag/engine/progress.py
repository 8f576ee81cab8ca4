"""What a training run shows as it goes, on the main process's stdout.

- In a terminal: a rich progress bar on two lines that fit 80 columns (bar, iterations, elapsed
  time and ETA; then loss, lr and the last log interval's timing, or the evaluation under way).
- Anywhere else (a file, a pipe: nohup, SLURM, `tee`, CI): one plain line every
  `train.log_interval` iterations and one per evaluation, `key=value` fields after a tag:

      train iter=10/300 loss=1.4357 loss_main=1.2345 loss_aux=0.2012 lr=1.00e-03 s/it=3.030 \
img/s=2.6 data=3% eta=0:14:30
      eval iter=150/300 mIoU=45.12% aAcc=80.01% mAcc=55.00% FWIoU=70.00% best=45.12% time=12.3s

  `mem=1.2GiB` (peak GPU memory of the interval) ends a train line on CUDA. The losses are those
  of the logged iteration averaged over processes (as in metrics.jsonl); s/it, img/s and the
  data-wait share are the interval's; the ETA is the remaining iterations at that s/it.

The other commands' bars (data, evaluation, prediction, bench, the demo's steps) come from
`task_bar`: a rich bar in a terminal; off a terminal no bar, spinner, carriage return or colour
code, only a plain `description: done/total` line every `PLAIN_EVERY_S` seconds of a long task.
This module imports no torch, so the data commands can use it.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any

from rich.console import Console
from rich.progress import Progress as RichProgress
from rich.progress import TaskID

#: off a terminal, the seconds between two plain lines of a `task_bar`
PLAIN_EVERY_S = 10.0


class _PlainWhenPiped(RichProgress):
    """A rich `Progress` that draws nothing off a terminal (it is created disabled there) and
    instead writes `description: done/total` every `PLAIN_EVERY_S` seconds of a task."""

    plain = False  # set by `task_bar` when the console is no terminal

    def update(self, task_id: TaskID, **fields: Any) -> None:
        super().update(task_id, **fields)
        self._plain_line(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._plain_line(task_id)

    def _plain_line(self, task_id: TaskID) -> None:
        if not self.plain:
            return
        now = time.monotonic()
        last = getattr(self, "_last_line", None)
        if last is None:
            self._last_line = now  # the first line comes after PLAIN_EVERY_S, not at once
            return
        if now - last < PLAIN_EVERY_S:
            return
        self._last_line = now
        task = self._tasks[task_id]
        total = f"/{task.total:.0f}" if task.total is not None else ""
        self.console.print(
            f"{task.description}: {task.completed:.0f}{total}", markup=False, highlight=False
        )


def task_bar(
    *columns: Any, console: Console | None = None, quiet: bool = False, transient: bool = False
) -> RichProgress:
    """A rich progress bar with `columns` on `console` (default: stdout) in a terminal; nothing
    when `quiet`; off a terminal (a log file, a pipe) plain lines only (`_PlainWhenPiped`)."""
    console = console if console is not None else Console()
    piped = not console.is_terminal
    bar = _PlainWhenPiped(*columns, console=console, transient=transient, disable=quiet or piped)
    bar.plain = piped and not quiet
    return bar


def open_progress(
    enabled: bool, start: int, total: int, best: float = -1.0, stream: IO[str] | None = None
) -> Progress:
    """The display for a run from iteration `start` to `total` (best mIoU so far: `best`): a bar
    when `stream` (default stdout) is a terminal, plain lines otherwise, nothing when not
    `enabled`."""
    stream = stream if stream is not None else sys.stdout
    if not enabled:
        return Progress(start, total, best)
    if stream.isatty():
        return BarProgress(start, total, best, stream)
    return LineProgress(start, total, best, stream)


class Progress:
    """Shows nothing; the base of the two displays (each method is a no-op here)."""

    def __init__(self, start: int, total: int, best: float) -> None:
        self.total = total
        self.best = best

    def update(self, it: int, loss: float, lr: float) -> None:
        """After every iteration: this process's loss and the learning rate."""

    def log(self, it: int, losses: dict[str, float], lr: float, times: dict[str, float]) -> None:
        """Every `train.log_interval` iterations: the logged losses and the interval's timing."""

    def eval_start(self, it: int) -> None:
        """An evaluation begins after iteration `it`."""

    def eval_done(self, it: int, metrics: dict[str, Any], seconds: float) -> None:
        """The evaluation after iteration `it` gave `metrics` in `seconds`."""
        self.best = max(self.best, metrics["mIoU"])

    def close(self) -> None:
        """The run is over (or failed)."""


class LineProgress(Progress):
    """Plain `key=value` lines for logs that are files (see the module docstring)."""

    def __init__(self, start: int, total: int, best: float, stream: IO[str]) -> None:
        super().__init__(start, total, best)
        self.stream = stream

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def log(self, it: int, losses: dict[str, float], lr: float, times: dict[str, float]) -> None:
        self._write(train_line(it, self.total, losses, lr, times))

    def eval_done(self, it: int, metrics: dict[str, Any], seconds: float) -> None:
        super().eval_done(it, metrics, seconds)
        self._write(eval_line(it, self.total, metrics, self.best, seconds))


def train_line(
    it: int, total: int, losses: dict[str, float], lr: float, times: dict[str, float]
) -> str:
    """One plain training log line (see the module docstring)."""
    sec = times.get("sec_per_iter", math.nan)
    fields = [f"iter={it}/{total}", *(f"{k}={v:.4f}" for k, v in losses.items())]
    fields += [
        f"lr={lr:.2e}",
        f"s/it={sec:.3f}",
        f"img/s={times.get('images_per_s', math.nan):.1f}",
        f"data={100 * times.get('data_share', math.nan):.0f}%",
        f"eta={clock((total - it) * sec)}",
    ]
    if "peak_mem_gib" in times:
        fields.append(f"mem={times['peak_mem_gib']:.1f}GiB")
    return "train " + " ".join(fields)


def eval_line(it: int, total: int, metrics: dict[str, Any], best: float, seconds: float) -> str:
    """One plain evaluation log line (see the module docstring)."""
    from gsag.engine.eval_report import fmt_pct
    from gsag.engine.run_log import VAL_KEYS

    fields = [f"iter={it}/{total}", *(f"{k}={fmt_pct(metrics[k])}%" for k in VAL_KEYS)]
    fields += [f"best={fmt_pct(best if best >= 0 else None)}%", f"time={seconds:.1f}s"]
    return "eval " + " ".join(fields)


def clock(seconds: float) -> str:
    """H:MM:SS, or "?" when unknown."""
    if not math.isfinite(seconds):
        return "?"
    s = round(max(seconds, 0.0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class BarProgress(Progress):
    """A rich bar on two lines of at most 80 columns:

    train ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 150/300 0:07:30 ETA 0:07:29 mIoU 45.1
    loss 1.4357  lr 1.00e-03  3.030 s/it  2.6 img/s  data 3%  mem 12.3 GiB
    """

    def __init__(self, start: int, total: int, best: float, stream: IO[str]) -> None:
        super().__init__(start, total, best)
        self.bar = _two_line_bar(Console(file=stream))
        self.bar.start()
        self.task = self.bar.add_task("train", total=total, completed=start, miou="", line2="")
        self.loss, self.lr, self.times = math.nan, 0.0, ""

    def _show(self, **fields: Any) -> None:
        self.bar.update(self.task, **fields)

    def update(self, it: int, loss: float, lr: float) -> None:
        self.loss, self.lr = loss, lr
        self._show(completed=it, line2=self._stats())

    def log(self, it: int, losses: dict[str, float], lr: float, times: dict[str, float]) -> None:
        if times["sec_per_iter"] != times["sec_per_iter"]:  # nothing measured (all compiling)
            return
        self.times = (
            f"{times['sec_per_iter']:.3f} s/it  {times['images_per_s']:.1f} img/s  "
            f"data {100 * times['data_share']:.0f}%"
        )
        if "peak_mem_gib" in times:
            self.times += f"  mem {times['peak_mem_gib']:.1f} GiB"
        self._show(line2=self._stats())

    def _stats(self) -> str:
        return f"loss {self.loss:.4f}  lr {self.lr:.2e}  {self.times}".rstrip()

    def eval_start(self, it: int) -> None:
        self._show(line2=f"evaluating at iteration {it} ...")

    def eval_done(self, it: int, metrics: dict[str, Any], seconds: float) -> None:
        from gsag.engine.eval_report import fmt_pct

        super().eval_done(it, metrics, seconds)
        self._show(miou=f"mIoU {fmt_pct(metrics['mIoU'], digits=1)}", line2=self._stats())

    def close(self) -> None:
        self.bar.stop()


def _two_line_bar(console):
    """A rich `Progress` that prints each task's `line2` field under its bar."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as Bar
    from rich.text import Text

    class TwoLineBar(Bar):
        def get_renderables(self):
            yield self.make_tasks_table(self.tasks)
            for task in self.tasks:
                yield Text(task.fields.get("line2", ""), no_wrap=True, overflow="ellipsis")

    return TwoLineBar(
        TextColumn("[bold]train"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[miou]}"),
        console=console,
    )
