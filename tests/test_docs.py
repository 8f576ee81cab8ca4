"""The commands the docs show are real: every `gsag CMD ... --flag` in README.md and docs/*.md is
an option of CMD's parser, and every `--set key=value` key is a key of the config schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli_text import key_problem, line_of, options, set_keys, usages

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def doc_problems(text: str, name: str) -> list[str]:
    """One line per unknown flag or config key in `text`: `name:LINE: what is wrong`."""
    problems = []
    for usage in usages(text):
        known = options(usage.command)
        for flag in usage.flags:
            if flag not in known:
                line = line_of(text, usage.offset)
                problems.append(f"{name}:{line}: `gsag {usage.command}` has no option {flag}")
    for key, offset in set_keys(text):
        why = key_problem(key)
        if why:
            problems.append(f"{name}:{line_of(text, offset)}: --set {key}: {why}")
    return problems


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_doc_commands_use_real_options_and_config_keys(path):
    problems = doc_problems(path.read_text(), path.relative_to(ROOT).as_posix())
    assert not problems, "\n".join(problems)


def test_docs_are_found_and_show_commands():
    """The test above reads something: the docs hold many gsag commands and --set pairs."""
    text = "\n".join(p.read_text() for p in DOCS)
    assert len(DOCS) >= 5
    assert sum(1 for _ in usages(text)) > 30 and sum(1 for _ in set_keys(text)) > 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gsag train configs/demo.yaml --set train.iters=50 train.lr=0.02",
         "x.md:1: --set train.lr: train.lr is not a key of train"),
        ("text\n```bash\ngsag demo --out runs/d \\\n  --run-dir runs/x\n```",
         "x.md:3: `gsag demo` has no option --run-dir"),
        ("`gsag data prepare-voc --data-dir d` and `gsag eval c.pt --flip`", None),
        ("python -m gsag train c.yaml --set model.kwargs.num_heads=4 --threads 2", None),
        ("gsag export --model fcn --out m.onnx --opset 17 | tee log --bogus", None),
        ("gsag predict c.pt --input x --out o --quiet", None),
    ],
)  # fmt: skip
def test_doc_checker_reports_file_line_and_the_offender(text, expected):
    found = "\n".join(doc_problems(text, "x.md"))
    assert (expected in found) if expected else not found


def test_the_makefile_says_what_it_does_before_each_quiet_step():
    """The install (`pip -q`) was silent for 2-3 minutes: every recipe line that runs pip, and
    the demo and the test suite, come after an `@echo` line of the same recipe saying what
    follows."""
    recipes: dict[str, list[str]] = {}
    target = ""
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line and not line.startswith(("\t", "#", " ")) and ":" in line and "=" not in line:
            target = line.split(":")[0]
        elif line.startswith("\t") and target:
            recipes.setdefault(target, []).append(line.strip())
    slow = ("pip install", "-m venv", "gsag demo", 'pytest -q -m "not slow"', "ruff check gsag")
    checked = 0
    for name, lines in recipes.items():
        for i, line in enumerate(lines):
            quiet = not line.startswith("@echo") and not name.startswith("test-min")
            if quiet and any(s in line for s in slow):
                said = [ln for ln in lines[:i] if ln.startswith("@echo")]
                assert said, f"Makefile target {name}: `{line}` runs without a line before it"
                checked += 1
    assert checked >= 5  # venv, pip upgrade, install, demo, test, lint
