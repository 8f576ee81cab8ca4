"""One module per `gsag` sub-command: `HELP`, `add_arguments(parser)` and `run(args)`."""

from __future__ import annotations

import argparse


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


def add_set_argument(parser: argparse.ArgumentParser, what: str = "") -> None:
    """The repeatable `--set KEY=VALUE` config override, collected in `args.overrides`."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value{what}, e.g. --set train.iters=100 (repeatable)",
    )
