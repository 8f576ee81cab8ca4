"""Signals: SIGTERM (what batch schedulers send before they kill a job) ends a run as Ctrl-C
does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from gsag.config import save_config
from gsag.engine.checkpoint import load_checkpoint
from gsag.engine.train import train
from tests.helpers.configs import tiny_config

pytestmark = [
    pytest.mark.usefixtures("single_thread"),  # one torch thread per test
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]


def _start(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "gsag", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for(proc: subprocess.Popen, ready, what: str) -> None:
    deadline = time.time() + 600  # a loaded 2-core machine starts torch slowly
    while not ready():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            _out, err = proc.communicate()
            pytest.fail(f"no {what} before the process ended: {err[-2000:]}")
        time.sleep(0.01)


def test_sigterm_keeps_the_last_checkpoint_frees_the_folder_and_the_run_resumes(
    synth_root, tmp_path
):
    iters = 24
    sets = (f"train.iters={iters}", "train.eval_interval=24", "train.save_interval=2")
    run, straight, config = tmp_path / "run", tmp_path / "straight", tmp_path / "tiny.yaml"
    save_config(tiny_config(synth_root, run, *sets), config)
    proc = _start("train", str(config), "--quiet", "--threads", "1")
    _wait_for(proc, (run / "last.pt").is_file, "last.pt")
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=300)

    assert proc.returncode == 143, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: terminated (SIGTERM)"), err[-2000:]
    assert "--resume" in lines[0]
    assert not (run / "run.lock").exists(), "the lock of a terminated run was left behind"
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name], "a half-written file"
    done = load_checkpoint(run / "last.pt")["iteration"]
    assert 2 <= done < iters, "the run ended before SIGTERM: nothing was left to resume"

    # resumed, it ends where an uninterrupted run ends, bit for bit
    train(tiny_config(synth_root, run, *sets), quiet=True, resume=True)
    train(tiny_config(synth_root, straight, *sets), quiet=True)
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(run / "last.pt")
    assert a["iteration"] == b["iteration"] == iters
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name


def test_sigterm_handler_is_restored_after_a_command(capsys):
    from gsag.cli import main

    before = signal.getsignal(signal.SIGTERM)
    assert main(["eval", "/nonexistent/best.pt"]) == 2  # an error after the handler was set
    assert signal.getsignal(signal.SIGTERM) is before
