"""One module per `gsag` sub-command: `HELP`, `add_arguments(parser)` and `run(args)`.

The helpers below give each idea one spelling and one default across commands: the checkpoint
and config (positional or `--NAME`), `--set` / `--cfg-options`, `--threads`, `--device`,
`--quiet`, the inference options shared by `gsag eval` and `gsag predict`, and the check of an
output path (`check_output`) every command makes before it starts working.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gsag.rules import Rule

DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")
# what `gsag predict`, `eval` and `export` accept as CHECKPOINT
# (see gsag.trained.load.load_trained_model)
CHECKPOINT_HELP = (
    "a gsag .pt checkpoint, .safetensors weights, a folder written by `gsag save`, or "
    "hf://owner/name[@revision] on the Hugging Face Hub"
)


def add_path_argument(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    """Accept a required path both as a positional argument and as `--NAME` (`gsag train X.yaml`
    and `gsag train --config X.yaml` mean the same); `finish_path_argument` checks it was given."""
    parser.add_argument(name, nargs="?", help=help)
    parser.add_argument(f"--{name}", dest=f"{name}_option", metavar=name.upper(), help=help)


def finish_path_argument(args: argparse.Namespace, name: str) -> str:
    """The path given for `name` either way; a `UsageError` (exit code 2) when it is missing."""
    from gsag.errors import UsageError

    value = getattr(args, name) or getattr(args, f"{name}_option")
    if not value:
        raise UsageError(f"{name} is required (positional or --{name})")
    setattr(args, name, value)
    return value


def add_alias(parser: argparse.ArgumentParser, old: str, dest: str) -> None:
    """A hidden older spelling of an option (kept so existing scripts still work)."""
    parser.add_argument(old, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


class _Overrides(argparse.Action):
    """Collects `KEY=VALUE` pairs from one or several `--set` flags into one list."""

    def __call__(
        self, parser, namespace, values: str | Sequence[Any] | None, option_string=None
    ) -> None:
        # nargs="+" (see add_set_argument) always passes a list; the other cases are argparse's
        pairs: list[str] = [values] if isinstance(values, str) else list(values or [])
        for item in pairs:
            if "=" not in item:
                parser.error(
                    f"argument {option_string}: {item!r} is not KEY=VALUE; put paths before "
                    f"{option_string}, e.g. gsag train CONFIG {option_string} train.iters=100"
                )
        items = list(getattr(namespace, self.dest, None) or [])
        setattr(namespace, self.dest, [*items, *pairs])


def add_set_argument(parser: argparse.ArgumentParser, what: str = "") -> None:
    """`--set KEY=VALUE [KEY=VALUE ...]` (repeatable; `--cfg-options` is the mmseg spelling),
    collected in `args.overrides`."""
    parser.add_argument(
        "--set",
        "--cfg-options",
        dest="overrides",
        action=_Overrides,
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help=f"override config values{what}, e.g. --set train.iters=100 optim.lr=0.01 "
        "(repeatable; --cfg-options is the same)",
    )


class Bounded:
    """An argparse type: `kind(text)` that must satisfy `rule` (a `gsag.rules.Rule`); floats
    must be finite. Tests read `kind` and `rule` to walk every option through bad values."""

    def __init__(self, kind: Callable[[str], Any], rule: Rule, what: str, example: str) -> None:
        self.kind, self.rule, self.what, self.example = kind, rule, what, example
        self.__name__ = what  # argparse names the type in its messages

    def __call__(self, text: str) -> Any:
        try:
            value = self.kind(text)
        except ValueError:
            noun = "a whole number" if self.kind is int else "a number"
            raise argparse.ArgumentTypeError(
                f"{self.what} {text!r} is not {noun}; e.g. {self.example}"
            ) from None
        problem = self.rule.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{self.what} {text} {problem}; e.g. {self.example}")
        return value


def bounded(
    kind: Callable[[str], Any],
    low: float,
    what: str,
    example: str,
    high: float | None = None,
    low_open: bool | None = None,
) -> Bounded:
    """An argparse type: a finite `kind(text)` in [low, high] (> low for floats when low is 0,
    unless `low_open` says otherwise; ints are at most 2**31-1 in any case)."""
    from gsag.rules import Rule

    if low_open is None:
        low_open = kind is float and low == 0
    return Bounded(kind, Rule(low=low, high=high, low_open=low_open), what, example)


def config_type(key: str, what: str, example: str) -> Bounded:
    """An argparse type for an option that sets config key `key`: the key's rule in
    `gsag.config.RULES`, so the flag and the config accept the same values."""
    import typing

    from gsag.config import RULES, Config

    section, name = key.split(".")
    hint = typing.get_type_hints(type(getattr(Config(), section)))[name]
    while typing.get_args(hint):  # int | list[int] -> int, list[float] -> float
        hint = typing.get_args(hint)[0]
    return Bounded(hint, RULES[key], what, example)


def device_type(text: str) -> str:
    """An argparse type for `--device`: cpu, cuda or cuda:N."""
    if not DEVICE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use cpu, cuda or cuda:1")
    return text


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """`--device cpu|cuda|cuda:N`; one rule for every command: CUDA when available, else CPU
    (`resolve_device`, applied by `gsag.cli.main`)."""
    parser.add_argument(
        "--device",
        type=device_type,
        help="cpu, cuda or cuda:N (default: cuda if available, else cpu)",
    )


def resolve_device(device: str | None) -> str:
    """`--device` as given, or the default of every command: "cuda" when available, else "cpu"."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """`--threads N`; one rule for every command: 0 (default) leaves the count to the config's
    `train.num_threads` where the command trains (train, ablate, demo), and where that is 0 too,
    to the cores free when training starts (`gsag.threads`); other commands: torch's default
    (one per core). See `resolve_threads`."""
    parser.add_argument(
        "--threads",
        type=config_type("train.num_threads", "threads", "--threads 1"),
        default=0,
        help="torch CPU threads (default 0: where the command trains, the config's "
        "train.num_threads, or the cores free at the start when that is 0 too; elsewhere "
        "torch's default of one per core)",
    )


def resolve_threads(threads: int, config_threads: int = 0) -> int:
    """The thread count to use: `--threads`, else the config's `train.num_threads` (0 = torch's)."""
    return threads or config_threads


def set_threads(threads: int, config_threads: int = 0) -> None:
    """Apply `resolve_threads(threads, config_threads)`; 0 keeps torch's default."""
    threads = resolve_threads(threads, config_threads)
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    """`--quiet`: no progress bars or spinners (results and errors are still printed)."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars or spinners")


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    """`--amp` and `--compile` for inference (eval, predict); defaults come from the checkpoint."""
    parser.add_argument(
        "--amp",
        choices=["auto", "bf16", "fp16", "none"],
        help="autocast (default: the checkpoint's eval.amp, else auto = bf16 on CUDA, fp32 on CPU)",
    )
    parser.add_argument(
        "--compile",
        choices=["none", "head", "model"],
        help="torch.compile the head or the model, dynamic shapes (default: eval.compile, none)",
    )


def add_inference_arguments(parser: argparse.ArgumentParser, mode_default: str | None) -> None:
    """The inference flags shared by `gsag eval` and `gsag predict`."""
    from gsag.config import DEFAULT_MAX_PIXELS, EVAL_MODES, MAX_SIDE

    parser.add_argument("--mode", choices=EVAL_MODES, default=mode_default, help="inference mode")
    parser.add_argument(
        "--crop-size",
        type=config_type("eval.crop_size", "crop size", "--crop-size 512"),
        help="slide window",
    )
    parser.add_argument(
        "--stride",
        type=config_type("eval.stride", "stride", "--stride 341"),
        help="slide window step",
    )
    parser.add_argument(
        "--scales",
        type=config_type("eval.scales", "scale", "--scales 0.75 1 1.25"),
        nargs="+",
        help="multi-scale factors; they make any --mode multi-scale (with --mode slide, "
        "sliding windows at every scale)",
    )
    parser.add_argument("--flip", action="store_true", help="add horizontally flipped passes")
    parser.add_argument(
        "--max-pixels",
        type=bounded(int, 1, "max pixels", "--max-pixels 16777216", high=MAX_SIDE**2),
        default=DEFAULT_MAX_PIXELS,
        help="whole-image passes on larger images use sliding windows instead "
        f"(default {DEFAULT_MAX_PIXELS}, 4096x4096)",
    )


def check_output(
    path: str | os.PathLike,
    option: str,
    file: bool = False,
    reads: Sequence[str | os.PathLike] = (),
    datasets: bool = False,
) -> Path:
    """Refuse an output folder (or, with `file`, an output file) that cannot or may not be
    written, before any work starts: one that is a file (a folder), or that sits below a file or
    a read-only folder, however many of its parents are still missing; and one that is or lies
    inside a dataset, the ones the command reads (`reads`) or any gsag recognises
    (`gsag.data.layout.dataset_holding`), so that no output ever replaces a label or an image.
    Only the commands that write datasets pass `datasets=True` (`gsag data ...`). Missing
    parents are otherwise fine: the writers create them. Raises `UsageError` naming `option` and
    the path.

    Read-only is what `os.access` says (so also a read-only mount, even for root); where it
    says writable, a temporary file or folder is made and removed there (`_check_creatable`),
    so a folder that refuses anyway (EPERM under /sys, a full inode table) is refused too.
    """
    from gsag.errors import UsageError

    target = Path(path)
    if file and target.is_dir():
        raise UsageError(f"{option} {target} is a folder; give a file name inside it")
    folder = Path(os.path.abspath(target.parent if file else target))
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent  # the nearest part of the path that is there
    if not existing.exists():
        raise UsageError(
            f"{option} {target}: {existing} is a link that leads nowhere (to nothing, or round "
            "in a loop); fix or remove it, or choose another " + option
        )
    if not existing.is_dir():
        what = "is a file, not a folder" if existing == folder else f"is below the file {existing}"
        raise UsageError(f"{option} {target}: {folder} {what}; choose another {option}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"{option} {target}: {existing} is read-only, so nothing can be written there; "
            f"choose another {option} or make {existing} writable"
        )
    _check_creatable(existing, folder, target, option, file)
    if not datasets:
        _check_not_dataset(folder, target, option, reads)
    return target


def _check_not_dataset(
    folder: Path, target: Path, option: str, reads: Sequence[str | os.PathLike]
) -> None:
    """Refuse an output `folder` that is or lies inside a dataset (see `check_output`)."""
    from gsag.data.layout import dataset_holding
    from gsag.errors import UsageError

    real = folder.resolve()
    for root in reads:
        root = Path(root).resolve()
        if real == root or root in real.parents:
            raise UsageError(
                f"{option} {target} is inside {root}, the dataset this command reads; writing "
                f"there could replace its files. Choose an {option} outside it"
            )
    found = dataset_holding(folder)
    if found is not None:
        root, layout = found
        where = "is" if root == real else "is inside"
        raise UsageError(
            f"{option} {target} {where} the {layout} dataset {root}; gsag never writes into a "
            f"dataset, where its outputs could replace labels or images. Choose an {option} "
            "outside it, e.g. runs/NAME"
        )


def _check_creatable(existing: Path, folder: Path, target: Path, option: str, file: bool) -> None:
    """Refuse (`UsageError`) when the missing parts of `folder` could not be made in `existing`:
    a name too long for its file system, or a folder where making anything fails although
    `os.access` allows it. Makes a temporary file or folder there and removes it again."""
    import tempfile

    from gsag.errors import UsageError

    missing = folder.relative_to(existing).parts if folder != existing else ()
    names = [*missing, target.name] if file else list(missing)
    try:
        longest = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    too_long = [n for n in names if len(os.fsencode(n)) > longest]
    if too_long:
        raise UsageError(
            f"{option} {target}: the name {too_long[0][:40]}... is longer than the {longest} "
            f"bytes a name may have there; choose a shorter {option}"
        )
    try:
        if file:
            handle, probe = tempfile.mkstemp(dir=existing, prefix=".gsag-check-")
            os.close(handle)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".gsag-check-"))
    except OSError as e:
        raise UsageError(
            f"{option} {target}: nothing can be created in {existing} ({e.strerror or e}); "
            f"choose another {option}"
        ) from e


def remember_defaults(parser: argparse.ArgumentParser) -> None:
    """Store the parser's defaults in `args._given_defaults`, for `refuse_unused`: call it after
    the last `add_argument`."""
    parser.set_defaults(_given_defaults=vars(parser.parse_args([])))


def refuse_unused(
    args: argparse.Namespace, command: str, way: str, uses: dict[str, set[str]], choosers=()
) -> None:
    """Raise `UsageError` naming each option given (not at its default) that `way`, one way of
    using `command`, does not read (`uses[way]`: the dests it reads), instead of ignoring it;
    `choosers`: the dests that choose a way (not listed among what a way takes)."""
    from gsag.errors import UsageError

    def flag(dest: str) -> str:
        return {"name": "NAME", "overrides": "--set"}.get(dest, "--" + dest.replace("_", "-"))

    defaults = getattr(args, "_given_defaults", {})
    unused = [k for k, v in defaults.items()
              if not k.startswith("_") and k not in uses[way] and getattr(args, k) != v]  # fmt: skip
    if unused:
        takes = [flag(k) for k in sorted(uses[way]) if k not in choosers]
        raise UsageError(
            f"{command}: {', '.join(map(flag, unused))} has no effect with {way} "
            f"(which takes {', '.join(takes) or 'nothing else'}); leave it out"
        )
