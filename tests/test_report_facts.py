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
    assert facts == {"iterations": 30, "train_s": 10 * 1.5 + 10 * 2.0 + 5 * 4.0, "eval_s": 30.0}
    assert training_line(facts, 40) == (
        "training: 30 of 40 iterations, 0.9 min + 0.5 min of evaluation during training "
        "(from the run's metrics.jsonl)"
    )


def test_a_log_without_evaluation_times_leaves_them_out(tmp_path):
    log = tmp_path / "metrics.jsonl"
    write_log(log, [
        {"type": "train", "iteration": 5, "loss": 2.0, "sec_per_iter": 2.0},
        {"type": "val", "iteration": 5, "mIoU": 0.3},  # written before eval_s existed
    ])  # fmt: skip
    facts = training_facts(log)
    assert facts["train_s"] == pytest.approx(10.0) and math.isnan(facts["eval_s"])
    assert "evaluation" not in training_line(facts, 5)
