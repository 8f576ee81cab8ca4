"""Run folders that cannot be lost: one process at a time, no silent replacing, no temp litter.

`open_run_dir` is what training calls before it writes anything:

- it takes `RUN_DIR/run.lock` (created with O_EXCL; it holds pid, host and start time). A second
  process on the same folder fails at once, naming the holder. A lock left by a process that is
  no longer alive on this host is taken over.
- a folder that already holds a run (metrics.jsonl, checkpoints, TensorBoard events) is only
  used with `resume=True` (and then only when it has a last.pt to resume from), or with
  `overwrite=True`, which moves the old run aside to `RUN_DIR.old-YYYYmmdd-HHMMSS` (nothing is
  deleted). The folder is resolved first (`.`, `X/..`, links), and a folder that holds the
  working directory is never moved aside.
- temporary files of killed atomic writes are removed.

The lock is released when the context exits, also on exceptions.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from gsag.atomic import remove_temp_files
from gsag.errors import RunFolderError

LOCK_NAME = "run.lock"
RUN_FILES = ("metrics.jsonl", "last.pt", "best.pt", "best.safetensors")
STALE_EMPTY_LOCK_S = 30.0  # a lock file still empty after this long was left by a killed start


def holds_run(run_dir: str | os.PathLike) -> bool:
    """Whether `run_dir` holds (part of) a training run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return False
    return any((run_dir / n).exists() for n in RUN_FILES) or any(
        run_dir.glob("events.out.tfevents.*")
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _read_lock(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _is_stale(path: Path, holder: dict | None) -> bool:
    if holder is None:  # empty or garbled: a process killed between create and write
        try:
            return time.time() - path.stat().st_mtime > STALE_EMPTY_LOCK_S
        except FileNotFoundError:
            return True
    return holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", -1)))


def acquire_lock(run_dir: str | os.PathLike) -> Path:
    """Create `run_dir/run.lock` for this process; raise `RunFolderError` if another holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            if _is_stale(path, holder):
                path.unlink(missing_ok=True)  # taken over; O_EXCL settles a race for it
                continue
            who = f"pid {holder['pid']} on {holder['host']}" if holder else "another process"
            since = time.strftime("%H:%M:%S", time.localtime(holder["started"])) if holder else "?"
            raise RunFolderError(
                f"run folder {run_dir} is in use by {who} (since {since}); wait for it to "
                f"finish, stop it, or use another --out"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record))
        return path
    raise RunFolderError(f"could not take the lock {path}; remove it if no gsag run is using it")


def release_lock(path: Path) -> None:
    """Remove the lock if this process still holds it."""
    holder = _read_lock(path)
    if holder is not None and holder.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def aside_path(folder: Path) -> Path:
    """A new sibling `FOLDER.old-<time>` (with `-2`, `-3`, ... when taken) to move `folder`'s
    contents to; nothing is created."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = folder.with_name(f"{folder.name}.old-{stamp}")
    n = 1
    while os.path.lexists(aside):
        n += 1
        aside = folder.with_name(f"{folder.name}.old-{stamp}-{n}")
    return aside


def move_aside(run_dir: Path, keep: Sequence[str | os.PathLike] = ()) -> Path:
    """Move everything in `run_dir` to a new `RUN_DIR.old-<time>` folder, except the lock and
    the entries in `keep` (e.g. a dataset generated inside the run folder)."""
    kept = {Path(k).resolve() for k in keep}
    aside = aside_path(run_dir)
    aside.mkdir(parents=True)
    for entry in run_dir.iterdir():
        if entry.name != LOCK_NAME and entry.resolve() not in kept:
            entry.rename(aside / entry.name)
    return aside


def refuse_message(run_dir: Path) -> str:
    """Why a fresh run may not start in `run_dir`, and the three ways forward."""
    return (
        f"run folder {run_dir} already holds a run; continue it with --resume, choose a new "
        f"--out, or pass --overwrite to move the old run to {aside_name(run_dir)}"
    )


def aside_name(run_dir: Path) -> str:
    """Where `--overwrite` moves the run of `run_dir` (a sibling; `.` and `..` resolved)."""
    return f"{Path(os.path.abspath(run_dir)).name}.old-<time>"


def no_resume_message(run_dir: Path) -> str:
    """Why `--resume` may not go on in `run_dir`: it holds a run but no last.pt."""
    present = ", ".join(sorted(p.name for p in run_dir.iterdir() if _is_run_file(p)))
    return (
        f"run folder {run_dir} holds a run ({present}) but no last.pt to resume from; "
        f"starting again would replace it. Choose a new --out, or pass --overwrite to move "
        f"it to {aside_name(run_dir)} and start anew"
    )


def _is_run_file(path: Path) -> bool:
    return path.name in RUN_FILES or path.name.startswith("events.out.tfevents.")


def is_run_folder(folder: str | os.PathLike) -> bool:
    """Whether `folder` is a training run folder (`gsag train`, `gsag demo`, a cell of `gsag
    ablate`): the config.yaml every run writes first, and one of its run files."""
    return (Path(folder) / "config.yaml").is_file() and holds_run(folder)


#: How deep `check_movable` looks into a folder, and how many folders it looks at at most.
MOVABLE_DEPTH = 6
MOVABLE_FOLDERS = 2000


def check_movable(
    run_dir: Path,
    ours: Callable[[Path], bool] = is_run_folder,
    what: str = "a gsag training run folder (config.yaml and metrics.jsonl, last.pt or best.pt)",
    keep: Sequence[str | os.PathLike] = (),
) -> Path:
    """`run_dir` resolved (links, `.`, `..`); refuses a folder that `--overwrite` must not move
    aside: one that is not an output of the command (`ours`, described by `what`), whatever
    else it holds; one that holds the working directory; one that holds other runs or a dataset
    in its subfolders (`MOVABLE_DEPTH` levels down, except the entries in `keep`)."""
    real = run_dir.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise RunFolderError(
            f"run folder {run_dir} is {real}, which holds the working directory {cwd}; "
            "--overwrite cannot move it aside. Choose a new --out inside it, e.g. runs/NAME"
        )
    if not ours(real):
        raise RunFolderError(
            f"{run_dir} is not {what}; --overwrite only moves aside an earlier output of this "
            "command, so nothing there is touched. Choose a new or empty folder"
        )
    inside = _foreign_inside(real, {Path(k).resolve() for k in keep})
    if inside is not None:
        raise RunFolderError(
            f"{run_dir} holds {inside}; --overwrite would move it aside too. Move it out first, "
            "or choose a new folder"
        )
    return real


def _foreign_inside(real: Path, kept: set[Path]) -> str | None:
    """What in the subfolders of `real` (down to `MOVABLE_DEPTH`) no output of one command holds:
    another run, a dataset, or more folders than a run ever has; None when nothing."""
    from gsag.data.layout import dataset_at

    def subfolders(folder: Path) -> list[Path]:  # links are moved as links: their targets stay
        return [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and p not in kept]

    level, seen = subfolders(real), 0
    for _ in range(MOVABLE_DEPTH):
        below = []
        for folder in level:
            seen += 1
            if seen > MOVABLE_FOLDERS:
                return f"more than {MOVABLE_FOLDERS} folders, more than a run ever writes"
            if holds_run(folder):
                return f"another run, {folder.relative_to(real)}"
            layout = dataset_at(folder)
            if layout is not None:
                return f"a {layout} dataset, {folder.relative_to(real)}"
            below += subfolders(folder)
        level = below
    return None


def resumable(run_dir: str | os.PathLike) -> bool:
    """Whether `run_dir` has a last.pt that `--resume` goes on from."""
    return (Path(run_dir) / "last.pt").is_file()


def check_run_dir(
    run_dir: Path,
    resume: bool,
    overwrite: bool,
    keep: Sequence[str | os.PathLike] = (),
    config: str | None = None,
) -> bool:
    """Whether the run in `run_dir` must be moved aside first; raises `RunFolderError` when the
    folder may not be used as asked (`check_movable`; `keep`: see `move_aside`), or when a
    fresh run would replace a config.yaml that differs from its own (`config`, the text it
    writes: `gsag.config.config_text`). Writes nothing."""
    if resume and resumable(run_dir):
        return False
    if not holds_run(run_dir):
        _check_own_config(run_dir, config)
        return False
    if not is_run_folder(run_dir):
        present = ", ".join(sorted(p.name for p in run_dir.iterdir() if _is_run_file(p)))
        raise RunFolderError(
            f"{run_dir} holds {present} but is not a gsag training run folder (no config.yaml); "
            "a run there would replace them and --overwrite never moves such a folder. Choose "
            "a new --out"
        )
    if not overwrite:
        raise RunFolderError(no_resume_message(run_dir) if resume else refuse_message(run_dir))
    check_movable(run_dir, keep=keep)
    return True


def _check_own_config(run_dir: Path, config: str | None) -> None:
    """Refuse a folder holding no run whose config.yaml is not `config` (a user's own file,
    or the start of a run with other settings): the run writes its config.yaml there first."""
    path = run_dir / "config.yaml"
    if config is None or not path.is_file():
        return
    try:
        same = path.read_text(encoding="utf-8") == config
    except (OSError, UnicodeDecodeError):
        same = False
    if not same:
        raise RunFolderError(
            f"{path} is not this run's config (a file of yours, or the start of a run with "
            "other settings) and the run would replace it with its own; choose a new --out, "
            "or move that config.yaml elsewhere"
        )


@contextmanager
def open_run_dir(
    run_dir: str | os.PathLike,
    resume: bool = False,
    overwrite: bool = False,
    keep: Sequence[str | os.PathLike] = (),
    config: str | None = None,
) -> Iterator[Path | None]:
    """Lock `run_dir` for this run and make it safe to write (see the module docstring).

    `keep`: entries of `run_dir` that `overwrite` leaves in place (see `move_aside`); `config`:
    the config.yaml the run writes (see `check_run_dir`).

    Yields:
        The folder the old run was moved to (with `overwrite`), else None.
    """
    run_dir = Path(run_dir).resolve()  # `X/..` and links: the folder itself, before any move
    lock = acquire_lock(run_dir)
    try:
        aside = None
        if check_run_dir(run_dir, resume, overwrite, keep, config):
            aside = move_aside(run_dir, keep)
        remove_temp_files(run_dir)
        yield aside
    finally:
        release_lock(lock)


@contextmanager
def claim_run_dir(
    run_dir: str | os.PathLike,
    info,
    resume: bool = False,
    overwrite: bool = False,
    keep: Sequence[str | os.PathLike] = (),
    config: str | None = None,
) -> Iterator[None]:
    """`open_run_dir` on rank 0 only (`info`: a `distributed.DistInfo`); every rank fails
    together, with rank 0's message, when rank 0 cannot have the folder, so no rank waits
    forever."""
    from contextlib import ExitStack

    from gsag.engine import distributed

    with ExitStack() as stack:
        failure: RunFolderError | None = None
        if info.is_main:
            try:
                stack.enter_context(open_run_dir(run_dir, resume, overwrite, keep, config))
            except RunFolderError as e:
                failure = e
        # every rank raises rank 0's message: whichever rank torchrun lets print, it says why
        reason = distributed.from_rank0(None if failure is None else str(failure))
        if reason is not None:
            raise failure or RunFolderError(reason)
        yield
