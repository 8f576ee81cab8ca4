"""Atomic writes leave the old file intact when the writer fails."""

from __future__ import annotations

import pytest

from gsag.atomic import atomic_path, write_text


def test_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.png"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_write_json_writes_nan_as_null(tmp_path):
    import json
    import math

    from gsag.atomic import write_json

    data = {"a": math.nan, "b": [1.0, math.nan], "c": {"d": (math.nan, 2)}, "e": "x"}
    path = write_json(tmp_path / "r.json", data)
    text = path.read_text()
    assert "NaN" not in text and text.endswith("}\n")
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"d": [None, 2]}, "e": "x"}


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_new_files_get_the_umask_mode_like_a_plain_open(tmp_path, umask):
    import os
    import stat

    from gsag.atomic import write_json

    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as f:  # the reference: what open() gives
            f.write("x")
        written = write_json(tmp_path / "new" / "report.json", {"a": 1})
    finally:
        os.umask(old)
    expected = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert expected == 0o666 & ~umask
    assert stat.S_IMODE(written.stat().st_mode) == expected


def test_replacing_a_file_keeps_its_mode(tmp_path):
    import os
    import stat

    target = tmp_path / "shared.yaml"
    target.write_text("old")
    os.chmod(target, 0o640)
    write_text(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640 and target.read_text() == "new"


def test_write_json_writes_infinities_as_null(tmp_path):
    import json
    import math

    from gsag.atomic import write_json

    text = write_json(tmp_path / "r.json", {"lr": math.inf, "x": [-math.inf, 1.0]}).read_text()
    assert "Infinity" not in text
    assert json.loads(text) == {"lr": None, "x": [None, 1.0]}


def _temp_files_on_a_full_disk(monkeypatch, tmp_path):
    """Make every temporary file of `atomic_path` a link to /dev/full: writes fail with ENOSPC,
    exactly as on a full disk."""
    import os
    import tempfile

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    real = tempfile.mkstemp

    def full_mkstemp(**kwargs):
        fd, name = real(**kwargs)
        os.close(fd)
        os.unlink(name)
        os.symlink("/dev/full", name)
        return os.open(os.devnull, os.O_RDONLY), name

    monkeypatch.setattr("gsag.atomic.tempfile.mkstemp", full_mkstemp)


def test_a_full_disk_is_one_error_naming_the_file(tmp_path, monkeypatch):
    from gsag.errors import DiskFullError

    target = tmp_path / "a.txt"
    write_text(target, "old")
    _temp_files_on_a_full_disk(monkeypatch, tmp_path)
    with pytest.raises(DiskFullError, match=rf"disk full while writing {target}"):
        write_text(target, "new" * 10_000)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_full_disk_during_a_checkpoint_save_names_the_checkpoint(tmp_path, monkeypatch):
    import torch

    from gsag.engine.checkpoint import atomic_save
    from gsag.errors import DiskFullError, describe

    target = tmp_path / "last.pt"
    _temp_files_on_a_full_disk(monkeypatch, tmp_path)
    with pytest.raises(DiskFullError) as err:
        atomic_save({"model": {"w": torch.zeros(100_000)}}, target)
    message, code = describe(err.value)
    assert message == f"disk full while writing {target}; free some space and rerun"
    assert code == 1 and not target.exists() and list(tmp_path.iterdir()) == []
