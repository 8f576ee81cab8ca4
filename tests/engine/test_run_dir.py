"""Run folders: the lock, refusing to replace a run, --overwrite, temp files, TensorBoard steps."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from gsag.atomic import atomic_path
from gsag.engine.run_dir import LOCK_NAME, acquire_lock, open_run_dir, release_lock
from gsag.engine.train import train
from gsag.errors import RunFolderError
from tests.helpers.configs import tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread per test


def _write_lock(folder, pid):
    folder.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "host": socket.gethostname(), "started": 0.0}
    (folder / LOCK_NAME).write_text(json.dumps(record))


def test_second_holder_fails_at_once_naming_folder_and_pid(tmp_path):
    lock = acquire_lock(tmp_path / "run")
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    with pytest.raises(RunFolderError, match=rf"{tmp_path / 'run'} is in use by pid {os.getpid()}"):
        acquire_lock(tmp_path / "run")
    release_lock(lock)
    assert not lock.exists()
    release_lock(acquire_lock(tmp_path / "run"))  # free again


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(tmp_path, dead.pid)
    lock = acquire_lock(tmp_path)
    assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_cli_train_refuses_a_folder_locked_by_a_live_process(synth_root, tmp_path, capsys):
    from gsag.cli import main
    from gsag.config import save_config

    config = tmp_path / "tiny.yaml"
    save_config(tiny_config(synth_root, tmp_path / "unused"), config)
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(run, holder.pid)
        assert main(["train", str(config), "--run-dir", str(run), "--quiet"]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.strip()
    assert err == err.splitlines()[0] and err.startswith("error: ")
    assert f"run folder {run} is in use by pid {holder.pid}" in err
    assert not (run / "metrics.jsonl").exists()


def test_lock_is_released_on_exceptions(tmp_path):
    with pytest.raises(ZeroDivisionError), open_run_dir(tmp_path):
        assert (tmp_path / LOCK_NAME).is_file()
        1 / 0  # noqa: B018
    assert not (tmp_path / LOCK_NAME).exists()


def test_existing_run_is_refused_or_moved_aside_never_deleted(tmp_path):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("old\n")
    with pytest.raises(RunFolderError) as err, open_run_dir(run):
        pass
    for fix in ("--resume", "--out", "--overwrite"):
        assert fix in str(err.value)
    with open_run_dir(run, resume=True) as aside:
        assert aside is None and (run / "metrics.jsonl").read_text() == "old\n"
    with open_run_dir(run, overwrite=True, keep=[run / "data"]) as aside:
        assert aside.name.startswith("run.old-") and aside.parent == tmp_path
        assert (aside / "metrics.jsonl").read_text() == "old\n"
        assert sorted(p.name for p in run.iterdir()) == ["data", LOCK_NAME]


def test_temp_files_of_killed_writes_are_removed_on_the_next_start(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "last.pt") as tmp:
        tmp.write_bytes(b"half")
        left = tmp.with_name(tmp.name + ".keep")  # what a kill -9 leaves (no cleanup runs)
        os.link(tmp, left)
        raise KeyboardInterrupt
    killed = left.rename(tmp)
    (tmp_path / "notes.txt").write_text("mine")
    with open_run_dir(tmp_path, resume=True):
        pass
    assert not killed.exists() and (tmp_path / "notes.txt").is_file()


def test_tensorboard_has_no_duplicate_steps_after_a_resume(synth_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    cfg = tiny_config(synth_root, run, "train.save_interval=2", "train.eval_interval=4")
    train(cfg, quiet=True, stop_after=3)  # logged step 3, saved at 2: like a kill after step 3
    train(cfg, quiet=True, resume=True)
    events = EventAccumulator(str(run), purge_orphaned_data=True)
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]


def test_tensorboard_write_errors_warn_and_never_raise(tmp_path):
    from gsag.engine.tb import open_writer

    class Full:
        def write(self, data):
            raise OSError(28, "No space left on device")

        def flush(self):
            raise OSError(28, "No space left on device")

        def close(self):
            pass

    writer = open_writer(tmp_path)
    async_writer = writer._writer._get_file_writer().event_writer._async_writer
    async_writer._writer._writer = Full()  # the record writer's file
    with pytest.warns(UserWarning, match="TensorBoard logging .* stopped"):
        for step in range(3):
            writer.add_scalar("x", 1.0, step)
            writer.flush()
    writer.close()
    assert async_writer._worker.exception is None  # the thread did not die with a traceback
