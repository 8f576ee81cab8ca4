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
import math
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from gsag.atomic import remove_temp_files
from gsag.errors import RunFolderError

if TYPE_CHECKING:
    from gsag.config import Config

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
    """The holder a lock file names ({"pid": int, "host": str, "started": float}); None when it
    cannot be read or holds anything else (empty, cut short, edited, another program's file)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(holder, dict):
        return None
    pid, host, started = holder.get("pid"), holder.get("host"), holder.get("started")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    if not isinstance(host, str) or not isinstance(started, (int, float)):
        return None
    if isinstance(started, bool) or not math.isfinite(started):
        return None
    return {"pid": pid, "host": host, "started": float(started)}


def _is_stale(path: Path, holder: dict | None) -> bool:
    if holder is None:  # empty or garbled: a process killed between create and write
        try:
            return time.time() - path.stat().st_mtime > STALE_EMPTY_LOCK_S
        except FileNotFoundError:
            return True
    return holder["host"] == socket.gethostname() and not _alive(holder["pid"])


def _since(started: float) -> str:
    try:
        return time.strftime("%H:%M:%S", time.localtime(started))
    except (OverflowError, OSError, ValueError):  # a time no clock shows
        return "?"


def acquire_lock(run_dir: str | os.PathLike) -> Path:
    """Create `run_dir/run.lock` for this process; raise `RunFolderError` if another holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    for _ in range(3):
        if path.is_symlink() or (os.path.lexists(path) and not path.is_file()):
            raise RunFolderError(
                f"{path} is not a lock file gsag wrote (it is a folder, a link or another "
                "special file); remove it if no gsag run is using the folder, or use another --out"
            )
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            if _is_stale(path, holder):
                path.unlink(missing_ok=True)  # taken over; O_EXCL settles a race for it
                continue
            if holder is None:
                raise RunFolderError(
                    f"run folder {run_dir} has a lock file gsag cannot read ({path}, written "
                    f"less than {STALE_EMPTY_LOCK_S:.0f} s ago), perhaps by a run starting now; "
                    f"wait and retry (it is taken over after {STALE_EMPTY_LOCK_S:.0f} s), "
                    "remove it if no gsag run is using the folder, or use another --out"
                ) from None
            raise RunFolderError(
                f"run folder {run_dir} is in use by pid {holder['pid']} on {holder['host']} "
                f"(since {_since(holder['started'])}); wait for it to finish, stop it, or use "
                "another --out"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record))
        return path
    raise RunFolderError(f"could not take the lock {path}; remove it if no gsag run is using it")


def release_lock(path: Path) -> None:
    """Remove the lock if this process still holds it."""
    holder = _read_lock(path)
    if holder is not None and holder["pid"] == os.getpid():
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


def not_started(run_dir: Path, config: Config, keep: Sequence[str | os.PathLike] = ()) -> bool:
    """Whether `run_dir` holds a run of `config` that stopped before its first last.pt (killed,
    Ctrl-C or SIGTERM before it, or during its write), and nothing else: its config.yaml (the
    same run: no key of the resume rules changed), metrics.jsonl, metrics.csv and TensorBoard
    events up to its first `train.save_interval`, trackers.json, class_counts.json, the best.pt
    of an evaluation before then, temporary files of killed writes, the lock and `keep`.
    Starting that run again from iteration 0 loses nothing it could have resumed from. Writes
    nothing."""
    import yaml

    from gsag.atomic import is_temp_name
    from gsag.data.counts import COUNTS_FILE
    from gsag.engine.loggers import TRACKERS_FILE
    from gsag.engine.run_state import config_changes, refused_changes

    if resumable(run_dir) or not (run_dir / "config.yaml").is_file():
        return False
    try:
        old = yaml.safe_load((run_dir / "config.yaml").read_text())
        first_save = int(old["train"]["save_interval"])
    except (OSError, ValueError, TypeError, KeyError, RecursionError, yaml.YAMLError):
        return False
    kept = {Path(k).resolve() for k in keep}
    # what a run writes when it starts: its config, logs, tracker run ids, counted class weights
    starts = (
        "config.yaml",
        "metrics.jsonl",
        LOCK_NAME,
        "metrics.csv",
        TRACKERS_FILE,
        COUNTS_FILE,
    )
    for entry in run_dir.iterdir():
        name = entry.name
        if name in starts or is_temp_name(name) or entry.resolve() in kept:
            continue
        if name.startswith("events.out.tfevents.") and entry.is_file():
            continue
        if name == "best.pt" and _iteration(entry) <= first_save:
            continue
        return False
    if not _logged_up_to(run_dir / "metrics.jsonl", first_save):
        return False
    changes = config_changes(old, config)
    changes.pop("output.run_dir", None)
    return not refused_changes(changes)


def _iteration(checkpoint: Path) -> float:
    """The iteration a checkpoint was saved at (inf when it cannot be read)."""
    from gsag.engine.checkpoint import load_checkpoint

    try:
        return int(load_checkpoint(checkpoint)["iteration"])
    except Exception:  # CheckpointError, OSError: not a checkpoint of this run
        return math.inf


def _logged_up_to(log: Path, last: int) -> bool:
    """Whether metrics.jsonl (absent: yes) logs no iteration past `last`."""
    from gsag.engine.run_log import read_metrics_log, record_iteration

    if not log.exists():
        return True
    try:
        train, evals = read_metrics_log(log)
    except (OSError, ValueError, RecursionError):
        return False
    return all(record_iteration(r) <= last for r in [*train, *evals])


def check_run_dir(
    run_dir: Path,
    resume: bool,
    overwrite: bool,
    keep: Sequence[str | os.PathLike] = (),
    config: Config | None = None,
) -> bool:
    """Whether the run in `run_dir` must be moved aside first; raises `RunFolderError` when the
    folder may not be used as asked (`check_movable`; `keep`: see `move_aside`), or when a run
    of `config` would replace a config.yaml that is not its own (`_check_own_config`). With
    `resume` and `config`, a folder that holds only that run's start files (`not_started`) is
    used as it is: the run starts again at iteration 0. Writes nothing."""
    if resume and resumable(run_dir):
        return False
    if not holds_run(run_dir):
        _check_own_config(run_dir, config, resume, keep)
        return False
    if resume and config is not None and not_started(run_dir, config, keep):
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


def _check_own_config(
    run_dir: Path, config: Config | None, resume: bool, keep: Sequence[str | os.PathLike]
) -> None:
    """Refuse a folder holding no run whose config.yaml is not the one a run of `config` writes
    (a user's own file, or the start of a run with other settings), unless `resume` goes on
    with that run (`not_started`): the run writes its config.yaml there first."""
    from gsag.config import config_text

    path = run_dir / "config.yaml"
    if config is None or not path.is_file():
        return
    try:
        same = path.read_text(encoding="utf-8") == config_text(config)
    except (OSError, UnicodeDecodeError):
        same = False
    same = same or (resume and not_started(run_dir, config, keep))
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
    config: Config | None = None,
) -> Iterator[Path | None]:
    """Lock `run_dir` for this run and make it safe to write (see the module docstring).

    `keep`: entries of `run_dir` that `overwrite` leaves in place (see `move_aside`).
    `config`: the run's config, so that `resume` starts again a run that never saved last.pt
    (`not_started`) and no config.yaml but the run's own is replaced (`check_run_dir`).

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
    config: Config | None = None,
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
