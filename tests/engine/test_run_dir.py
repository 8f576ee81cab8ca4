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
    (run / "config.yaml").write_text("train: {}\n")  # what makes it a run folder, with the log
    with pytest.raises(RunFolderError) as err, open_run_dir(run):
        pass
    for fix in ("--resume", "--out", "--overwrite"):
        assert fix in str(err.value)
    (run / "last.pt").write_bytes(b"a checkpoint")  # --resume needs one (see the test below)
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


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != LOCK_NAME}


def test_resume_without_last_pt_refuses_and_overwrite_moves_the_run_aside(
    synth_root, tmp_path, capsys
):
    from gsag.cli import main
    from gsag.config import save_config

    run = tmp_path / "run"
    cfg = tiny_config(synth_root, run)
    train(cfg, quiet=True)
    (run / "last.pt").unlink()  # deleted to save space
    before = _snapshot(run)
    with pytest.raises(RunFolderError) as err:
        train(cfg, quiet=True, resume=True)
    message = str(err.value)
    assert "no last.pt to resume from" in message and "--overwrite" in message
    assert "best.pt" in message and "metrics.jsonl" in message
    assert _snapshot(run) == before  # nothing replaced, nothing cut

    config = tmp_path / "tiny.yaml"
    save_config(cfg, config)
    argv = ["train", str(config), "--out", str(run), "--resume", "--quiet"]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no last.pt to resume from" in lines[0]
    assert _snapshot(run) == before

    assert main([*argv, "--overwrite"]) == 0
    (aside,) = tmp_path.glob("run.old-*")
    assert _snapshot(aside) == before  # the old run, whole
    assert (run / "last.pt").is_file()


def test_overwrite_resolves_odd_paths_and_never_moves_the_working_directory(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("old\n")
    (run / "config.yaml").write_text("train: {}\n")
    monkeypatch.chdir(run)
    for target in (".", "sub/..", str(run)):  # all are the working directory
        with (
            pytest.raises(RunFolderError, match="holds the working directory"),
            open_run_dir(target, overwrite=True),
        ):
            pass
    monkeypatch.chdir(run / "sub")
    with (
        pytest.raises(RunFolderError, match="holds the working directory"),
        open_run_dir("..", overwrite=True),
    ):
        pass
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "metrics.jsonl", "sub"]
    assert list(tmp_path.iterdir()) == [run]

    monkeypatch.chdir(tmp_path)
    (run / "sub" / "last.pt").write_bytes(b"another run, below")
    with (
        pytest.raises(RunFolderError, match=r"holds another run, sub"),
        open_run_dir("run/sub/..", overwrite=True),
    ):
        pass
    assert (run / "sub" / "last.pt").is_file() and list(tmp_path.iterdir()) == [run]
    (run / "sub" / "last.pt").unlink()
    link = tmp_path / "link"
    link.symlink_to(run)
    for target in ("run/sub/..", "link"):  # the run folder itself, spelled otherwise
        (run / "metrics.jsonl").write_text(f"old {target}\n")
        (run / "config.yaml").write_text("train: {}\n")
        with open_run_dir(target, overwrite=True) as aside:
            assert aside.parent == tmp_path and aside.name.startswith("run.old-")
            assert (aside / "metrics.jsonl").read_text() == f"old {target}\n"
            assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]
        (run / "sub").mkdir()


def test_torn_last_line_of_metrics_jsonl_is_dropped_on_resume(synth_root, tmp_path, capsys):
    run = tmp_path / "run"
    cfg = tiny_config(synth_root, run, "train.eval_interval=4")
    train(cfg, quiet=True, stop_after=3)  # saved at 2, logged 1-3
    complete = (run / "metrics.jsonl").read_text()
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"type": "train", "iteration": 4, "lo')  # a kill or a full disk mid-append
    capsys.readouterr()
    train(cfg, quiet=True, resume=True)
    err = capsys.readouterr().err
    assert err.count("dropped the torn last line 4 of") == 1
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows if r["type"] == "train"] == [1, 2, 3, 4]
    kept = [json.loads(ln) for ln in complete.splitlines()][:2]  # iterations 1, 2: before the save
    assert rows[:2] == kept


def test_a_damaged_line_before_the_last_stops_the_resume_naming_it(synth_root, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(synth_root, run, "train.eval_interval=4")
    train(cfg, quiet=True, stop_after=3)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:10]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunFolderError, match=r"metrics.jsonl line 2 is not a JSON record"):
        train(cfg, quiet=True, resume=True)
    assert (run / "metrics.jsonl").read_text().splitlines() == lines  # left for the user


def test_a_folder_with_run_files_but_no_config_is_not_a_run_folder(tmp_path):
    """A best.pt someone put in a folder does not make it a run: training there is refused with
    or without --overwrite (which never moves it), and nothing moves."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "best.pt").write_bytes(b"a checkpoint")
    (folder / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with (
            pytest.raises(RunFolderError, match=r"holds best.pt but is not a gsag training run"),
            open_run_dir(folder, overwrite=overwrite),
        ):
            pass
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "notes.txt"]
    assert sorted(tmp_path.iterdir()) == [folder]
