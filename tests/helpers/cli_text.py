"""Find `gsag CMD ... --flag` commands and `--set key=value` pairs in text (messages, docs) and
check them against the real parsers and the config schema."""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Iterator
from functools import cache

from gsag.cli import build_parser
from gsag.config import Config

#: `gsag CMD [ACTION]` (also after `python -m` or `torchrun ... -m`)
COMMAND = re.compile(r"(?<![\w./-])gsag[ \t]+([a-z][a-z-]*)")
#: a flag: `--name`, not part of a longer word
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*(?![\w])")
#: where a command written in text stops: a quote, a backtick, a shell separator or comment, a
#: line end without a continuation backslash, or a sentence going on (", ")
END = re.compile(r"[`'\"|;#]|&&|, |\)|(?<!\\)\n")
#: `--set a.b=1 c.d=2` (or `--cfg-options`): the pairs up to the next flag or the end
SET = re.compile(r"--(?:set|cfg-options)((?:[ \t]+(?:\\\n[ \t]*)?[A-Za-z_][\w.]*=[^\s`'\"]*)+)")
PAIR = re.compile(r"([a-z_][\w.]*)=")  # KEY=VALUE placeholders are not keys
ROOT_OPTIONS = {"--debug", "--version", "--help", "-h"}
#: keys the docs use as placeholders in `--set a.b=c`, `--set key=value`
PLACEHOLDER_KEYS = {"a", "b", "c", "a.b", "key", "section.key"}


@dataclasses.dataclass(frozen=True)
class Usage:
    """One `gsag CMD ...` found in a text: its command words and the flags after them."""

    command: str  # "train", or "data prepare-voc" for a data action
    flags: tuple[str, ...]
    offset: int  # where `gsag` starts in the text


@cache
def command_parsers() -> dict[str, argparse.ArgumentParser]:
    """ "train" -> its parser, ..., and "data ACTION" -> the parser of each data action."""
    parsers: dict[str, argparse.ArgumentParser] = {}
    for top in _subparsers(build_parser()).items():
        parsers[top[0]] = top[1]
        for action, sub in _subparsers(top[1]).items():
            parsers[f"{top[0]} {action}"] = sub
    return parsers


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(command: str, visible_only: bool = False) -> set[str]:
    """The option strings `command`'s parser accepts (plus gsag's own --debug/--version)."""
    found = set(ROOT_OPTIONS)
    for action in command_parsers()[command]._actions:
        if not (visible_only and action.help == argparse.SUPPRESS):
            found.update(action.option_strings)
    return found


def usages(text: str) -> Iterator[Usage]:
    """Every `gsag CMD ...` in `text` whose CMD is a gsag command, with the flags that follow."""
    parsers = command_parsers()
    for match in COMMAND.finditer(text):
        command = match.group(1)
        if command not in parsers:
            continue
        end = END.search(text, match.end())
        tail = text[match.end() : end.start() if end else len(text)]
        words = tail.split()
        if words and f"{command} {words[0]}" in parsers:
            command = f"{command} {words[0]}"
        yield Usage(command, tuple(FLAG.findall(tail)), match.start())


def set_keys(text: str) -> Iterator[tuple[str, int]]:
    """(key, offset) of every pair after a `--set` / `--cfg-options` in `text`."""
    for match in SET.finditer(text):
        for pair in PAIR.finditer(match.group(1)):
            yield pair.group(1), match.start(1) + pair.start(1)


def key_problem(key: str) -> str | None:
    """Why `key` is not a config key (None when it is one): section.name or model.kwargs.NAME."""
    sections = {f.name: f.type for f in dataclasses.fields(Config)}
    parts = key.split(".")
    if key in PLACEHOLDER_KEYS:
        return None
    if len(parts) == 3 and parts[:2] == ["model", "kwargs"]:
        return None
    if len(parts) != 2 or parts[0] not in sections:
        return f"{key} is not section.key (sections: {', '.join(sections)})"
    section = getattr(Config(), parts[0])
    names = [f.name for f in dataclasses.fields(section)]
    if parts[1] not in names:
        return f"{key} is not a key of {parts[0]} ({', '.join(names)})"
    return None


def line_of(text: str, offset: int) -> int:
    """1-based line number of `offset` in `text`."""
    return text.count("\n", 0, offset) + 1
