"""The command-line dispatcher: every command is reachable and paths parse either way."""

from __future__ import annotations

import pytest

from gsag.cli import COMMANDS, build_parser, main
from gsag.commands import finish_path_argument


def test_every_command_parses_its_help(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert f"usage: gsag {name}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "name", "expected"),
    [
        (["train", "a.yaml"], "config", "a.yaml"),
        (["train", "--config", "b.yaml"], "config", "b.yaml"),
        (["eval", "c.pt"], "checkpoint", "c.pt"),
        (["eval", "--checkpoint", "d.pt"], "checkpoint", "d.pt"),
    ],
)
def test_paths_are_accepted_positionally_or_as_options(argv, name, expected):
    args = build_parser().parse_args(argv)
    assert finish_path_argument(args, name) == expected
    assert getattr(args, name) == expected


def test_missing_path_is_a_usage_error():
    args = build_parser().parse_args(["train"])
    with pytest.raises(SystemExit, match="config is required"):
        finish_path_argument(args, "config")
