"""What a training run reports as it goes: metrics.jsonl, TensorBoard scalars and image panels
(through `gsag.engine.tb`'s failure-proof writer), the progress bar and one-line notes."""

from __future__ import annotations

import errno
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from gsag.atomic import json_safe
from gsag.atomic import write_text as atomic_write_text
from gsag.engine import distributed
from gsag.engine.distributed import DistInfo
from gsag.engine.evaluate import fmt_pct
from gsag.engine.tb import open_writer
from gsag.errors import DiskFullError, RunFolderError
from gsag.visualize import tensorboard_panel

VAL_KEYS = ("mIoU", "aAcc", "mAcc", "FWIoU")


class RunLog:
    """`<run_dir>/metrics.jsonl` and the TensorBoard events of one run.

    Every process calls `train` (it averages the losses over processes); only the main process
    writes. Opening it after a resume at iteration `start` drops what a killed run logged later.
    """

    def __init__(self, run_dir: Path, start: int, dist: DistInfo) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.dist = dist
        self.writer = None
        if dist.is_main:
            _trim_log(self.path, start)
            self.writer = open_writer(run_dir, resumed_at=start)

    def train(
        self, it: int, losses: dict[str, float], lr: float, bad_steps: int, times: dict[str, float]
    ) -> None:
        """One "train" record: losses averaged over processes, lr, skipped steps, rank 0's timing
        (seconds per iteration, data share, images/s, memory)."""
        losses = {
            k: float(distributed.mean_over_processes(torch.tensor(v, device=self.dist.device)))
            for k, v in losses.items()
        }
        if not self.dist.is_main:
            return
        record = {
            "type": "train",
            "iteration": it,
            **losses,
            "lr": lr,
            "bad_steps": bad_steps,
            **times,
        }
        _append_jsonl(self.path, record)
        if self.writer is not None:
            for k, v in losses.items():
                self.writer.add_scalar(f"train/{k}", v, it)
            for k, v in times.items():
                if v == v:  # skip NaN
                    self.writer.add_scalar(f"time/{k}", v, it)
            self.writer.add_scalar("train/lr", lr, it)
            self.writer.add_scalar("train/bad_steps", bad_steps, it)

    def val(
        self,
        it: int,
        metrics: dict[str, Any],
        samples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        meta: dict[str, Any],
    ) -> None:
        """One "val" record (per-class IoU by name) and `samples`' (image, mask, prediction)
        panels; main process only."""
        if not self.dist.is_main:
            return
        record = {
            "type": "val",
            "iteration": it,
            **{k: metrics[k] for k in VAL_KEYS},
            "IoU": dict(zip(meta["classes"], metrics["IoU"], strict=True)),
        }
        _append_jsonl(self.path, record)
        if self.writer is None:
            return
        for k in VAL_KEYS:
            self.writer.add_scalar(f"val/{k}", metrics[k], it)
        for name, iou in zip(meta["classes"], metrics["IoU"], strict=True):
            if not math.isnan(iou):
                self.writer.add_scalar(f"val_IoU/{name}", iou, it)
        for i, (image, mask, pred) in enumerate(samples):
            panel = tensorboard_panel(
                image, mask, pred, meta["mean"], meta["std"], meta["palette"], meta["ignore_index"]
            )
            self.writer.add_image(f"val_predictions/{i}", panel, it)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one record as a line of standard JSON (NaN and inf as null)."""
    line = json.dumps(json_safe(record), allow_nan=False) + "\n"
    try:
        with open(path, "a") as f:
            f.write(line)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        raise DiskFullError(f"disk full while writing {path}; free some space and rerun") from e


def _trim_log(path: Path, start: int) -> None:
    """Keep only the records up to iteration `start` (a killed run may have logged past it).

    A last line cut short by a kill or a full disk during its append is dropped with a warning;
    any other line that is not a JSON record stops the resume, naming it.
    """
    if not path.exists():
        return
    if start == 0:
        path.unlink()
        return
    lines = path.read_text().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:
            record = None
            if number == len(lines):
                note(f"[yellow]warning[/]: dropped the torn last line {number} of {path}")
                continue
        if line.strip() and not isinstance(record, dict):
            raise RunFolderError(
                f"{path} line {number} is not a JSON record ({line[:40]!r}); repair or delete "
                "that line, then resume again"
            )
        if record is not None and record.get("iteration", 0) <= start:
            records.append(line)
    atomic_write_text(path, "".join(ln + "\n" for ln in records))


def note(msg: str) -> None:
    """One line on stderr (rich markup)."""
    from rich.console import Console

    Console(stderr=True).print(msg)


class Progress:
    """A rich progress bar with loss, lr, it/s and ETA (nothing when `enabled` is false)."""

    def __init__(self, enabled: bool, start: int, total: int) -> None:
        self.enabled = enabled
        self.bar = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        self.bar = Bar(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}"),
            TextColumn("{task.fields[speed]}"),
            TextColumn("{task.fields[timing]}"),
            TextColumn("mIoU {task.fields[miou]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
        )
        self.bar.start()
        self.task = self.bar.add_task(
            "train",
            total=total,
            completed=start,
            loss=math.nan,
            lr=0.0,
            speed="",
            timing="",
            miou="–",
            note="",
        )
        self.t_last, self.it_last = time.perf_counter(), start

    def update(self, it: int, loss: float, lr: float) -> None:
        if self.bar is None:
            return
        now = time.perf_counter()
        fields: dict[str, Any] = {"loss": loss, "lr": lr}
        if now - self.t_last >= 1.0:
            fields["speed"] = f"{(it - self.it_last) / (now - self.t_last):.2f} it/s"
            self.t_last, self.it_last = now, it
        self.bar.update(self.task, completed=it, **fields)

    def timing(self, times: dict[str, float]) -> None:
        """Shows the last log interval's s/it, images/s, data-wait share and peak memory."""
        if self.bar is None or times["sec_per_iter"] != times["sec_per_iter"]:
            return
        text = (
            f"{times['sec_per_iter']:.3f} s/it  {times['images_per_s']:.1f} img/s  "
            f"data {100 * times['data_share']:.0f}%"
        )
        if "peak_mem_gib" in times:
            text += f"  mem {times['peak_mem_gib']:.1f} GiB"
        self.bar.update(self.task, timing=text)

    def pause(self, note: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, note=note)

    def resume(self, miou: float) -> None:
        if self.bar is not None:
            shown = fmt_pct(miou, digits=1)
            self.bar.update(self.task, note="", miou=shown)
            self.t_last = time.perf_counter()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
