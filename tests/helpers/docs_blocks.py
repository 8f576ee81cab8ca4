"""The fenced blocks of README.md and docs/, and the commands in them (for tests/test_docs_blocks.py).

A block may carry a marker on the line before it (blank lines between are allowed):

    <!-- docs-test: skip (needs the internet) -->   never run; the reason is one of SKIP_WHY
    <!-- docs-test: slow -->                       run by the slow suite only
    <!-- docs-test: slow exact -->                 the same, and without the tiny settings
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "docs" / "results").glob("*/README.md")),
]
#: why a block may be left out, each said beside the block in words a reader sees
SKIP_WHY = ("needs the internet", "needs a GPU", "needs real data", "runs this test suite",
            "a timing: needs an idle machine")  # fmt: skip
MARKER = re.compile(r"<!-- docs-test: (?P<what>skip|slow|slow exact)(?: \((?P<why>[^)]*)\))? -->")
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\s*$")
SHELL = ("bash", "sh", "shell")
COMMAND_START = ("gsag ", "python ", "python3 ", "make ", "torchrun ", "srun ")
#: words that open a shell command without being it
KEYWORDS = ("do", "then", "else", "time", "!", "(", "{")


@dataclass
class Block:
    """One fenced block of a page."""

    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    mode: str  # "run", "slow", "slow exact" or "skip"
    why: str = ""

    @property
    def name(self) -> str:
        try:
            return f"{self.page.relative_to(ROOT).as_posix()}:{self.line}"
        except ValueError:
            return f"{self.page.name}:{self.line}"

    @property
    def is_command(self) -> bool:
        """A shell or Python block, or an untyped one that starts commands."""
        if self.lang in (*SHELL, "python"):
            return True
        lines = [ln.strip() for ln in self.text.splitlines()]
        return not self.lang and any(ln.startswith(COMMAND_START) for ln in lines)


def page_blocks(page: Path) -> list[Block]:
    """The fenced blocks of `page`, each with the marker before it, if any."""
    lines = page.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```"))
        body = "\n".join(ln[len(fence["indent"]) :] for ln in lines[i + 1 : end])
        before = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
        marker = MARKER.search(before)
        mode = marker["what"] if marker else "run"
        why = (marker["why"] or "") if marker else ""
        blocks.append(Block(page, i + 1, fence["lang"], body, mode, why))
        i = end + 1
    return blocks


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in page_blocks(page)]


def logical_lines(text: str) -> list[str]:
    """Shell lines with their backslash continuations joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [ln for ln in joined.splitlines() if ln.strip()]


# ------------------------------------------------------------ the commands of a shell block


#: what a `$(...)` stands for: its output is not known here; the docs use it for a KEY=VALUE
#: `--set` argument (tools/choose_lr.py) or a number, and this word passes for either
SUBSTITUTED = "substituted.value=0"


def _expand(line: str, env: dict[str, str]) -> str:
    """`line` with each `$(...)` as SUBSTITUTED and the variables of `env` put in."""
    while "$(" in line:
        start = line.index("$(")
        depth, end = 0, start + 1
        for end in range(start + 1, len(line)):
            depth += {"(": 1, ")": -1}.get(line[end], 0)
            if depth == 0:
                break
        line = line[:start] + SUBSTITUTED + line[end + 1 :]
    line = re.sub(r"(?<=\s)\d+>", ">", line)  # 2>&1: no argument "2"
    return re.sub(
        r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)).replace('"', ""), line
    )


def simple_commands(text: str, env: dict[str, str]) -> Iterator[list[str]]:
    """The simple commands of a shell block, as words: split at `;`, `&&`, `||`, `|` and
    redirections, variables assigned before (in `env`, which this fills) put in, a `for`
    loop's variable taking its first value, and `NAME=value` prefixes left out."""
    for line in logical_lines(text):
        for loop in re.finditer(r"\bfor (\w+) in (\S+)", line):
            env[loop.group(1)] = loop.group(2)
        lexer = shlex.shlex(_expand(line, env), posix=True, punctuation_chars=";&|<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        redirected = False
        for word in [*lexer, ";"]:
            if (word and set(word) <= set("<>")) or word in (">&", "&>"):
                redirected = True  # the words up to the next command are where it goes
            elif word and set(word) <= set(";&|"):
                yield from _one_command(words, env)
                words, redirected = [], False
            elif not redirected:
                words.append(word)


def _one_command(words: list[str], env: dict[str, str]) -> Iterator[list[str]]:
    assigned = {}
    while words and (words[0] in KEYWORDS or re.match(r"^\w+=", words[0])):
        if words[0] not in KEYWORDS:
            name, _, value = words[0].partition("=")
            assigned[name] = value
        words = words[1:]
    if not words:
        env.update(assigned)  # NAME=value alone sets a shell variable, before a command not
    elif words[0] not in ("for", "done", "fi"):
        yield words


def gsag_argv(words: list[str]) -> list[str] | None:
    """The arguments of a `gsag`, `python -m gsag` or `torchrun ... -m gsag` command, else None."""
    if words[0] == "gsag":
        return words[1:]
    for i in range(len(words) - 1):
        if words[i : i + 2] == ["-m", "gsag"] and Path(words[0]).name.startswith(
            ("python", "torchrun", "srun")
        ):
            return words[i + 2 :]
    return None


def make_targets(makefile: Path = ROOT / "Makefile") -> dict[str, list[str]]:
    """Each target of the Makefile and its recipe's lines."""
    targets: dict[str, list[str]] = {}
    current: list[str] = []
    for line in makefile.read_text().splitlines():
        head = re.match(r"^([\w.-]+)\s*:(?!=)", line)
        if head:
            current = targets.setdefault(head.group(1), [])
        elif line.startswith("\t"):
            current.append(line.strip())
    return targets


def gsag_parse_error(argv: list[str]) -> str | None:
    """What argparse says against `gsag ARGV`, or None when the parser takes it."""
    from gsag.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as e:
        if e.code:
            return err.getvalue().strip().splitlines()[-1]
    return None


def command_problems(words: list[str], tracked: set[str]) -> list[str]:
    """What is wrong with one documented command: a `gsag` one argparse refuses, a `make`
    target or a repository file (configs/, tools/) that does not exist."""
    problems = []
    argv = gsag_argv(words)
    if argv is not None:
        error = gsag_parse_error(argv)
        if error:
            problems.append(f"`gsag {shlex.join(argv)}`: {error}")
    if words[0] == "make":
        targets = make_targets()
        missing = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
        problems += [
            f"`make {w}`: no such target in the Makefile" for w in missing if w not in targets
        ]
    for word in words:
        if re.match(r"^(configs|tools)/[\w./-]+\.(ya?ml|py|sh)$", word) and word not in tracked:
            problems.append(f"`{shlex.join(words)}`: {word} is not in the repository")
    return problems


def block_problems(block: Block, env: dict[str, str], tracked: set[str]) -> list[str]:
    """What is wrong with the commands of `block` (a Python block: whether it compiles)."""
    if block.lang == "python":
        try:
            compile(block.text, block.name, "exec")
        except SyntaxError as e:
            return [f"{block.name}: {e}"]
        return []
    if not block.is_command:
        return []
    try:
        commands = list(simple_commands(block.text, env))
    except ValueError as e:  # shlex: an unclosed quote
        return [f"{block.name}: {e}"]
    return [f"{block.name}: {p}" for words in commands for p in command_problems(words, tracked)]
