"""The rules of the house that docs/code.md states, checked on the source as it is.

Imports point down the levels of docs/code.md: every `import` and `from ... import` of gsag's
own modules (at the top of a file, inside a function, under `TYPE_CHECKING`, relative ones) and
every module named in a package's `lazy_attributes` table goes to a file of the same level or a
lower one, and no files import each other in a circle. The imports are read with `ast`, so a
lazy import inside a function counts as much as a top-level one: Python runs it all the same.

Sizes: a module has at most `MODULE_LINES` lines and a function at most `FUNCTION_LINES`
(decorators, signature and docstring included), unless docs/code.md names it under "Above the
limits" and says why it is clearer whole; a name there that is within the limits is stale.
"""

from __future__ import annotations

import ast
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_MAP = ROOT / "docs" / "code.md"
PACKAGE = "gsag"
MODULE_LINES = 400
FUNCTION_LINES = 80


@dataclass(frozen=True)
class Import:
    """One import of a gsag file by another: `source` (path) imports `target` (path) at `line`."""

    source: str
    target: str
    line: int


def read_levels(text: str) -> list[tuple[str, list[str]]]:
    """The ```levels block of docs/code.md as (level name, [paths]), lowest level first.

    The block lists the highest level first, one per line: its name, then files
    (`gsag/config.py`) and folders (`gsag/engine/`); words in parentheses are comments.
    """
    match = re.search(r"^```levels\n(.*?)^```", text, re.S | re.M)
    if match is None:
        raise AssertionError(f"{CODE_MAP.name} has no ```levels block")
    levels = []
    for line in match.group(1).splitlines():
        line = re.sub(r"\(.*?\)", "", line).strip()
        if line:
            name, *paths = line.split()
            levels.append((name, [p for p in paths if p.startswith(f"{PACKAGE}/")]))
    return levels[::-1]


def module_files(root: Path) -> dict[str, str]:
    """{module name: file path relative to `root`'s parent} of every file of the package."""
    files = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = rel.as_posix()
    return files


def _resolve(name: str, files: dict[str, str]) -> str | None:
    """The file of module `name`, or of the nearest package above it (`gsag.x.Name` -> gsag.x)."""
    while name and name not in files:
        name = name.rpartition(".")[0]
    return files.get(name)


def _lazy_targets(node: ast.Call) -> Iterable[str]:
    """Module names in a `lazy_attributes(__name__, {name: "gsag.x"})` table."""
    func = node.func
    called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
    if called != "lazy_attributes":
        return
    for arg in node.args:
        if isinstance(arg, ast.Dict):
            for value in arg.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    yield value.value


def read_imports(root: Path) -> list[Import]:
    """Every import of one of the package's files by another, wherever in the file it is."""
    files = module_files(root)
    found = []
    for module, path in files.items():
        tree = ast.parse((root.parent / path).read_text(), path)
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: `from . import x`, `from ..y import z`
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    origin = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    origin = node.module or ""
                targets = [f"{origin}.{alias.name}" for alias in node.names] or [origin]
                # `from gsag.x import Name`: the module gsag.x; `from gsag import x`: gsag.x
                targets = [t if t in files else origin for t in targets]
            elif isinstance(node, ast.Call):
                targets = list(_lazy_targets(node))
            for name in targets:
                if name.split(".")[0] != root.name:
                    continue
                target = _resolve(name, files)
                if target is not None and target != path:
                    found.append(Import(path, target, node.lineno))
    return found


def level_of(path: str, levels: list[tuple[str, list[str]]]) -> int | None:
    """The index in `levels` of the entry naming `path` or the nearest folder holding it."""
    best: tuple[int, int] | None = None  # (length of the entry, level)
    for index, (_, entries) in enumerate(levels):
        for entry in entries:
            holds = path == entry or (entry.endswith("/") and path.startswith(entry))
            if holds and (best is None or len(entry) > best[0]):
                best = (len(entry), index)
    return None if best is None else best[1]


def circles(imports: Iterable[Import]) -> list[list[str]]:
    """Each group of files that import each other round a circle, as one circle through all
    of them: [a, b, ..., a] (Tarjan's strongly connected components, then a walk)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        graph.setdefault(imp.source, set()).add(imp.target)
        graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_walk_round(group, graph) for group in sorted(groups)]


def _walk_round(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A circle that starts and ends at the group's first file and visits every member: the
    shortest path to each member not yet on it, in turn, then back."""
    members = set(group)

    def path(start: str, goal: str) -> list[str]:  # breadth-first, inside the group
        previous: dict[str, str | None] = {start: None}
        queue = deque([start])
        while queue and goal not in previous:
            node = queue.popleft()
            for nxt in sorted(graph[node] & members):
                if nxt not in previous:
                    previous[nxt] = node
                    queue.append(nxt)
        steps = [goal]
        while (before := previous[steps[-1]]) is not None:
            steps.append(before)
        return steps[::-1]

    walk = [group[0]]
    for member in group[1:]:
        if member not in walk:
            walk += path(walk[-1], member)[1:]
    return walk + path(walk[-1], group[0])[1:]


def house_problems(root: Path, levels_text: str) -> list[str]:
    """One line per file without a level, stale level entry, upward import and circle."""
    levels = read_levels(levels_text)
    names = [name for name, _ in levels]
    files = set(module_files(root).values())
    problems = []
    for name, entries in levels:
        for entry in entries:
            if not any(f == entry or (entry.endswith("/") and f.startswith(entry)) for f in files):
                problems.append(f"level {name} names {entry}, which does not exist")
    for path in sorted(files):
        if level_of(path, levels) is None:
            problems.append(f"{path} has no level: add it to the ```levels block of docs/code.md")
    imports = read_imports(root)
    for imp in imports:
        here, there = level_of(imp.source, levels), level_of(imp.target, levels)
        if here is not None and there is not None and there > here:
            problems.append(
                f"{imp.source}:{imp.line} imports {imp.target} upward: level {names[here]} "
                f"imports level {names[there]}"
            )
    for circle in circles(imports):
        members = ", ".join(sorted(set(circle)))
        problems.append(
            f"import circle of {len(set(circle))} files ({members}): {' -> '.join(circle)}"
        )
    return problems


def test_imports_point_down_the_levels_of_the_code_map_and_never_go_round():
    problems = house_problems(ROOT / PACKAGE, CODE_MAP.read_text())
    assert not problems, "\n".join(problems)


def oversized(root: Path) -> dict[str, int]:
    """{`gsag/x.py` or `gsag/x.py:Class.function`: lines} of every module and function of the
    package above its limit."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root.parent).as_posix()
        text = path.read_text()
        if len(text.splitlines()) > MODULE_LINES:
            found[name] = len(text.splitlines())

        def visit(node: ast.AST, prefix: str, name: str = name) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    qualname = f"{prefix}{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                        lines = (child.end_lineno or child.lineno) - start + 1
                        if lines > FUNCTION_LINES:
                            found[f"{name}:{qualname}"] = lines
                    visit(child, f"{qualname}.")

        visit(ast.parse(text), "")
    return found


def named_above_limits(text: str) -> set[str]:
    """The modules and functions listed as "- `gsag/...`" under "## Above the limits"."""
    match = re.search(r"^## Above the limits\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return set(re.findall(r"^- `(gsag/[^`]+)`", match.group(1), re.M)) if match else set()


def size_problems(root: Path, code_map: str) -> list[str]:
    """One line per module or function above its limit and not named in the code map, and per
    name in the code map that is within the limits (or gone)."""
    found, named = oversized(root), named_above_limits(code_map)
    problems = [
        f"{name} has {lines} lines, above the limit of "
        f"{FUNCTION_LINES if ':' in name else MODULE_LINES}: split it where a job separates, or "
        "name it under 'Above the limits' in docs/code.md, saying why it is clearer whole"
        for name, lines in found.items()
        if name not in named
    ]
    stale = sorted(named - set(found))
    return problems + [f"docs/code.md names {n} above the limits; it is not" for n in stale]


def test_modules_and_functions_stay_within_the_limits_or_are_named_in_the_code_map():
    problems = size_problems(ROOT / PACKAGE, CODE_MAP.read_text())
    assert not problems, "\n".join(problems)


def test_the_size_check_counts_decorators_docstrings_and_methods(tmp_path):
    body = "".join(f"        x{i} = {i}\n" for i in range(FUNCTION_LINES - 2))
    method = f'class A:\n    @staticmethod\n    def f():\n        """doc"""\n{body}'
    padding = "\n" * (MODULE_LINES - len(method.splitlines()))  # the module at its limit
    root = _package(tmp_path, {"m.py": method + padding})
    assert oversized(root) == {"gsag/m.py:A.f": FUNCTION_LINES + 1}
    code_map = "## Above the limits\n\n- `gsag/m.py:A.f`: one table\n- `gsag/gone.py`: old\n"
    assert size_problems(root, code_map) == [
        "docs/code.md names gsag/gone.py above the limits; it is not"
    ]
    (root / "m.py").write_text(method + padding + "\n")
    assert oversized(root)["gsag/m.py"] == MODULE_LINES + 1
    problems = "\n".join(size_problems(root, ""))
    assert "gsag/m.py has 401 lines, above the limit of 400" in problems
    assert "gsag/m.py:A.f has 81 lines, above the limit of 80" in problems


def test_the_import_reader_sees_every_kind_of_import():
    """Top-level, in a function, under TYPE_CHECKING, relative and lazy-table imports all count."""
    imports = {(i.source, i.target) for i in read_imports(ROOT / PACKAGE)}
    assert len(imports) > 150
    assert ("gsag/__init__.py", "gsag/lazy.py") in imports  # top level
    assert ("gsag/cli.py", "gsag/errors.py") in imports  # inside a function
    assert ("gsag/data/__init__.py", "gsag/data/voc.py") in imports  # TYPE_CHECKING, lazy table


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "gsag"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


LEVELS = "```levels\ntop    gsag/top.py gsag/cli/\nmiddle gsag/mid/\nbottom gsag/low.py\n```\n"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"low.py": "def f():\n    from gsag.mid import a\n", "mid/a.py": ""},
         ["gsag/low.py:2 imports gsag/mid/a.py upward: level bottom imports level middle"]),
        ({"mid/a.py": "from . import b\n", "mid/b.py": "from .a import x\n"},
         ["import circle of 2 files (gsag/mid/a.py, gsag/mid/b.py): gsag/mid/a.py -> "
          "gsag/mid/b.py -> gsag/mid/a.py"]),
        ({"mid/a.py": "import gsag.mid.b\n", "mid/b.py": "if 1:\n    from gsag.mid import c\n",
          "mid/c.py": "from gsag import mid\n", "mid/__init__.py": "from gsag.mid.a import x\n"},
         ["import circle of 4 files (gsag/mid/__init__.py, gsag/mid/a.py, gsag/mid/b.py, "
          "gsag/mid/c.py): gsag/mid/__init__.py -> gsag/mid/a.py -> gsag/mid/b.py -> "
          "gsag/mid/c.py -> gsag/mid/__init__.py"]),
        ({"lazy.py": "", "top.py": "from gsag.lazy import lazy_attributes\nlazy_attributes(1, {'x': 'gsag.low'})\n",
          "low.py": "import gsag.top\n"},
         ["gsag/low.py:1 imports gsag/top.py upward", "gsag/low.py -> gsag/top.py -> gsag/low.py", "gsag/lazy.py has no level"]),
        ({"cli/x.py": "from gsag.low import y\nfrom gsag.mid.a import z\n", "mid/a.py": ""},
         ["level bottom names gsag/low.py, which does not exist"]),
    ],
)  # fmt: skip
def test_the_checker_finds_upward_imports_and_circles(tmp_path, files, expected):
    found = "\n".join(house_problems(_package(tmp_path, files), LEVELS))
    for text in expected:
        assert text in found, found
