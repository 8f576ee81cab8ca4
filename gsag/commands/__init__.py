"""One module per `gsag` sub-command: `HELP`, `add_arguments(parser)` and `run(args)`.

The helpers below give each idea one spelling and one default across commands: the checkpoint
and config (positional or `--NAME`), `--set` / `--cfg-options`, `--threads`, `--device`,
`--quiet` and the inference options shared by `gsag eval` and `gsag predict`.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import Any

DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")


def add_path_argument(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    """Accept a required path both as a positional argument and as `--NAME` (`gsag train X.yaml`
    and `gsag train --config X.yaml` mean the same); `finish_path_argument` checks it was given."""
    parser.add_argument(name, nargs="?", help=help)
    parser.add_argument(f"--{name}", dest=f"{name}_option", metavar=name.upper(), help=help)


def finish_path_argument(args: argparse.Namespace, name: str) -> str:
    """The path given for `name` either way; exits with a usage error when it is missing."""
    value = getattr(args, name) or getattr(args, f"{name}_option")
    if not value:
        raise SystemExit(f"gsag: error: {name} is required (positional or --{name})")
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


def bounded(kind: Callable[[str], Any], low: float, what: str, example: str):
    """An argparse type: `kind(text)` that must be >= `low` (> 0 for floats when low is 0)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; e.g. {example}") from None
        strict = kind is float and low == 0
        if value != value or (value <= low if strict else value < low):
            sign = "> 0" if strict else f">= {low}"
            raise argparse.ArgumentTypeError(f"{what} {text} must be {sign}; e.g. {example}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


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
    `train.num_threads` where the command trains (train, ablate, demo), else to torch (one per
    core). See `resolve_threads`."""
    parser.add_argument(
        "--threads",
        type=bounded(int, 0, "threads", "--threads 1"),
        default=0,
        help="torch CPU threads (default 0: the config's train.num_threads where the command "
        "trains, else torch's default of one per core; on a loaded machine 1 is often fastest)",
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
    from gsag.config import DEFAULT_MAX_PIXELS, EVAL_MODES

    parser.add_argument("--mode", choices=EVAL_MODES, default=mode_default, help="inference mode")
    parser.add_argument(
        "--crop-size", type=bounded(int, 1, "crop size", "--crop-size 512"), help="slide window"
    )
    parser.add_argument(
        "--stride", type=bounded(int, 1, "stride", "--stride 341"), help="slide window step"
    )
    parser.add_argument(
        "--scales",
        type=bounded(float, 0, "scale", "--scales 0.75 1 1.25"),
        nargs="+",
        help="multi-scale factors for --mode multiscale",
    )
    parser.add_argument("--flip", action="store_true", help="add horizontally flipped passes")
    parser.add_argument(
        "--max-pixels",
        type=bounded(int, 1, "max pixels", "--max-pixels 16777216"),
        default=DEFAULT_MAX_PIXELS,
        help="whole-image passes on larger images use sliding windows instead "
        f"(default {DEFAULT_MAX_PIXELS}, 4096x4096)",
    )
