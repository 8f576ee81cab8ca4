"""Every fenced command and Python block of README.md and docs/ is checked, and the runnable
ones run as written, in order, on what the blocks before them produced, from a fresh checkout's
point of view (a copy of the tracked files in a temporary folder).

Checked, every block (tests.helpers.docs_blocks): each `gsag` command is parsed by gsag's own
argument parser (a flag, sub-command or value it refuses fails), each `make` target and each
configs/ or tools/ file named exists, each Python block compiles. Run, each block unless a
marker before it says otherwise (the reader sees why in the text beside it):

    <!-- docs-test: skip (needs the internet) -->   never run here; the reason is one of SKIP_WHY
    <!-- docs-test: slow -->                       run by the slow suite only (long even when tiny)
    <!-- docs-test: slow exact -->                 the same, and without the tiny settings below

A page's blocks run after the README's (whose `make demo` makes runs/demo). "Tiny settings"
shrink the training a block starts and nothing else (`tiny`): `gsag demo|train|ablate` get 2
iterations of batch 2 at 64x64 (TINY_SETS), `gsag data synth` 8 + 4 + 4 images of 64x64,
`gsag bench` one small round; the demo's own data are generated that small. `make demo` runs
the gsag commands of its Makefile recipe (this test's Python is installed already); `make test`
and `make lint` are this suite and only checked. A block of only `gsag` commands runs in this
process (each as `gsag.cli.main` runs it, so the suite pays torch's import once); any other
shell block runs in bash with the test's Python first on PATH; a Python block runs in a fresh
namespace here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.helpers.configs import TINY_CLI_SETS
from tests.helpers.docs_blocks import (
    MARKER,
    PAGES,
    ROOT,
    SHELL,
    SKIP_WHY,
    Block,
    all_blocks,
    block_problems,
    logical_lines,
    make_targets,
    page_blocks,
)

#: TINY_CLI_SETS but the backbone: the docs' commands run on the demo's own model (resnet18),
#: whose export to .pt2 the docs show (timm's test_resnet computes shapes .pt2 cannot store)
TINY_SETS = [
    word
    for pair in zip(TINY_CLI_SETS[::2], TINY_CLI_SETS[1::2], strict=True)
    if not pair[1].startswith("model.backbone=")
    for word in pair
]
TINY_DATA = ["--num-train", "8", "--num-val", "4", "--size", "64"]
TINY_BENCH = ["--backbones", "test_resnet", "--sizes", "64", "--rounds", "1", "--repeats", "1",
              "--warmup", "0", "--train-repeats", "1"]  # fmt: skip


# ---------------------------------------------------------------- what a block is allowed to be


def test_every_command_block_runs_or_says_what_it_needs():
    """Each command block is run (here or in the slow suite) or skipped for a reason of
    SKIP_WHY; a marker always stands right before a block."""
    problems = []
    for block in all_blocks():
        if not block.is_command and block.mode != "run":
            problems.append(f"{block.name}: a docs-test marker on a block that is no command")
        if block.mode == "skip" and block.why not in SKIP_WHY:
            problems.append(f"{block.name}: skipped for {block.why!r}, not one of {SKIP_WHY}")
        if block.is_command and not block.lang:
            problems.append(f"{block.name}: a command block without a language (bash, python)")
    for page in PAGES:
        text = page.read_text()
        markers = len(MARKER.findall(text))
        marked = sum(b.mode != "run" for b in page_blocks(page))
        if markers != marked or text.count("docs-test:") != markers:
            problems.append(f"{page.name}: a docs-test marker not right before a block, or odd")
    assert not problems, "\n".join(problems)


def test_the_checker_reads_markers_and_languages(tmp_path):
    page = tmp_path / "x.md"
    page.write_text(
        "text\n\n<!-- docs-test: skip (needs a GPU) -->\n```bash\ngsag train c.yaml\n```\n\n"
        "```\ngsag eval c.pt\n```\n\n<!-- docs-test: slow exact -->\n\n```python\nx = 1\n```\n"
        "```\nmydata/\n```\n"
    )
    found = [(b.line, b.lang, b.mode, b.why, b.is_command) for b in page_blocks(page)]
    assert found == [(4, "bash", "skip", "needs a GPU", True), (8, "", "run", "", True),
                     (14, "python", "slow exact", "", True), (17, "", "run", "", False)]  # fmt: skip


def test_blocks_are_found_and_the_readme_runs_whole():
    """The README's blocks all run in the default suite; so do a good part of the others (the
    rest are long grids, exports, and what needs the internet, a GPU or real data)."""
    blocks = [b for b in all_blocks() if b.is_command]
    assert len(blocks) > 30
    assert all(b.mode == "run" for b in blocks if b.page == ROOT / "README.md")
    assert sum(b.mode == "run" for b in blocks) >= 10


# ----------------------------------------------- every documented command parses (all blocks)


def tracked_files() -> set[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    return set(listed.stdout.split())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_documented_command_exists(page):
    """Every `gsag` command of every block, run or not (skipped and slow ones too), is taken by
    gsag's own argument parser; every `make` target and configs/ or tools/ file it names
    exists; every Python block compiles. Variables assigned in earlier blocks of the page are
    put in."""
    env: dict[str, str] = {}
    tracked = tracked_files()
    problems = [p for block in page_blocks(page) for p in block_problems(block, env, tracked)]
    assert not problems, "\n".join(problems)


def test_the_command_check_finds_what_does_not_exist(tmp_path):
    """A misspelt flag, a missing sub-command, a wrong value, a `make` target and a config
    that do not exist are each found; variables, loops, pipes and `python -m gsag` are read."""
    page = tmp_path / "x.md"
    page.write_text(
        "```bash\n"
        'C="--config configs/demo.yaml --threads 1"\n'
        "for k in 0 1; do gsag data synth --seed $k --out runs/d$k; done\n"
        "gsag ablate $C --out runs/a --models fcn --seeds 0 | tee log.txt\n"
        "OMP_NUM_THREADS=1 python -m gsag eval runs/demo/best.pt --mode slide 2>&1 > log\n"
        "gsag eval runs/demo/best.pt --crop-szie 96\n"
        "gsag evaluate runs/demo/best.pt\n"
        "gsag data synth --seed zero --out x\n"
        "torchrun --nproc_per_node 2 -m gsag train configs/nope.yaml --resmue\n"
        "make demo && make tests\n"
        "```\n\n<!-- docs-test: skip (needs a GPU) -->\n```python\nx = (\n```\n"
    )
    env: dict[str, str] = {}
    found = [p for b in page_blocks(page) for p in block_problems(b, env, tracked_files())]
    expected = [
        (1, "--crop-szie"),
        (1, "invalid choice: 'evaluate'"),
        (1, "'zero'"),
        (1, "unrecognized arguments: --resmue"),
        (1, "configs/nope.yaml is not in the repository"),
        (1, "`make tests`: no such target"),
        (14, "was never closed"),
    ]
    assert len(found) == len(expected), "\n".join(found)
    for problem, (line, words) in zip(found, expected, strict=True):
        assert problem.startswith(f"x.md:{line}: ") and words in problem, problem
    assert env == {"C": "--config configs/demo.yaml --threads 1", "k": "0"}


# ------------------------------------------------------------------------ running the blocks


def _insert(line: str, command: str, extra: list[str]) -> str:
    """`line` with `extra` after every `command` invocation's arguments (before a `;`, `&&`,
    `|`, `)` or a comment)."""
    pattern = re.compile(rf"\b{re.escape(command)}\b[^;&|)#\n]*?(?=\s*(?:;|&&|\|\||\||\)|\s#|$))")
    words = " ".join(shlex.quote(w) for w in extra)
    return pattern.sub(lambda m: f"{m.group(0)} {words}", line)


def tiny(text: str) -> str:
    """A shell block with the tiny settings of the module docstring."""
    out = []
    for line in logical_lines(text):
        for command in ("gsag train", "gsag demo", "gsag ablate"):
            line = _insert(line, command, TINY_SETS)
        line = _insert(line, "gsag data synth", TINY_DATA)
        line = _insert(line, "gsag bench", TINY_BENCH)
        out.append(line)
    return "\n".join(out)


def gsag_only(text: str) -> list[list[str]] | None:
    """The argument lists of a shell block that only runs `gsag` commands, else None."""
    commands = []
    for line in logical_lines(text):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] != "gsag" or any(w in ("|", ";", "&&", ">", "<") for w in words):
            return None
        commands.append(words[1:])
    return commands


def make_recipes(text: str) -> str:
    """`make demo` as the gsag commands of its Makefile recipe (the install before it is this
    test's Python, installed already); `make test`, `test-slow` and `lint` left out: they run
    this suite, which cannot run itself (test_every_documented_command_exists checks them)."""
    out = []
    for line in logical_lines(text):
        target = re.match(r"^\s*make ([\w-]+)\b[^#;&|]*(?:#.*)?$", line)
        if target is None:
            out.append(line)
        elif target.group(1) == "demo":
            recipe = make_targets()["demo"]
            out += [re.sub(r"^\$\(PY\) -m gsag\b", "gsag", r) for r in recipe if "-m gsag" in r]
        elif target.group(1) not in ("test", "test-slow", "lint"):
            raise AssertionError(f"`{line}`: the docs test runs only make demo, test and lint")
    return "\n".join(out)


def run_block(
    block: Block, folder: Path, monkeypatch, exact: bool = False, prelude: str = ""
) -> None:
    """Run `block` in `folder` as the module docstring says, a shell block after `prelude` (the
    page's variables); fail with its name and output."""
    monkeypatch.chdir(folder)
    if block.lang == "python":
        threads = torch.get_num_threads()
        try:
            exec(compile(block.text, block.name, "exec"), {"__name__": "__docs__"})
        finally:
            torch.set_num_threads(threads)
        return
    text = make_recipes(block.text)
    text = text if exact or block.mode == "slow exact" else tiny(text)
    commands = None if "$" in text else gsag_only(text)
    if commands is not None:
        from gsag.cli import main

        for argv in commands:
            threads = torch.get_num_threads()
            try:
                code = main(argv)
            finally:
                torch.set_num_threads(threads)
            assert code == 0, f"{block.name}: `gsag {shlex.join(argv)}` exited {code}"
        return
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    # the prelude as the blocks before ran it, whose $(...) may need what this block makes
    script = f"set +eu\n{prelude}\nset -euo pipefail\n{text}\n"
    done = subprocess.run(["bash", "-c", script], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=3600)  # fmt: skip
    assert done.returncode == 0, f"{block.name} exited {done.returncode}:\n{text}\n" + (
        done.stdout[-3000:] + done.stderr[-3000:]
    )


def fresh_checkout(target: Path) -> Path:
    """The repository's tracked files (as they are in the working tree) copied to `target`."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    for name in listed.stdout.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def shrink_demo_data(mp: pytest.MonkeyPatch) -> None:
    """The demo's generated data, shrunk as in tests/commands/test_demo.py (a tiny setting)."""
    import gsag.data.synth as synth

    real = synth.generate

    def small(out_dir, num_train=600, num_val=150, size=128, seed=0, **kwargs):
        return real(out_dir, num_train=8, num_val=4, size=64, seed=seed)

    mp.setattr(synth, "generate", small)


def runnable(page: Path, modes: tuple[str, ...]) -> list[Block]:
    return [b for b in page_blocks(page) if b.is_command and b.mode in modes]


def run_page(page: Path, start: Path, folder: Path, modes: tuple[str, ...], monkeypatch) -> None:
    """The blocks of `page` in `modes`, in order, in a copy of `start` at `folder`; a `slow
    exact` block in a copy of its own (the tiny blocks before it made tiny data). The variables
    a shell block assigns (NAME=... lines) are assigned again before each later one, also when
    that block itself does not run in `modes`."""
    shutil.copytree(start, folder, symlinks=True)
    prelude: list[str] = []
    for block in runnable(page, ("run", "slow", "slow exact")):
        if block.mode in modes:
            where = folder
            if block.mode == "slow exact":
                where = folder.with_name(f"{folder.name}_{block.line}")
                shutil.copytree(start, where, symlinks=True)
            run_block(block, where, monkeypatch, prelude="\n".join(prelude))
        if block.lang in SHELL:
            prelude += [ln for ln in logical_lines(block.text) if re.match(r"^\w+=", ln)]


@pytest.fixture(scope="session")
def after_readme(tmp_path_factory) -> Iterator[Path]:
    """A fresh checkout in which README.md's runnable blocks have run (tiny settings)."""
    with pytest.MonkeyPatch.context() as mp:
        shrink_demo_data(mp)
        start = fresh_checkout(tmp_path_factory.mktemp("fresh"))
        folder = tmp_path_factory.mktemp("readme") / "checkout"
        run_page(ROOT / "README.md", start, folder, ("run",), mp)
    yield folder


DOC_PAGES = [p for p in PAGES if p.name != "README.md" or p.parent != ROOT]


def test_readme_blocks_run(after_readme):
    """make demo (tiny), then the Python example on what it made."""
    assert (after_readme / "runs" / "demo" / "report" / "report.md").is_file()
    assert (after_readme / "demo-model" / "model.safetensors").is_file()


@pytest.mark.parametrize("page", [p for p in DOC_PAGES if runnable(p, ("run",))],
                         ids=lambda p: p.relative_to(ROOT).as_posix())  # fmt: skip
def test_page_blocks_run(page, after_readme, tmp_path, monkeypatch):
    shrink_demo_data(monkeypatch)
    run_page(page, after_readme, tmp_path / "checkout", ("run",), monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p, ("slow", "slow exact"))],
                         ids=lambda p: p.relative_to(ROOT).as_posix())  # fmt: skip
def test_page_blocks_run_with_the_slow_ones(page, after_readme, tmp_path, monkeypatch):
    shrink_demo_data(monkeypatch)
    run_page(page, after_readme, tmp_path / "checkout", ("run", "slow", "slow exact"), monkeypatch)


@pytest.mark.slow
def test_readme_as_written(tmp_path, monkeypatch):
    """The README's blocks without tiny settings: the whole demo (minutes), then the Python
    example on its checkpoint."""
    folder = fresh_checkout(tmp_path / "checkout")
    for block in runnable(ROOT / "README.md", ("run",)):
        run_block(block, folder, monkeypatch, exact=True)
    assert (folder / "runs" / "demo" / "report" / "report.md").is_file()
