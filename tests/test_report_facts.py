"""`gsag.trained.report.training_facts`: what a run's metrics.jsonl says about its training,
read the same way whenever a report is written."""

from __future__ import annotations

import json
import math

import pytest

from gsag.trained.report import training_facts, training_line


def write_log(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_training_time_is_iterations_times_seconds_per_interval(tmp_path):
    log = tmp_path / "metrics.jsonl"
    write_log(log, [
        {"type": "train", "iteration": 10, "loss": 2.0, "sec_per_iter": 1.5},
        {"type": "train", "iteration": 20, "loss": 1.5, "sec_per_iter": 2.0},
        {"type": "val", "iteration": 20, "mIoU": 0.3, "eval_s": 12.0},
        {"type": "train", "iteration": 25, "loss": 1.2, "sec_per_iter": None},  # all compiling
        {"type": "train", "iteration": 30, "loss": 1.1, "sec_per_iter": 4.0},
        {"type": "val", "iteration": 30, "mIoU": 0.4, "eval_s": 18.0},
    ])  # fmt: skip
    facts = training_facts(log)
    assert facts == {"iterations": 30, "train_s": 10 * 1.5 + 10 * 2.0 + 5 * 4.0, "eval_s": 30.0,
                     "threads": []}  # fmt: skip
    assert training_line(facts, 40) == (
        "training: 30 of 40 iterations, 0.9 min + 0.5 min of evaluation during training "
        "(from the run's metrics.jsonl, which does not record its threads)"
    )


def test_training_threads_come_from_the_log():
    """A log that records its threads (since 2026-12-08) gives them; a resumed run that changed
    them gives both."""
    facts = {"iterations": 4, "train_s": 120.0, "eval_s": float("nan"), "threads": [1]}
    assert training_line(facts, 4) == (
        "training: 4 of 4 iterations, 2.0 min, 1 torch CPU thread (from the run's metrics.jsonl)"
    )
    assert training_line({**facts, "threads": [1, 2]}, 4).endswith(
        ", 1 then 2 torch CPU threads (from the run's metrics.jsonl)"
    )


def test_training_records_its_threads(synth_root, tmp_path):
    """metrics.jsonl's train records name the torch threads the run trained with."""
    from gsag.engine.train import train
    from tests.helpers.configs import tiny_config

    run = tmp_path / "run"
    cfg = tiny_config(synth_root, run, "train.iters=2", "train.num_threads=1", "eval.max_images=1")
    train(cfg, quiet=True)
    assert training_facts(run / "metrics.jsonl")["threads"] == [1]


def test_a_log_without_evaluation_times_leaves_them_out(tmp_path):
    log = tmp_path / "metrics.jsonl"
    write_log(log, [
        {"type": "train", "iteration": 5, "loss": 2.0, "sec_per_iter": 2.0},
        {"type": "val", "iteration": 5, "mIoU": 0.3},  # written before eval_s existed
    ])  # fmt: skip
    facts = training_facts(log)
    assert facts["train_s"] == pytest.approx(10.0) and math.isnan(facts["eval_s"])
    assert "evaluation" not in training_line(facts, 5)
