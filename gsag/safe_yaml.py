"""YAML read strictly, for every YAML file or value gsag reads (configs, `--set` values,
classes.yaml).

- A key written twice in one mapping (a section or a key inside one) is an error naming both
  lines; YAML would silently keep the last.
- The document is bounded before anything walks it: nesting depth (`MAX_DEPTH`, checked on the
  event stream, so a thousand nested lists is one error, not a RecursionError), and the number
  of values once aliases are expanded (`MAX_VALUES`, counted on the node graph, so an alias bomb
  such as nine lists of nine references, ten levels deep, is refused at once instead of hanging
  whatever walks its 9**10 values). A recursive alias (`&a [*a]`) is refused too.
"""

from __future__ import annotations

from typing import Any

import yaml

#: Deepest nesting of mappings and lists, also after expanding aliases (configs use 3 or 4).
MAX_DEPTH = 64
#: Most values (scalars, lists and mappings) once aliases are expanded.
MAX_VALUES = 100_000


class YamlError(ValueError):
    """A YAML text that cannot be read; the message names the source and the line."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that names one key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges, by design
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader names it below
                continue
            if first is not None:
                raise YamlError(
                    f"line {line}: key {key!r} is written twice (first on line {first}); keep one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str) -> Any:
    """The value of the YAML document `text` (None when empty).

    Raises:
        YamlError: not valid YAML, a key written twice, nesting deeper than `MAX_DEPTH`, more
            than `MAX_VALUES` values after expanding aliases, or a recursive alias; the message
            starts with `source` and names the line where it can.
    """
    try:
        _check_depth(text)
        loader = _StrictLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_size(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except YamlError as e:
        raise YamlError(f"{source}: {e}") from None
    except yaml.YAMLError as e:
        raise YamlError(f"{source}: not valid YAML: {' '.join(str(e).split())}") from None


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than `MAX_DEPTH`, from the parser's events (no recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise YamlError(
                    f"line {line}: nested more than {MAX_DEPTH} levels deep; a gsag config "
                    "needs a handful"
                )
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_size(root: yaml.Node) -> None:
    """Refuse a node graph that expands to more than `MAX_VALUES` values or `MAX_DEPTH` levels,
    or that refers to itself. Each node is visited once (aliases share their node), without
    recursion, so the check takes time in the size of the text, not of the expansion."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            kids = _children(node)
            size[key] = min(MAX_VALUES + 1, 1 + sum(size[id(k)] for k in kids))
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            active.discard(key)
            continue
        if key in size:
            continue
        if key in active:
            raise YamlError(
                f"line {node.start_mark.line + 1}: an alias refers to a value that holds it "
                "(a recursive anchor); write the value out"
            )
        active.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)
    if size[id(root)] > MAX_VALUES or depth[id(root)] > MAX_DEPTH + 1:
        raise YamlError(
            f"its aliases (*name) expand to more than {MAX_VALUES} values or {MAX_DEPTH} levels; "
            "write the values out"
        )
