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
