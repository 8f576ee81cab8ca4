"""The command-line dispatcher: every command is reachable and paths parse either way."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gsag.cli import COMMANDS, build_parser, main
from gsag.commands import finish_path_argument


def test_every_command_parses_its_help(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert f"usage: gsag {name}" in capsys.readouterr().out


def test_help_does_not_import_torch():
    # `gsag --help` builds every command's parser; torch loads only when a command runs.
    code = (
        "import sys, gsag, gsag.cli; gsag.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("package", ["gsag", "gsag.data"])
def test_lazy_package_names_are_the_modules_objects(package):
    import importlib

    pkg = importlib.import_module(package)
    names = [n for n in pkg.__all__ if n != "__version__"]
    for name in names:
        value = getattr(pkg, name)  # imports the defining module
        home = getattr(value, "__module__", None)  # constants (VOC_CLASSES) have none
        if home is not None:
            assert getattr(importlib.import_module(home), name) is value, name
        assert name in dir(pkg) and vars(pkg)[name] is value  # cached after the first lookup
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        pkg.nope  # noqa: B018


def test_submodules_are_reachable_after_a_plain_import():
    code = "import gsag; print(gsag.data.open_dataset.__module__, gsag.engine.checkpoint.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["gsag.data.layout", "gsag.engine.checkpoint"]


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
    from gsag.errors import UsageError

    args = build_parser().parse_args(["train"])
    with pytest.raises(UsageError, match="config is required"):
        finish_path_argument(args, "config")
