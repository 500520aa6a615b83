"""Read a YAML file and remember the line of every key, so config errors can point at it.

A leaf module: it imports nothing from edged but its errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edged.errors import ConfigError

KeyPath = tuple[str | int, ...]


def load_yaml_with_lines(path: Path) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """Parse ``path`` and return its mapping and the 1-based line of every key path.

    Duplicate keys, which PyYAML would silently resolve to the last one, are errors.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(str(path), [f"{where}not valid YAML: {exc.problem}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from exc
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["the top level must be a mapping of keys to values"])
    lines: dict[KeyPath, int] = {}
    duplicates: list[str] = []
    if node is not None:
        _walk(node, (), lines, duplicates, set())
    if duplicates:
        raise ConfigError(str(path), duplicates)
    return data, lines


def _walk(
    node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], dups: list[str], walked: set[int]
) -> None:
    # An alias is the very node its anchor names: walk each node once, or a self-referencing
    # anchor recurses forever (and nested aliases blow up exponentially). Keys reached only
    # through an alias then report the alias's line, via line_of's nearest ancestor.
    if id(node) in walked:
        return
    walked.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            line = key_node.start_mark.line + 1
            if key in seen:
                dups.append(f"{format_path(child)} (line {line}): duplicate key")
            seen.add(key)
            lines[child] = line
            _walk(value_node, child, lines, dups, walked)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines, dups, walked)


def format_path(path: KeyPath) -> str:
    """``('routes', 0, 'input')`` -> ``routes[0].input``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def line_of(path: KeyPath, lines: dict[KeyPath, int]) -> int | None:
    """The line of ``path`` or of its nearest ancestor that the file holds."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None
