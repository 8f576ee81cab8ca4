"""Issue 37's traceback classes: each user error is one `error: ...` line on stderr (nothing on
stdout) with the exit code of README's table, never a traceback."""

from __future__ import annotations

import pytest

from gsag.cli import main
from gsag.errors import USAGE

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread per test


def one_line(capsys, *argv) -> tuple[int, str]:
    """Exit code and the one stderr line of `gsag ARGV`; stdout must stay empty."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and out.strip() == "", out
    return code, lines[0]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["train"], "config is required (positional or --config)"),
        (["eval"], "checkpoint is required (positional or --checkpoint)"),
        (["predict", "--input", "x", "--out", "y"], "checkpoint is required"),
    ],
)
def test_usage_errors_found_after_parsing_exit_2(capsys, argv, fragment):
    code, line = one_line(capsys, *argv)
    assert code == USAGE and fragment in line


def test_data_prepare_errors_take_the_one_error_path(capsys, tmp_path):
    code, line = one_line(capsys, "data", "prepare-voc", "--out", tmp_path / "voc")
    assert code == USAGE and "give --voc DIR and --sbd DIR, or --download" in line
    code, line = one_line(capsys, "data", "prepare-ade20k", "--out", tmp_path / "ade")
    assert code == USAGE and f"no ADEChallengeData2016 in {tmp_path / 'ade'}" in line
