"""Signals: SIGTERM (what batch schedulers send before they kill a job) ends a run as Ctrl-C
does, and a run stopped before its first checkpoint starts again instead of being stuck."""

from __future__ import annotations

import json
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
from tests.helpers.configs import TINY_CLI_SETS, tiny_config

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
        # as from a terminal: a shell without job control starts `cmd &` with SIGINT ignored,
        # which the child inherits (CI run as a background job): Ctrl-C would do nothing
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
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


def test_an_interrupted_demo_starts_again_on_the_next_demo(synth_root, tmp_path, capsys):
    """Ctrl-C before the first checkpoint, then `gsag demo` again (as `make demo` runs it):
    the run starts again from iteration 0 and finishes, without --resume or --overwrite."""
    from gsag.cli import main

    run = tmp_path / "demo"
    base = ["demo", "--out", str(run), "--set", f"data.root={synth_root}", "--images", "1",
            "--threads", "1", "--quiet", *TINY_CLI_SETS]  # fmt: skip
    long = ["--set", "train.iters=5000", "--set", "train.save_interval=4000",
            "--set", "train.eval_interval=4000"]  # fmt: skip
    proc = _start(*base, *long)

    def trained_a_step() -> bool:
        log = run / "metrics.jsonl"
        lines = log.read_text().splitlines() if log.is_file() else []
        return any(json.loads(ln)["type"] == "train" for ln in lines[:-1])  # whole lines

    _wait_for(proc, trained_a_step, "training step")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert not (run / "last.pt").exists() and not (run / "run.lock").exists()

    capsys.readouterr()
    assert main(base) == 0, capsys.readouterr().err
    assert load_checkpoint(run / "last.pt")["iteration"] == 2
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows if r["type"] == "train"] == [1, 2]  # started anew
    assert (run / "report" / "report.md").is_file()
    assert not list(tmp_path.glob("demo.old-*")), "nothing is moved aside"


def test_resume_starts_a_run_that_never_saved_and_refuses_another_runs_folder(synth_root, tmp_path):
    """`--resume` on a folder holding only the start files of the same run (the SLURM chain
    always passes --resume) starts it at 0; a folder with more, or another run's, is refused."""
    from gsag.engine.run_dir import not_started
    from gsag.errors import RunFolderError

    run = tmp_path / "run"
    cfg = tiny_config(synth_root, run, "train.save_interval=4", "train.eval_interval=4")
    train(cfg, quiet=True, stop_after=1)  # as if killed after iteration 1: no last.pt yet
    (run / "last.pt").unlink(missing_ok=True)
    (run / "best.pt").unlink(missing_ok=True)
    (run / "best.safetensors").unlink(missing_ok=True)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:1]) + "\n")
    assert not_started(run, cfg)
    other = tiny_config(synth_root, run, "train.save_interval=4", "optim.lr=0.5")
    assert not not_started(run, other)  # another run's start files: refused
    with pytest.raises(RunFolderError, match=r"no last\.pt to resume from"):
        train(other, quiet=True, resume=True)
    (run / "notes.txt").write_text("mine")
    assert not not_started(run, cfg)  # a file gsag did not write: never replaced
    (run / "notes.txt").unlink()

    result = train(cfg, quiet=True, resume=True)
    assert result["iteration"] == 4
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows if r["type"] == "train"] == [1, 2, 3, 4]
