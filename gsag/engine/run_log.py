"""What a training run records as it goes: metrics.jsonl, the scalars and prediction panels of
the trackers of `train.loggers` (`gsag.engine.loggers`), and one-line notes (the progress
display is `gsag.engine.progress`); `read_metrics_log` reads metrics.jsonl back."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import torch

from gsag.atomic import json_safe
from gsag.atomic import write_text as atomic_write_text
from gsag.config import Config
from gsag.engine import distributed
from gsag.engine.distributed import DistInfo
from gsag.engine.loggers import Trackers, open_trackers
from gsag.engine.tb import stack_panels, tensorboard_panel
from gsag.errors import DiskFullError, RunFolderError

VAL_KEYS = ("mIoU", "aAcc", "mAcc", "FWIoU")


class RunLog:
    """`<run_dir>/metrics.jsonl` and the trackers of one run (`cfg.train.loggers`; TensorBoard
    without a config).

    Every process calls `train` (it averages the losses over processes); only the main process
    writes. Opening it after a resume at iteration `start` drops what a killed run logged later.
    """

    def __init__(
        self, run_dir: Path, start: int, dist: DistInfo, cfg: Config | None = None
    ) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.dist = dist
        self.trackers = Trackers([])
        if dist.is_main:
            _trim_log(self.path, start)
            self.trackers = Trackers(open_trackers(cfg or Config(), run_dir, start))

    def train(
        self, it: int, losses: dict[str, float], lr: float, bad_steps: int, times: dict[str, float]
    ) -> dict[str, float]:
        """One "train" record: losses averaged over processes, lr, skipped steps, rank 0's timing
        (seconds per iteration, data share, images/s, memory). Returns the averaged losses."""
        losses = {
            k: float(distributed.mean_over_processes(torch.tensor(v, device=self.dist.device)))
            for k, v in losses.items()
        }
        if not self.dist.is_main:
            return losses
        record = {
            "type": "train",
            "iteration": it,
            **losses,
            "lr": lr,
            "bad_steps": bad_steps,
            **times,
        }
        _append_jsonl(self.path, record)
        scalars = {f"train/{k}": v for k, v in losses.items()}
        scalars.update({"train/lr": lr, "train/bad_steps": float(bad_steps)})
        scalars.update({f"time/{k}": v for k, v in times.items()})
        self.trackers.scalars(scalars, it)
        return losses

    def val(
        self,
        it: int,
        metrics: dict[str, Any],
        samples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        meta: dict[str, Any],
        seconds: float = float("nan"),
    ) -> None:
        """One "val" record (per-class IoU by name, the evaluation's wall time `eval_s`) and
        `samples`' (image, mask, prediction) panels; main process only."""
        if not self.dist.is_main:
            return
        record = {
            "type": "val",
            "iteration": it,
            **{k: metrics[k] for k in VAL_KEYS},
            "IoU": dict(zip(meta["classes"], metrics["IoU"], strict=True)),
            "eval_s": seconds,
        }
        _append_jsonl(self.path, record)
        scalars = {f"val/{k}": float(metrics[k]) for k in VAL_KEYS}
        for name, iou in zip(meta["classes"], metrics["IoU"], strict=True):
            scalars[f"val_IoU/{name}"] = float(iou)
        self.trackers.scalars(scalars, it)
        if samples:
            panels = [
                tensorboard_panel(
                    image, mask, pred, meta["mean"], meta["std"], meta["palette"],
                    meta["ignore_index"],
                )
                for image, mask, pred in samples
            ]  # fmt: skip
            self.trackers.image("val_predictions", stack_panels(panels), it)

    def close(self) -> None:
        self.trackers.close()


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
    """One line on stderr (rich markup), never folded at 80 columns: in a log file a path
    stays whole and greppable; a terminal wraps it itself."""
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(msg)


def read_metrics_log(path: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """Split a run's `metrics.jsonl` into training records and evaluation records.

    A record with an "mIoU" key is an evaluation; one with a "loss" key is a training log line.
    Lines that are not JSON objects (e.g. a half-written last line) are skipped.
    """
    train: list[dict] = []
    evals: list[dict] = []
    path = Path(path)
    if not path.is_file():
        return train, evals
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        if "mIoU" in record:
            evals.append(record)
        elif "loss" in record:
            train.append(record)
    return train, evals


def record_iteration(record: dict) -> float:
    """The iteration of a metrics.jsonl record (older logs: "iter" or "step"); NaN if none."""
    for key in ("iter", "iteration", "step"):
        if key in record:
            return float(record[key])
    return float("nan")
