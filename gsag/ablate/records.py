"""The records of an ablation: each run's result.json and the fingerprint that names its folder.

The fingerprint is a hash of the run's resolved config without the settings that cannot change
its results (`FINGERPRINT_IGNORES`), and of the dataset's identity (`data_identity`: its
classes.yaml, which names the generator settings of generated data, and the ids of the training
and validation splits). A rerun skips every combination whose `result.json` exists under the
same fingerprint, so an interrupted ablation resumes where it stopped (the unfinished
combination continues from its last checkpoint), while a changed config, override or dataset
trains into new folders and never reuses an old run; old runs stay where they are. Runs recorded
before the fingerprint held the data (their `result.json` has no `data` entry) are found under
their config-only fingerprint and trusted as they are. A finished run whose folder name no longer
matches (a config key added since, which changes every hash, or `data.mean: []` against the
backbone's own values spelled out) is found by content (`find_recorded`): its `config.yaml`,
loaded with today's defaults, gives the same `recipe`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
# config keys that do not change a run's results: left out of its fingerprint
FINGERPRINT_IGNORES = (
    "eval.batch_size",  # batched logits differ from single-image ones by float rounding only
    "output.run_dir",
    "output.safetensors",
    "train.num_threads",
    "train.num_workers",
    "train.tb_images",
    "train.loggers",
    "train.project",
)


def finite(v: Any) -> float:
    """A recorded number, None (JSON null) read as NaN."""
    return float("nan") if v is None else float(v)


def _kept(config: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a config dict without `FINGERPRINT_IGNORES`."""
    kept = json.loads(json.dumps(config))
    for key in FINGERPRINT_IGNORES:
        section, name = key.split(".")
        kept.get(section, {}).pop(name, None)
    return kept


def fingerprint(config: dict[str, Any], data: str | None = None) -> str:
    """8 hex digits of SHA-256 over a resolved config dict, minus `FINGERPRINT_IGNORES`, and
    the dataset identity `data` (None: the config alone, as runs were fingerprinted before)."""
    kept = _kept(config)
    if data is not None:
        kept["data_identity"] = data
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def recipe(cfg: Any) -> dict[str, Any]:
    """What a run's results depend on: the config without `FINGERPRINT_IGNORES`, with the
    input normalisation resolved (`data.mean: []` and the backbone's own values are the same
    recipe)."""
    from gsag.engine.datasets import input_norm

    kept = _kept(cfg.to_dict())
    kept["data"]["mean"], kept["data"]["std"] = input_norm(cfg)
    return kept


def find_recorded(runs: Path, name: str, cfg: Any, data: str | None) -> Path | None:
    """A finished run of combination `name` under `runs` with the same recipe as `cfg`, found
    by content rather than by folder name, so that a run survives a config key added since it
    was recorded (its config loads with that key at its default), or a default spelled another
    way. A run whose `result.json` names another dataset is not it; one recorded before the
    data counted (no `data` entry) is trusted, as by its old fingerprint."""
    from gsag.config import ConfigError, load_config

    want = recipe(cfg)
    for result in sorted(runs.glob(f"{name}__*/{RESULT_FILE}")):
        try:
            recorded = json.loads(result.read_text())
            old = load_config(result.parent / "config.yaml")
        except (OSError, ValueError, ConfigError):
            continue  # no usable config: never a match
        if recorded.get("data", data) == data and recipe(old) == want:
            return result.parent
    return None


def data_identity(cfg: Any) -> str | None:
    """16 hex digits of SHA-256 over the dataset at `cfg.data.root`: its classes.yaml (with the
    generator settings of generated data) and the ids of the training and validation splits;
    None when the dataset is not there (yet)."""
    from gsag.data.errors import DataError
    from gsag.data.layout import open_dataset

    d = cfg.data
    root = Path(d.root)
    digest = hashlib.sha256()
    try:
        for split in (d.train_split, d.val_split):
            ids = open_dataset(root, split, layout=d.layout).ids
            digest.update(json.dumps([split, [str(i) for i in ids]]).encode())
        classes = root / "classes.yaml"
        digest.update(classes.read_bytes() if classes.is_file() else b"")
    except (DataError, OSError):
        return None
    return digest.hexdigest()[:16]


def run_environment(out: dict[str, Any], load_at_start: float | None) -> dict[str, Any]:
    """`environment()` written when training has ended, with the load average at the start and
    at the end (records written before this, up to 2026-12-07, hold the one at the end under
    the `_at_start` name)."""
    from gsag.bench.environment import environment

    env = environment(out.get("device", "cpu"), out.get("threads"))
    if "load_average_1min_at_start" in env:  # read now, at the end
        env["load_average_1min_at_end"] = env["load_average_1min_at_start"]
        env["load_average_1min_at_start"] = load_at_start
    return env


def checkpoint_classes(checkpoint: str | os.PathLike | None) -> list[str]:
    """Class names stored in a training checkpoint (empty when unavailable)."""
    if not checkpoint or not Path(checkpoint).is_file():
        return []
    from gsag.engine.checkpoint import load_checkpoint

    return list(load_checkpoint(checkpoint)["meta"]["classes"])


def classes_of(results: Sequence[dict[str, Any]]) -> list[str]:
    """Class names recorded by the first run that has them."""
    for r in results:
        if r.get("classes"):
            return list(r["classes"])
    return []
