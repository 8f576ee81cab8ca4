"""The experiment trackers of `train.loggers`: TensorBoard, a CSV file, Weights & Biases and
MLflow, each given the same things under the same keys.

- the resolved config, when the run starts;
- scalars at every log interval (`train/loss`, `train/lr`, `time/...`) and evaluation
  (`val/mIoU`, ..., `val_IoU/<class>`);
- the panel of fixed validation images (image | ground truth | prediction, one row each) under
  `val_predictions` at every evaluation (the CSV logger writes no images).

W&B and MLflow are optional extras (`pip install gsag[wandb]`, `gsag[mlflow]`); `check_loggers`
refuses a missing one before any work. Their run ids are kept in the run folder's
trackers.json, so a resumed run logs to the same W&B and MLflow run. A tracker that fails
mid-run warns once and stops; training and metrics.jsonl go on.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from gsag.atomic import write_text
from gsag.config import Config, ConfigError
from gsag.engine.csv_log import CsvLog
from gsag.engine.tb import open_writer
from gsag.errors import GsagError
from gsag.hints import dotted

#: The run folder's record of the W&B and MLflow run ids.
TRACKERS_FILE = "trackers.json"
#: The extra that installs each optional tracker, and the module it imports.
EXTRAS = {"wandb": "wandb", "mlflow": "mlflow"}


#: What to do when a tracker cannot start.
START_FIXES = {
    "wandb": "run `wandb login`, or set WANDB_MODE=offline",
    "mlflow": "set MLFLOW_TRACKING_URI to a tracking server or database (e.g. sqlite:///mlflow.db)",
}


class TrackerError(GsagError):
    """A tracker of `train.loggers` could not start (exit 1, before the first iteration)."""


class Tracker(Protocol):
    """What every logger takes."""

    def scalars(self, values: dict[str, float], step: int) -> None: ...

    def image(self, key: str, image: np.ndarray, step: int) -> None:
        """`image` (H, W, 3) uint8."""

    def close(self) -> None: ...


def check_loggers(cfg: Config) -> None:
    """Refuse a tracker of `train.loggers` whose package is not installed, naming its extra."""
    for name in cfg.train.loggers:
        module = EXTRAS.get(name)
        if module is not None and importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"train.loggers has {name}, which is not installed; pip install 'gsag[{name}]' "
                f"(or drop {name} from train.loggers)"
            )


def open_trackers(cfg: Config, run_dir: Path, start: int) -> list[Tracker]:
    """The trackers of `train.loggers` on `run_dir`, resumed at iteration `start` (0: a new
    run). W&B and MLflow continue the runs of trackers.json when `start` > 0."""
    ids_path = run_dir / TRACKERS_FILE
    ids = _read_ids(ids_path) if start > 0 else {}
    trackers: list[Tracker] = []
    for name in dict.fromkeys(cfg.train.loggers):
        try:
            tracker = _open(name, cfg, run_dir, start, ids.get(name))
        except Exception as e:
            Trackers(trackers).close()
            message = " ".join(str(e).split())
            raise TrackerError(
                f"train.loggers: {name} could not start ({type(e).__name__}: {message}); "
                f"{START_FIXES.get(name, 'check its settings')}, or drop {name} from "
                "train.loggers"
            ) from e
        if tracker is None:
            continue
        trackers.append(tracker)
        run_id = getattr(tracker, "run_id", None)  # W&B's and MLflow's
        if run_id is not None:
            ids[name] = run_id
    if ids:
        write_text(ids_path, json.dumps(ids, indent=1) + "\n")
    return trackers


def _open(name: str, cfg: Config, run_dir: Path, start: int, run_id: str | None) -> Tracker | None:
    """Tracker `name` (None: TensorBoard is not installed)."""
    if name == "tensorboard":
        writer = open_writer(run_dir, resumed_at=start)
        return None if writer is None else TensorBoardTracker(writer, cfg)
    if name == "csv":
        return CsvLog(run_dir / "metrics.csv", start)
    if name == "wandb":
        return WandbTracker(cfg, run_dir, run_id)
    return MlflowTracker(cfg, run_dir, run_id)


def _read_ids(path: Path) -> dict[str, str]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in record.items()} if isinstance(record, dict) else {}


class Trackers:
    """Every tracker of a run behind one call; one that raises warns once and is dropped."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def _each(self, method: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as e:  # a tracker must never stop a run
                self.trackers.remove(tracker)
                warnings.warn(
                    f"{type(tracker).__name__} stopped ({type(e).__name__}: {e}); training goes "
                    "on and metrics.jsonl still records every step",
                    stacklevel=3,
                )

    def scalars(self, values: dict[str, float], step: int) -> None:
        self._each("scalars", values, step)

    def image(self, key: str, image: np.ndarray, step: int) -> None:
        self._each("image", key, image, step)

    def close(self) -> None:
        self._each("close")


class TensorBoardTracker:
    """Events in the run folder through `gsag.engine.tb`'s failure-proof writer."""

    def __init__(self, writer: Any, cfg: Config) -> None:
        self.writer = writer
        text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
        writer.add_text("config", "\n".join("    " + line for line in text.splitlines()))

    def scalars(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            if math.isfinite(value):
                self.writer.add_scalar(key, value, step)

    def image(self, key: str, image: np.ndarray, step: int) -> None:
        self.writer.add_image(key, image, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A W&B run (project `train.project`, named after the run folder); its files go to
    $WANDB_DIR, else the run folder. WANDB_MODE=offline keeps it on this machine."""

    def __init__(self, cfg: Config, run_dir: Path, run_id: str | None) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            project=cfg.train.project,
            name=run_dir.resolve().name,
            id=run_id,
            resume="allow" if run_id else None,
            dir=None if os.environ.get("WANDB_DIR") else str(run_dir),
            config=cfg.to_dict(),
            reinit="create_new",
            settings=wandb.Settings(console="off", quiet=True),
        )
        self.run_id = str(self.run.id)

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log({k: v for k, v in values.items() if math.isfinite(v)}, step=step)

    def image(self, key: str, image: np.ndarray, step: int) -> None:
        self.run.log({key: self.wandb.Image(image)}, step=step)

    def close(self) -> None:
        self.run.finish()


class MlflowTracker:
    """An MLflow run in experiment `train.project` at MLflow's tracking URI
    ($MLFLOW_TRACKING_URI, else MLflow's default); the config as parameters, the panels as
    images of the run."""

    def __init__(self, cfg: Config, run_dir: Path, run_id: str | None) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self.client = MlflowClient()
        if run_id is None:
            experiment = self.client.get_experiment_by_name(cfg.train.project)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else self.client.create_experiment(cfg.train.project)
            )
            run = self.client.create_run(experiment_id, run_name=run_dir.resolve().name)
            run_id = run.info.run_id
            params = [Param(k, str(v)[:6000]) for k, v in dotted(cfg.to_dict()).items()]
            for i in range(0, len(params), 100):  # MLflow takes 100 parameters a batch
                self.client.log_batch(run_id, params=params[i : i + 100])
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id

    def scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = _now_ms()
        metrics = [
            Metric(_mlflow_key(k), v, stamp, step) for k, v in values.items() if math.isfinite(v)
        ]
        for i in range(0, len(metrics), 1000):  # MLflow takes 1000 metrics a batch
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def image(self, key: str, image: np.ndarray, step: int) -> None:
        self.client.log_image(self.run_id, image, key=_mlflow_key(key), step=step)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def _mlflow_key(key: str) -> str:
    """A metric name MLflow accepts (letters, digits, _ - . space /)."""
    return re.sub(r"[^\w\-. /]", "_", key)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
