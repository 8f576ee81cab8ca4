"""Atomic file writes: write a temporary file beside the target, then `os.replace` it.

A run killed mid-write leaves the previous file (or none), never a half-written one. Every
module that writes results, checkpoints, masks or reports goes through here; `write_json`
writes standard JSON (NaN and infinities as null). The new file gets the mode a plain `open`
would give it: the old file's, else 0666 minus the umask.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in `path`'s folder; on success it replaces `path`.

    The temporary name keeps `path`'s suffix, so writers that pick a format from the extension
    (PIL, matplotlib) behave as for `path`. On any error the temporary file is removed; a full
    disk becomes a `DiskFullError` naming `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _new_file_mode(path))  # mkstemp made it 0600
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        if not _is_disk_full(e):
            raise
        from gsag.errors import DiskFullError

        raise DiskFullError(f"disk full while writing {path}; free some space and rerun") from e
    finally:
        tmp.unlink(missing_ok=True)


# what torch's C++ stream writer says when a write fails (a full disk, mostly)
_STREAM_ERRORS = ("file write failed", "iostream error", "No space left on device")


def _is_disk_full(e: BaseException) -> bool:
    if isinstance(e, OSError) and e.errno is not None:
        return e.errno == errno.ENOSPC
    return any(text in str(e) for text in _STREAM_ERRORS)


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (threads may be writing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode(path: Path) -> int:
    """The mode `open(path, "w")` would leave: the existing file's, else 0666 minus the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


# `.{name}.{8 random characters}{suffix}`, as made by `tempfile.mkstemp` in `atomic_path`
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.[^.]*)?$")


def is_temp_name(name: str) -> bool:
    """Whether `name` looks like a temporary file left by a killed `atomic_path` write."""
    match = _TEMP_NAME.match(name)
    return match is not None and Path(match["name"]).suffix == (match["suffix"] or "")


def remove_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of killed atomic writes directly inside `folder`.

    Only call this while no other process writes into `folder` (e.g. holding its run lock).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = [p for p in folder.iterdir() if p.is_file() and is_temp_name(p.name)]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically and return the path."""
    return write_bytes(path, text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float (NaN, inf; in nested dicts, lists and tuples too)
    replaced by None, so that `json.dumps` writes standard JSON (null), not `NaN`/`Infinity`."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write `data` as indented standard JSON (NaN, inf -> null, see `json_safe`) atomically."""
    return write_text(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")
