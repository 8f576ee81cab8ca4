"""The `gsag` command line: one sub-command per module in `gsag.commands`.

Each command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`.
Modules import their heavy dependencies inside `run`, so `gsag --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name on the command line -> module in gsag.commands
COMMANDS: dict[str, str] = {
    "models": "models",
    "data": "data",
    "train": "train",
    "eval": "evaluate",
    "predict": "predict",
    "export": "export",
    "bench": "bench",
    "ablate": "ablate",
    "demo": "demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gsag", description="Semantic segmentation with the GSAG head and its baselines."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"gsag.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
