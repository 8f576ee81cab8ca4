"""The `gsag` command line: one sub-command per module in `gsag.commands`.

Each command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`.
Modules import their heavy dependencies inside `run`, so `gsag --help` stays fast.

`main` turns every expected error into one line, `error: ...`, on stderr and the exit code of
`gsag.errors` (2 bad input, 1 failed run, 130 Ctrl-C, 143 SIGTERM); `gsag --debug ...` shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
from collections.abc import Iterator

from gsag.version import __version__

# name on the command line -> module in gsag.commands
COMMANDS: dict[str, str] = {
    "models": "models",
    "data": "data",
    "train": "train",
    "eval": "evaluate",
    "predict": "predict",
    "export": "export",
    "save": "save",
    "push": "push",
    "bench": "bench",
    "ablate": "ablate",
    "demo": "demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gsag", description="Semantic segmentation with the GSAG head and its baselines."
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument("--version", action="version", version=f"gsag {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"gsag.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def check_device(device: str | None) -> None:
    """Refuse `--device cuda[:i]` at once when that GPU is not there."""
    if not device or not device.startswith("cuda"):
        return
    import torch

    from gsag.errors import UsageError

    if not torch.cuda.is_available():
        raise UsageError(
            f"--device {device}: CUDA is not available here (torch {torch.__version__}, "
            f"{torch.cuda.device_count()} GPU(s) visible); use --device cpu"
        )
    index = device.partition(":")[2]
    if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
        raise UsageError(
            f"--device {device}: no such GPU; this machine has cuda:0 to "
            f"cuda:{torch.cuda.device_count() - 1}"
        )


#: Whether SIGTERM arrived during this command: the error it ends with is then "terminated",
#: whichever comes first (a DataLoader worker ended by the same signal may raise before it).
_SIGTERM = {"seen": False}


def _terminate(signum: int, frame: object) -> None:
    from gsag.errors import Terminated

    _SIGTERM["seen"] = True
    raise Terminated


@contextlib.contextmanager
def sigterm_like_ctrl_c() -> Iterator[None]:
    """While a command runs, SIGTERM (what batch schedulers send before they kill a job) raises
    `gsag.errors.Terminated`, which unwinds like Ctrl-C: locks released, no half-written file
    left, one `error:` line, exit code 143. The previous handler is restored afterwards."""
    _SIGTERM["seen"] = False
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run one command; expected errors become one `error: ...` line and an exit code."""
    from gsag.errors import Terminated, describe, one_line

    args = build_parser().parse_args(argv)
    try:
        with sigterm_like_ctrl_c():
            return _run(args)
    except (Exception, KeyboardInterrupt) as e:
        known = describe(Terminated() if _SIGTERM["seen"] else e)
        if args.debug or known is None:
            raise
        message, code = known
        print(f"error: {one_line(message)}", file=sys.stderr)
        return code


def _run(args: argparse.Namespace) -> int:
    if hasattr(args, "device"):  # one default for every command: cuda if available
        from gsag.commands import resolve_device

        args.device = resolve_device(args.device)
        check_device(args.device)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
