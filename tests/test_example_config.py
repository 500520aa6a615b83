"""The shipped example config (systemd/edged.yaml, /etc/edged/edged.yaml on a fresh box)
against the schema: it says that every key is shown with its default unless marked as an
example, so every value not marked must be the schema's default, and every list of
choices in a comment must be the schema's whole list."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from edged.config import load_settings
from edged.config.schema import schema_text

EXAMPLE = Path(__file__).resolve().parents[1] / "systemd" / "edged.yaml"
CHOICES = re.compile(r"#\s*([\w.-]+(?:\s*\([^)]*\))?(?:\s*\|\s*[\w.-]+(?:\s*\([^)]*\))?)+)")


def schema() -> dict[str, Any]:
    import json

    return dict(json.loads(schema_text()))


def resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None and "anyOf" in node:  # Optional[Model]: the model's branch
        refs = [n for n in node["anyOf"] if "$ref" in n]
        ref = refs[0]["$ref"] if refs else None
    if ref is None:
        return node
    return dict(root["$defs"][ref.split("/")[-1]])


def same(value: Any, default: Any) -> bool:
    if isinstance(default, str) and not isinstance(value, str):
        return str(value) == default
    if isinstance(default, float) and isinstance(value, int):
        return float(value) == default
    return bool(value == default)


def compose(text: str) -> yaml.Node:
    node = yaml.compose(text)
    assert node is not None
    return node


def continued(lines: list[str], at: int) -> str:
    """A key's line with the comment lines that continue its comment ("#   ...")."""
    text = lines[at]
    for line in lines[at + 1:]:
        if not re.match(r"^\s*#\s{3}", line):
            break
        text += " " + line.split("#", 1)[1].strip()
    return text


def walk(node: yaml.Node, shape: dict[str, Any], root: dict[str, Any], lines: list[str],
         path: str, found: list[str], choices: list[tuple[str, str, set[str]]]) -> None:
    """Every scalar not marked as an example, against its default; every comment listing
    choices, against the schema's enum. A section marked as an example is walked too: its
    keys are shown with their defaults unless their own line says otherwise."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            line = lines[key_node.start_mark.line]
            props = shape.get("properties", {})
            if key in props:
                field = props[key]
            elif isinstance(shape.get("additionalProperties"), dict):
                field = shape["additionalProperties"]
            else:
                found.append(f"{path}{key}: not in the schema")
                continue
            marked = "#" in line and "example" in line.split("#", 1)[1]
            if marked and isinstance(value_node, yaml.ScalarNode):
                continue  # an example value; under an example section, each line says
            target = resolve(field, root)
            comment = CHOICES.search(continued(lines, key_node.start_mark.line))
            if comment and isinstance(value_node, yaml.ScalarNode):
                named = {c.split("(")[0].strip() for c in comment.group(1).split("|")}
                choices.append((f"{path}{key}", line, named))
                enum = {str(e) for e in target.get("enum", [])}
                if enum and named != enum:
                    found.append(f"{path}{key}: the comment lists {sorted(named)}, the schema "
                                 f"{sorted(enum)} (line {key_node.start_mark.line + 1})")
            if isinstance(value_node, yaml.ScalarNode):
                if "default" not in field:
                    continue  # a required key: no default to show
                value = yaml.safe_load(value_node.value) if value_node.tag != (
                    "tag:yaml.org,2002:str") else value_node.value
                if not same(value, field["default"]):
                    found.append(f"{path}{key}: {value!r} where the default is "
                                 f"{field['default']!r} (line {key_node.start_mark.line + 1})")
            else:
                walk(value_node, target, root, lines, f"{path}{key}.", found, choices)
    elif isinstance(node, yaml.SequenceNode):
        items = resolve(shape.get("items", {}), root)
        for i, item in enumerate(node.value):
            walk(item, items, root, lines, f"{path}[{i}].", found, choices)


def test_every_value_not_marked_as_an_example_is_the_default() -> None:
    text = EXAMPLE.read_text()
    found: list[str] = []
    choices: list[tuple[str, str, set[str]]] = []
    walk(compose(text), schema(), schema(), text.splitlines(), "", found, choices)
    assert not found, "\n".join(found)
    # The walk did look: the lists of choices it checked are those a field engineer needs.
    checked = {path.split(".")[-1] for path, _, _ in choices}
    assert {"postprocess", "format", "queue", "delegate"} <= checked, checked


def test_the_example_is_a_valid_config(tmp_path: Path) -> None:
    config = tmp_path / "edged.yaml"
    config.write_text(EXAMPLE.read_text())
    settings = load_settings(config)
    assert [r.name for r in settings.routes] == ["cam"]


@pytest.mark.parametrize("bad", ["workers: 1", "queue: fifo"])
def test_a_value_that_is_not_the_default_is_found(bad: str) -> None:
    """The check itself: a changed value not marked as an example fails it."""
    changed = {"workers: 1": "workers: 3", "queue: fifo": "queue: edf"}[bad]
    text = EXAMPLE.read_text()
    assert bad in text
    text = text.replace(bad, changed, 1)
    found: list[str] = []
    walk(compose(text), schema(), schema(), text.splitlines(), "", found, [])
    assert any(changed.split(":")[0] in f for f in found), found
