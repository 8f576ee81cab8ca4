"""The SLURM batch job of docs/training.md, run as written (2 CPU processes on one node instead of
2 nodes x 4 GPUs): its torchrun flags work, the log lines land in the output file, and a job
killed after a checkpoint is finished by the next one."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gsag.config import save_config
from tests.helpers.configs import tiny_config

pytestmark = [
    pytest.mark.slow,  # two torchrun launches with 2 processes each
    pytest.mark.skipif(sys.platform == "win32", reason="torchrun + gloo on POSIX only"),
]
DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"
ITERS = 40


def documented_job() -> str:
    """The body of the sbatch script in docs/training.md, after `set -euo pipefail`."""
    blocks = re.findall(r"```bash\n(#!/bin/bash\n.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1, "docs/training.md should hold one sbatch script"
    return blocks[0].split("set -euo pipefail\n", 1)[1]


def local_job(run: Path, config: Path, port: int) -> str:
    """The documented job with this machine's values: 1 node, 2 processes, a free port."""
    body = documented_job()
    swaps = [
        ("RUN=runs/voc_gsag_hybrid_resnet101_40k", f"RUN={run}"),
        ('HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)', "HEAD=127.0.0.1"),
        ("--nproc_per_node 4", "--nproc_per_node 2"),
        (":29500", f":{port}"),
        ("configs/voc_gsag_hybrid_resnet101_40k.yaml", str(config)),
    ]
    for old, new in swaps:
        assert old in body, f"the sbatch script in docs/training.md no longer has {old!r}"
        body = body.replace(old, new)
    shims = (
        f'srun() {{ "$@"; }}\ntorchrun() {{ "{sys.executable}" -m torch.distributed.run "$@"; }}\n'
    )
    return "set -euo pipefail\n" + shims + body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(script: str, log: Path, job_id: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SLURM_NNODES": "1", "SLURM_JOB_ID": job_id}
    with open(log, "w") as out:  # as #SBATCH --output: stdout and stderr in one file
        return subprocess.Popen(
            ["bash", "-c", script], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def gone(group: int, timeout: float = 120) -> None:
    """Wait until no process of the session `group` is left (torchrun's agent and its workers
    unwind a SIGTERM after the job's shell has exited; one still holding the rendezvous port would
    take job 2's agent as its client and leave it, broken, when it exits)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(group, signal.SIGKILL)
    raise AssertionError(f"job 1's processes were still running {timeout:.0f} s after SIGTERM")


def logged_iterations(text: str, tag: str) -> list[int]:
    return [int(m) for m in re.findall(rf"^{tag} iter=(\d+)/{ITERS} ", text, re.M)]


def test_documented_batch_job_runs_logs_and_resumes(synth_root, tmp_path):
    run, config = tmp_path / "run", tmp_path / "tiny.yaml"
    cfg = tiny_config(synth_root, run, f"train.iters={ITERS}", "train.save_interval=2",
                      f"train.eval_interval={ITERS}", "train.log_interval=1")  # fmt: skip
    save_config(cfg, config)
    script = local_job(run, config, free_port())

    # job 1: killed like a time limit does (SIGTERM to the whole step) once last.pt exists
    first = start(script, tmp_path / "job1.out", "101")
    deadline = time.time() + 240
    while not (run / "last.pt").is_file() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGTERM)
    first.wait(timeout=60)
    gone(first.pid)  # as a scheduler does: job 2 starts once every process of job 1 has ended
    log1 = (tmp_path / "job1.out").read_text()
    done1 = logged_iterations(log1, "train")
    assert done1 and done1 == list(range(1, len(done1) + 1)), log1[-3000:]  # rank 0 only, once
    assert ITERS not in done1, "job 1 finished before it was killed: nothing left to resume"

    # job 2: same script; it goes on from last.pt and finishes
    second = start(script, tmp_path / "job2.out", "102")
    assert second.wait(timeout=300) == 0, (tmp_path / "job2.out").read_text()[-3000:]
    log2 = (tmp_path / "job2.out").read_text()
    resumed = re.search(rf"^resuming {run / 'last.pt'} at iteration (\d+)$", log2, re.M)
    assert resumed, log2[-3000:]
    at = int(resumed.group(1))
    assert logged_iterations(log2, "train") == list(range(at + 1, ITERS + 1))
    assert logged_iterations(log2, "eval") == [ITERS]
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["type"] == "train"] == list(range(1, ITERS + 1))
