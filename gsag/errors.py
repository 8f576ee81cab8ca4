"""Expected errors and the one line `gsag` prints for each, with its exit code.

Exit codes (documented in README.md):

    0  success
    1  the run failed (diverged training, out of memory, disk full, a failed check)
    2  bad input (config, data, checkpoint, missing file, unavailable device, option values)
    130  interrupted (Ctrl-C)
    143  terminated (SIGTERM, what batch schedulers send before they kill a job)

Anything not recognised here is a bug: `gsag.cli.main` lets its traceback through.
"""

from __future__ import annotations

import errno
import re

USAGE = 2
RUN_FAILED = 1
INTERRUPTED = 130
TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended


class GsagError(Exception):
    """An expected failure; its message is the whole story. `exit_code` is what `gsag` returns."""

    exit_code = RUN_FAILED


class UsageError(GsagError):
    """Bad input from the user: a wrong option value, a device that is not there."""

    exit_code = USAGE


class OptionError(UsageError, ValueError):
    """An option value that cannot work (a scale <= 0, a stride of 0, colliding output names)."""


class CheckpointError(UsageError, ValueError):
    """A checkpoint or weights file that is missing, damaged, foreign or for another model."""


class RunFolderError(UsageError):
    """A run folder in use by another process, or holding a run that would be replaced."""


class ExportError(GsagError, RuntimeError):
    """A model that could not be exported, saved as a program or matched by its export."""


class DiskFullError(GsagError, OSError):
    """The disk filled up while a file was being written."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (`gsag.cli.main` raises it from its signal handler). A KeyboardInterrupt,
    so that it unwinds exactly as Ctrl-C does: every `finally` runs (the run lock is released, a
    half-written checkpoint is removed), and DataLoader workers end quietly."""


class ConfigError(ValueError):
    """A config file or override is invalid; the message says where and how to fix it."""


# "Caught BadSampleError in DataLoader worker process 0.\nOriginal Traceback ...\n
#  gsag.data.errors.BadSampleError: path: problem"
_WORKER = re.compile(r"^Caught (\w+) in DataLoader worker process \d+")
_LAST_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+): (.*)$")

# exception class name -> exit code, for errors whose messages already name the file and fix
_EXPECTED_NAMES = {
    "ConfigError": USAGE,
    "DataError": USAGE,
    "BadSampleError": USAGE,
    "DownloadError": USAGE,
    "CheckpointError": USAGE,
    "FileNotFoundError": USAGE,
    "TrainingDiverged": RUN_FAILED,
}


def unwrap_worker_error(exc: BaseException) -> tuple[str, str] | None:
    """(original class name, original message) of an error re-raised from a DataLoader worker."""
    text = str(exc)
    match = _WORKER.match(text)
    if not match:
        return None
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    last = _LAST_LINE.match(lines[-1]) if lines else None
    message = last.group(2) if last and last.group(1) == match.group(1) else lines[-1]
    return match.group(1), message


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    text = str(exc)
    return "No space left on device" in text or "file write failed" in text


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in str(exc) or "out of memory" in str(exc)
    )


#: OSErrors that say a path cannot be used as asked (not a failing disk): bad input, exit 2.
_PATH_ERRNOS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder",
    errno.EEXIST: "already exists (perhaps as a link to nothing)",
    errno.ELOOP: "a link that leads back to itself",
    errno.ENAMETOOLONG: "the name is too long",
}


def _path_error(exc: BaseException) -> str | None:
    """The one line for an OSError about a path the user gave (a folder that cannot be made
    under /sys, a link loop, a read-only mount ...), or None for any other error."""
    if not isinstance(exc, OSError) or exc.errno not in _PATH_ERRNOS:
        return None
    where = exc.filename if exc.filename is not None else "a path"
    return (
        f"cannot use {where}: {_PATH_ERRNOS[exc.errno]} ({exc.strerror or exc}); choose "
        "another path or fix its permissions"
    )


def describe(exc: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit code for an expected error; None for a bug."""
    if isinstance(exc, Terminated):
        return (
            "terminated (SIGTERM); a training run keeps its last checkpoint: "
            "gsag train CONFIG --resume (or gsag demo --resume) continues it",
            TERMINATED,
        )
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", INTERRUPTED
    if isinstance(exc, GsagError):
        return str(exc), exc.exit_code
    for cls in type(exc).__mro__:
        if cls.__name__ in _EXPECTED_NAMES:
            prefix = "training stopped: " if cls.__name__ == "TrainingDiverged" else ""
            return prefix + str(exc), _EXPECTED_NAMES[cls.__name__]
    wrapped = unwrap_worker_error(exc)
    if wrapped is not None and wrapped[0] in _EXPECTED_NAMES:
        return f"{wrapped[1]} (in a data loader worker)", _EXPECTED_NAMES[wrapped[0]]
    if _is_disk_full(exc):
        where = getattr(exc, "filename", None)
        return f"disk full while writing {where or 'a file'}; free some space and rerun", 1
    path_problem = _path_error(exc)
    if path_problem is not None:
        return path_problem, USAGE
    if _is_out_of_memory(exc):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"out of memory ({first}); lower train.batch_size or the image size, evaluate "
            "large images with `gsag eval --mode slide`, or run on a device with more memory",
            RUN_FAILED,
        )
    return None


def one_line(message: str) -> str:
    """Collapse a message onto one line."""
    return " ".join(part.strip() for part in message.strip().splitlines() if part.strip())


def check_names(values: list[str], valid: list[str], option: str) -> None:
    """Raise `UsageError` for the first of `values` not in `valid`, with the nearest match."""
    import difflib

    for value in values:
        if value not in valid:
            near = difflib.get_close_matches(value, valid, n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            raise UsageError(f"{option} {value!r} is unknown; {hint}valid: {', '.join(valid)}")
