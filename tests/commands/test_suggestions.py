"""Every option a message of gsag suggests exists on the command that shows the message.

The strings of gsag's source are read with `ast`. A `gsag CMD ... --flag` inside a string is
checked against CMD's parser; a bare `--flag` against the commands that can show the message:
its own command for gsag/commands/CMD.py, the `OWNERS` table for the shared modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers.cli_text import FLAG, command_parsers, key_problem, options, set_keys, usages

SOURCE = Path(__file__).resolve().parents[2] / "gsag"

#: shared module -> the commands whose users can see its messages ("*" = every command)
OWNERS: dict[str, list[str]] = {
    "cli.py": ["*device"],  # --device messages: the commands that have --device
    "errors.py": ["*"],
    "ablate/grid.py": ["ablate"],
    "ablate/run.py": ["ablate"],
    "bench.py": ["bench"],
    "bench/memory.py": ["bench"],
    "engine/run_dir.py": ["train", "demo"],  # the refusal and the lock of a run folder
    "engine/checkpoint.py": ["train", "demo"],  # resuming a run that does not fit its config
    "engine/run_state.py": ["train", "demo"],  # resume rules (what a resumed config may change)
    "engine/infer.py": ["eval", "predict"],  # inference options
    "engine/evaluate.py": ["eval", "predict"],
    "engine/train.py": ["train", "demo", "ablate"],
    "engine/checks.py": ["train", "demo", "ablate"],  # stopped runs, the model section
    "engine/datasets.py": ["train", "demo", "ablate"],  # missing training data (ensure_data)
    "trained/export.py": ["export"],
    "trained/card.py": ["save", "push"],  # the card's evaluation (--evaluation)
    "trained/save.py": ["save", "push"],  # --evaluation; an earlier save names `gsag save`
}


def _strings(tree: ast.AST) -> list[tuple[str, int, bool]]:
    """(text, line, is_docstring) of every string literal; f-string fields become `{}`."""
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            docstrings.add(id(first.value))
    inner = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [v.value if isinstance(v, ast.Constant) else "{}" for v in node.values]
            found.append(("".join(map(str, parts)), node.lineno, False))
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inner
        ):
            found.append((node.value, node.lineno, id(node) in docstrings))
    return found


def _owners(module: str) -> list[str] | None:
    parsers = command_parsers()
    if module.startswith("commands/") and module != "commands/__init__.py":
        name = Path(module).stem
        command = {"evaluate": "eval"}.get(name, name)
        return [c for c in parsers if c == command or c.startswith(f"{command} ")]
    owners = OWNERS.get(module)
    if owners == ["*"]:
        return [c for c in parsers if " " not in c]
    if owners == ["*device"]:
        return [c for c in parsers if "--device" in options(c)]
    return owners


def _problems() -> list[str]:
    problems = []
    for path in sorted(SOURCE.rglob("*.py")):
        module = path.relative_to(SOURCE).as_posix()
        for text, line, docstring in _strings(ast.parse(path.read_text())):
            where = f"gsag/{module}:{line}"
            problems += _check_text(text, where, module, docstring)
    return problems


def _check_text(text: str, where: str, module: str, docstring: bool) -> list[str]:
    if FLAG.fullmatch(text):
        return []  # an option being defined (add_argument, add_alias), not a message
    keys = [] if docstring else [k for k, _ in set_keys(text)]  # docstrings may say `a.b=c`
    problems = [f"{where}: --set {k}: {why}" for k in keys if (why := key_problem(k))]
    explicit = set()
    for usage in usages(text):
        known = options(usage.command, visible_only=True)
        for flag in usage.flags:
            explicit.add(flag)
            if flag not in known:
                problems.append(f"{where}: `gsag {usage.command}` has no {flag}")
    bare = [f for f in FLAG.findall(text) if f not in explicit]
    if docstring or not bare or module == "commands/__init__.py":
        return problems  # the shared helpers' help texts name the option they define
    owners = _owners(module)
    if owners is None:
        return [*problems, f"{where}: suggests {bare}; add gsag/{module} to OWNERS"]
    if module.startswith("commands/"):  # its own command: one of its (data) actions has it
        if not any(f in options(c, visible_only=True) for c in owners for f in bare):
            problems.append(f"{where}: {bare} is not an option of gsag {owners[0]}")
        return problems
    for command in owners:
        missing = [f for f in bare if f not in options(command, visible_only=True)]
        if missing:
            problems.append(f"{where}: shown by gsag {command}, which has no {missing}")
    return problems


def test_every_suggested_option_exists_on_its_command():
    problems = _problems()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("text", "module", "expected"),
    [
        ("wait, or use another --run-dir", "engine/run_dir.py", "gsag demo, which has no"),
        ("run 'gsag data prepare-cityscapes --root X'", "data/x.py", "has no --root"),
        ("e.g. --set train.lr=0.01", "commands/__init__.py", "train.lr is not a key of train"),
        ("raise --show", "commands/data.py", None),
        ("try --nope", "data/new.py", "add gsag/data/new.py to OWNERS"),
    ],
)
def test_the_checker_finds_what_the_issue_found(text, module, expected):
    """The mistakes of issue 20 (and a module missing from OWNERS) are reported."""
    found = "\n".join(_check_text(text, "x", module, docstring=False))
    assert (expected in found) if expected else not found
