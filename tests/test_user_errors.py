"""Issue 37's traceback classes: each user error is one `error: ...` line on stderr (nothing on
stdout) with the exit code of README's table, never a traceback."""

from __future__ import annotations

import errno
import json
import os
import socket

import pytest

from gsag.cli import main
from gsag.config import ConfigError, save_config
from gsag.errors import RUN_FAILED, USAGE, describe
from tests.helpers.configs import tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread per test


def one_line(capsys, *argv) -> tuple[int, str]:
    """Exit code and the one stderr line of `gsag ARGV`; stdout must stay empty."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and out.strip() == "", out
    return code, lines[0]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["train"], "config is required (positional or --config)"),
        (["eval"], "checkpoint is required (positional or --checkpoint)"),
        (["predict", "--input", "x", "--out", "y"], "checkpoint is required"),
    ],
)
def test_usage_errors_found_after_parsing_exit_2(capsys, argv, fragment):
    code, line = one_line(capsys, *argv)
    assert code == USAGE and fragment in line


def test_data_prepare_errors_take_the_one_error_path(capsys, tmp_path):
    code, line = one_line(capsys, "data", "prepare-voc", "--out", tmp_path / "voc")
    assert code == USAGE and "give --voc DIR and --sbd DIR, or --download" in line
    code, line = one_line(capsys, "data", "prepare-ade20k", "--out", tmp_path / "ade")
    assert code == USAGE and f"no ADEChallengeData2016 in {tmp_path / 'ade'}" in line


@pytest.mark.parametrize("command", ["prepare-ade20k", "prepare-cityscapes"])
def test_an_archive_that_is_not_one_is_one_line(capsys, tmp_path, command):
    fake = tmp_path / "ADEChallengeData2016.zip"
    fake.write_text("this is a text file, not a zip\n")
    option = "--zip" if command == "prepare-ade20k" else "--leftimg"
    argv = ["data", command, "--out", tmp_path / "out", option, fake, "--quiet"]
    code, line = one_line(capsys, *argv)
    assert code == USAGE and f"{fake} is not a readable zip or tar archive" in line
    assert "download it again" in line


def _lock(folder, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.lock").write_text(text)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[1, 2]", "has a lock file gsag cannot read"),
        ('{"pid": "abc", "host": "HOST", "started": 0}', "has a lock file gsag cannot read"),
        ('{"pid": PID, "host": "HOST"}', "has a lock file gsag cannot read"),
        ('{"pid": PID, "host": "HOST", "started": 1e400}', "has a lock file gsag cannot read"),
        ('{"pid": PID, "host": "HOST", "started": 0}', "is in use by pid"),
    ],
)
def test_a_lock_file_with_unexpected_content_is_one_line(
    capsys, synth_root, tmp_path, content, fragment
):
    config, run = tmp_path / "tiny.yaml", tmp_path / "run"
    save_config(tiny_config(synth_root, run), config)
    text = content.replace("PID", str(os.getpid())).replace("HOST", socket.gethostname())
    _lock(run, text)  # written just now: a start in progress may be writing it, so not stale
    code, line = one_line(capsys, "train", config, "--quiet")
    assert code == USAGE and fragment in line and str(run) in line
    assert (run / "run.lock").read_text() == text  # left as it was


def test_a_lock_that_is_a_folder_is_one_line(capsys, synth_root, tmp_path):
    config, run = tmp_path / "tiny.yaml", tmp_path / "run"
    save_config(tiny_config(synth_root, run), config)
    (run / "run.lock").mkdir(parents=True)
    code, line = one_line(capsys, "train", config, "--quiet")
    assert code == USAGE and "is not a lock file gsag wrote (it is a folder" in line


@pytest.mark.parametrize(
    ("code", "name"),
    [(errno.EPERM, "EPERM"), (errno.EACCES, "EACCES"), (errno.ELOOP, "ELOOP"),
     (errno.ENOTDIR, "ENOTDIR"), (errno.EROFS, "EROFS"), (errno.ENAMETOOLONG, "ENAMETOOLONG")],
)  # fmt: skip
def test_an_os_error_on_a_given_path_is_bad_input(code, name):
    described = describe(OSError(code, os.strerror(code), "/somewhere/out"))
    assert described is not None, name
    line, exit_code = described
    assert exit_code == USAGE and "cannot use /somewhere/out" in line and "\n" not in line


def test_other_os_errors_are_still_bugs():
    assert describe(OSError(errno.EBADF, "bad file descriptor")) is None


@pytest.mark.skipif(
    not os.path.isdir("/sys/kernel") or not os.access("/sys/kernel", os.W_OK),
    reason="needs a /sys that os.access calls writable (root in a container)",
)
def test_an_out_folder_that_cannot_be_made_although_access_says_yes(capsys, synth_root, tmp_path):
    config = tmp_path / "tiny.yaml"
    save_config(tiny_config(synth_root, tmp_path / "unused"), config)
    code, line = one_line(capsys, "train", config, "--out", "/sys/kernel/gsag-run", "--quiet")
    assert code == USAGE and "--out /sys/kernel/gsag-run: nothing can be created" in line
    assert not os.path.exists("/sys/kernel/gsag-run")


def test_a_name_too_long_for_the_file_system_is_refused_before_work(capsys, synth_root, tmp_path):
    config = tmp_path / "tiny.yaml"
    save_config(tiny_config(synth_root, tmp_path / "unused"), config)
    out = tmp_path / ("x" * 300)
    code, line = one_line(capsys, "train", config, "--out", out, "--quiet")
    assert code == USAGE and "longer than the 255 bytes a name may have" in line


@pytest.mark.parametrize("kind", ["loop", "dangling", "below a file"])
def test_save_into_a_path_that_cannot_be_a_folder_is_one_line(
    capsys, evaluated_run, tmp_path, kind
):
    target = tmp_path / "model"
    if kind == "loop":
        target.symlink_to(tmp_path / "model")
    elif kind == "dangling":
        target.symlink_to(tmp_path / "nowhere" / "gone")
    else:
        (tmp_path / "file").write_text("x")
        target = tmp_path / "file" / "model"
    code, line = one_line(capsys, "save", evaluated_run, target)
    assert code == USAGE and f"FOLDER {target}" in line


@pytest.mark.parametrize("backbone", ["mixer_s16_224", "levit_128s"])
def test_a_backbone_with_a_fixed_input_size_is_refused_at_build(backbone):
    from gsag.engine.checks import check_model_config

    cfg = tiny_config("unused", "unused", f"model.backbone={backbone}")
    with pytest.raises(
        ConfigError, match=rf"model\.backbone is '{backbone}', which takes only 224x224"
    ):
        check_model_config(cfg)


def test_triton_attention_on_cpu_is_refused_before_any_work(capsys, synth_root, tmp_path):
    config, run = tmp_path / "tiny.yaml", tmp_path / "run"
    save_config(tiny_config(synth_root, run, "model.kwargs.attention_impl=triton"), config)
    code, line = one_line(capsys, "train", config, "--quiet", "--device", "cpu")
    assert code == USAGE and "model.kwargs.attention_impl is 'triton'" in line
    assert not run.exists(), "work started before the check"


def test_pretrained_weights_offline_are_one_line_and_a_resume_needs_none(
    capsys, synth_root, tmp_path, offline_cache
):
    config, run = tmp_path / "tiny.yaml", tmp_path / "run"
    save_config(tiny_config(synth_root, run, "model.pretrained=true"), config)
    code, line = one_line(capsys, "train", config, "--quiet")
    assert code == RUN_FAILED and "could not download pretrained weights" in line
    assert "model.pretrained=false" in line

    # a run with last.pt resumes offline although its config asks for pretrained weights
    from gsag.engine.train import train

    train(tiny_config(synth_root, run, "train.iters=2"), quiet=True, overwrite=True)
    capsys.readouterr()
    assert main(["train", str(config), "--resume", "--quiet"]) == 0, capsys.readouterr().err


def test_the_stored_lock_record_is_json_naming_this_process(tmp_path):
    from gsag.engine.run_dir import acquire_lock, release_lock

    lock = acquire_lock(tmp_path)
    record = json.loads(lock.read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    release_lock(lock)
    assert not lock.exists()
