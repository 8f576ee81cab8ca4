"""DDP on CPU: `torchrun` with 2 gloo processes trains, and its evaluation equals one process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gsag.config import save_config
from gsag.engine.checkpoint import load_model
from gsag.engine.datasets import make_dataset
from gsag.engine.evaluate import evaluate
from tests.helpers.configs import tiny_config

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="torchrun + gloo on POSIX only"),
    pytest.mark.usefixtures("single_thread"),  # one torch thread per test
]


def torchrun(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=2 ARGS`, one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_two_processes_report_the_metrics_of_one(synth_root, tmp_path):
    run = tmp_path / "ddp"
    # 3 validation images over 2 processes: uneven shards, nothing may be counted twice
    cfg = tiny_config(synth_root, run, "train.iters=2", "eval.max_images=3")
    config = tmp_path / "ddp.yaml"
    save_config(cfg, config)
    cmd = ["-m", "gsag", "train", str(config), "--device", "cpu", "--quiet"]
    done = torchrun(*cmd, timeout=300)
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
    again = torchrun(*cmd, timeout=300)
    assert again.returncode != 0
    assert f"run folder {run} already holds a run" in again.stderr.replace("\n", "")


RANK_SCRIPT = """
import sys
from pathlib import Path

from gsag.engine import distributed
from gsag.engine.run_dir import RunFolderError, claim_run_dir

info = distributed.setup("cpu")
out = Path(sys.argv[2]) / f"rank{info.rank}.txt"
try:
    with claim_run_dir(sys.argv[1], info):
        out.write_text("claimed")
except RunFolderError as e:
    out.write_text(str(e))
distributed.cleanup(info)
"""


def test_every_rank_raises_rank_0s_reason_for_refusing_a_run_folder(tmp_path):
    # torchrun kills the other ranks once one exits with an error, perhaps before rank 0 has
    # printed: each rank's own error must say why, not only that rank 0 failed
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train: {}\n")  # written first by every run
    (run / "metrics.jsonl").write_text('{"type": "train", "iteration": 1}\n')
    script = tmp_path / "claim.py"
    script.write_text(RANK_SCRIPT)
    done = torchrun(str(script), str(run), str(tmp_path), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for rank in (0, 1):
        message = (tmp_path / f"rank{rank}.txt").read_text()
        assert f"run folder {run} already holds a run" in message, (rank, message)
        assert "--resume" in message  # the fix travels with the reason


TEARDOWN_SCRIPT = """
from gsag.engine import distributed

info = distributed.setup("cpu")
assert distributed.all_true(True, info.device)
assert distributed.from_rank0(info.rank) == 0
distributed.cleanup(info)  # right after the collectives: the worst case for a teardown race
"""


def test_leaving_the_group_right_after_a_collective_does_not_hang(tmp_path):
    # torch 2.4.1's gloo deadlocked in destroy_process_group in about 1 teardown in 5 when a
    # worker thread still held the last collective's tensors; 5 launches catch that 2 times in 3
    script = tmp_path / "teardown.py"
    script.write_text(TEARDOWN_SCRIPT)
    for launch in range(5):
        try:
            done = torchrun(str(script), timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"launch {launch}: a rank hung for 60 s while leaving the process group")
        assert done.returncode == 0, done.stderr[-3000:]
