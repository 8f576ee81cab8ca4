"""DDP on CPU: `torchrun` with 2 gloo processes trains, and its evaluation equals one process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gsag.config import save_config
from gsag.data.build import make_dataset
from gsag.engine.checkpoint import load_model
from gsag.engine.evaluate import evaluate
from tests.helpers.configs import tiny_config

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="torchrun + gloo on POSIX only"),
    pytest.mark.usefixtures("single_thread"),  # one torch thread per test
]


def test_two_processes_report_the_metrics_of_one(synth_root, tmp_path):
    run = tmp_path / "ddp"
    # 3 validation images over 2 processes: uneven shards, nothing may be counted twice
    cfg = tiny_config(synth_root, run, "train.iters=2", "eval.max_images=3")
    config = tmp_path / "ddp.yaml"
    save_config(cfg, config)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "gsag", "train", str(config), "--device", "cpu", "--quiet"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    ddp = [r for r in logged if r["type"] == "val"][-1]
    model, info = load_model(run / "last.pt")
    single = evaluate(model, make_dataset(cfg, "val", train=False), max_images=3)
    assert ddp["iteration"] == 2
    assert ddp["mIoU"] == single["mIoU"] and ddp["aAcc"] == single["aAcc"]
    assert ddp["mAcc"] == single["mAcc"] and ddp["FWIoU"] == single["FWIoU"]
    expected = {
        c: (None if v != v else v) for c, v in zip(info["classes"], single["IoU"], strict=True)
    }
    assert ddp["IoU"] == expected

    # every rank refuses a folder that holds a run (no rank waits for the others forever)
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0
    assert f"run folder {run} already holds a run" in again.stderr.replace("\n", "")
