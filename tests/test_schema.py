"""The configuration's JSON Schema and reference: generated from the models, checked in,
current, complete, and agreeing with ``edged check`` on what is wrong and where."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from edged.config import RESTART_ONLY, load_settings
from edged.config.reference import reference_markdown
from edged.config.schema import json_schema, schema_text
from edged.errors import ConfigError
from edged.yamlfile import KeyPath, format_path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "systemd" / "edged.yaml"
STALE = "stale: run scripts/config_docs.sh and commit the result"
VALIDATOR = jsonschema.Draft202012Validator(json_schema())


# --- generated and current ---------------------------------------------------------------


def test_checked_in_schema_is_current() -> None:
    assert (REPO / "docs" / "edged.schema.json").read_text() == schema_text(), STALE


def test_checked_in_reference_is_current() -> None:
    assert (REPO / "docs" / "configuration.md").read_text() == reference_markdown(), STALE


def test_the_commands_print_what_is_checked_in() -> None:
    for command, path in (("schema", "docs/edged.schema.json"),
                          ("config-doc", "docs/configuration.md")):
        done = subprocess.run([sys.executable, "-m", "edged", command], capture_output=True,
                              text=True, cwd=REPO, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout == (REPO / path).read_text()


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())


def test_example_config_names_the_schema_next_to_it() -> None:
    first = EXAMPLE.read_text().splitlines()[0]
    match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert match is not None, first
    beside = EXAMPLE.parent / match.group(1)  # the language server resolves it from the file
    assert beside.read_text() == schema_text()


# --- complete ----------------------------------------------------------------------------


def properties(node: dict[str, Any], root: dict[str, Any], path: str = ""
               ) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Every key in the schema: (key path, its schema, required?), sections walked into."""
    required = set(node.get("required", ()))
    for key, prop in node.get("properties", {}).items():
        here = f"{path}.{key}" if path else key
        yield here, prop, key in required
        for inner, suffix in objects_in(prop, root):
            yield from properties(inner, root, here + suffix)


def objects_in(prop: dict[str, Any], root: dict[str, Any]
               ) -> Iterator[tuple[dict[str, Any], str]]:
    if "$ref" in prop:
        yield root["$defs"][prop["$ref"].rsplit("/", 1)[1]], ""
    for option in prop.get("anyOf", ()):
        yield from objects_in(option, root)
    if isinstance(prop.get("items"), dict):
        yield from ((o, "[]" + s) for o, s in objects_in(prop["items"], root))
    if isinstance(prop.get("additionalProperties"), dict):
        yield from ((o, ".<name>" + s) for o, s in objects_in(prop["additionalProperties"], root))


ALL_KEYS = list(properties(json_schema(), json_schema()))


def test_the_walk_sees_the_nested_sections() -> None:
    paths = {p for p, _, _ in ALL_KEYS}
    assert {"mqtt.tls.ca_file", "models.<name>.anomaly.threshold",
            "routes[].input.max_pixels", "routes[].window.size"} <= paths
    assert len(paths) > 90


@pytest.mark.parametrize(("path", "prop"), [(p, s) for p, s, _ in ALL_KEYS],
                         ids=[p for p, _, _ in ALL_KEYS])
def test_every_key_has_a_description(path: str, prop: dict[str, Any]) -> None:
    assert len(prop.get("description", "").strip()) >= 10, f"{path}: add Field(description=)"


def test_every_optional_key_has_its_default_in_the_schema() -> None:
    # device_id's default is the host name of the box edged runs on, not a constant.
    missing = [p for p, prop, required in ALL_KEYS
               if not required and "default" not in prop and p != "device_id"]
    assert missing == []


def test_bounds_reach_the_schema() -> None:
    keys = {p: s for p, s, _ in ALL_KEYS}
    assert keys["mqtt.port"]["minimum"] == 1
    assert keys["mqtt.port"]["maximum"] == 65535
    assert keys["routes[].deadline_ms"]["exclusiveMinimum"] == 0
    assert keys["models.<name>.workers"]["maximum"] == 32


# --- the schema and `edged check` agree ------------------------------------------------


def schema_errors(data: Any) -> set[str]:
    """Key paths the JSON Schema validator objects to, as ``edged check`` writes them."""
    return {format_path(p) for e in VALIDATOR.iter_errors(data) for p in error_paths(e)}


def error_paths(error: jsonschema.ValidationError) -> Iterator[KeyPath]:
    path: KeyPath = tuple(error.absolute_path)
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        known = schema.get("properties", {})
        instance = error.instance if isinstance(error.instance, dict) else {}
        yield from ((*path, key) for key in instance if key not in known)
    elif error.validator == "anyOf" and error.context:
        # `X | None`: what is wrong inside X, not that the value is not null either.
        inner = [e for e in error.context
                 if not (isinstance(e.schema, dict) and e.schema.get("type") == "null")]
        if not inner:
            yield path
        for sub in inner:
            yield from error_paths(sub)
    else:
        yield path


def check_errors(tmp_path: Path, data: Any) -> set[str]:
    """Key paths ``edged check`` names (the configuration half of it: load_settings)."""
    path = tmp_path / "edged.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return {problem.split(" (line", 1)[0] for problem in info.value.problems}


def example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return data


def test_the_example_configs_validate_against_the_schema() -> None:
    for path in (EXAMPLE, REPO / "tests" / "data" / "config_valid.yaml"):
        data = yaml.safe_load(path.read_text())
        assert schema_errors(data) == set(), path
        load_settings(path)  # and edged takes them too


def test_the_example_shows_the_defaults_it_claims_to() -> None:
    # systemd/edged.yaml: "every key below is shown with its default unless it says
    # example"; device_id, models and routes are the examples.
    keys = {p: s for p, s, _ in ALL_KEYS}
    shown = {k: v for k, v in example().items() if k not in ("device_id", "models", "routes")}
    checked = 0
    for section, values in shown.items():
        for key, value in (values.items() if isinstance(values, dict) else [(None, values)]):
            path = f"{section}.{key}" if key else section
            expected = keys[path]["default"]
            assert value == expected or str(value) == str(expected), path
            checked += 1
    assert checked > 20


def renamed(data: dict[str, Any], path: KeyPath, new_key: str) -> dict[str, Any]:
    """``data`` with the key at ``path`` renamed to ``new_key`` (a typo), in place."""
    parent: Any = data
    for part in path[:-1]:
        parent = parent[part]
    parent[new_key] = parent.pop(path[-1])
    return data


@pytest.mark.parametrize(("path", "typo"), [
    (("stats_interval_s",), "stats_intervall_s"),
    (("mqtt", "port"), "prot"),
    (("models", "digits", "workers"), "wokers"),
    (("routes", 0, "deadline_ms"), "deadlin_ms"),
    (("routes", 0, "input", "format"), "fromat"),
    (("outbox", "spool_limit"), "spool_limt"),
])
def test_a_typo_fails_the_schema_at_the_key_path_check_names(
    tmp_path: Path, path: KeyPath, typo: str
) -> None:
    data = renamed(example(), path, typo)
    expected = format_path((*path[:-1], typo))
    assert schema_errors(data) == {expected}
    assert check_errors(tmp_path, data) == {expected}


def test_edged_check_itself_names_the_path_the_schema_fails_at(tmp_path: Path) -> None:
    data = renamed(renamed(example(), ("routes", 0, "queue_size"), "queue_sise"),
                   ("mqtt", "keepalive_s"), "keepalive")
    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    done = subprocess.run([sys.executable, "-m", "edged", "check", "--config", str(config)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 78, done.stderr
    named = set(re.findall(r"^  - (\S+) \(line \d+\): unknown key", done.stderr, re.M))
    assert named == schema_errors(data) == {"routes[0].queue_sise", "mqtt.keepalive"}


def test_a_typo_inside_an_optional_section_fails_both_at_its_key(tmp_path: Path) -> None:
    data = example()
    data["mqtt"]["tls"] = {"ca_fle": "/etc/edged/ca.pem"}
    data["models"]["digits"]["anomaly"] = {"threshold": 0.5, "hysterisis": 0.1}
    data["models"]["digits"]["postprocess"] = "anomaly"
    expected = {"mqtt.tls.ca_fle", "models.digits.anomaly.hysterisis"}
    assert schema_errors(data) == expected
    assert check_errors(tmp_path, data) == expected


@pytest.mark.parametrize(("path", "value"), [
    (("mqtt", "port"), 70000),
    (("routes", 0, "queue"), "lifo"),
    (("models", "digits", "workers"), 0),
    (("metrics", "port"), 0),
    (("routes", 0, "input", "mean"), [0.1, 0.2, 0.3, 0.4]),
])
def test_a_bad_value_fails_both_at_its_key(tmp_path: Path, path: KeyPath, value: Any) -> None:
    data = example()
    parent: Any = data
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    assert schema_errors(data) == {format_path(path)}
    assert check_errors(tmp_path, data) == {format_path(path)}


def test_yaml_numbers_that_edged_takes_as_text_pass_the_schema_too() -> None:
    data = example()
    data["mqtt"]["protocol"] = 5  # `protocol: 5` in YAML
    data["models"]["digits"]["options"] = {"num_threads": 4, "verbose": True}
    assert schema_errors(data) == set()
    data["mqtt"]["protocol"] = 4
    assert schema_errors(data) == {"mqtt.protocol"}


# --- the reference -----------------------------------------------------------------------


def reference_rows() -> dict[str, list[str]]:
    """key path -> its table cells (type, default, applies, description)."""
    rows: dict[str, list[str]] = {}
    section = ""
    for line in reference_markdown().splitlines():
        if line.startswith("## "):
            title = line[3:].strip("`")
            section = "" if title == "Top level" else title
        elif line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            key = cells[0].strip("`")
            rows[f"{section}.{key}" if section else key] = cells[1:]
    return rows


def test_the_reference_has_a_row_for_every_key() -> None:
    assert set(reference_rows()) == {p for p, _, _ in ALL_KEYS}


def test_the_reference_says_which_keys_need_a_restart() -> None:
    rows = reference_rows()
    for path, cells in rows.items():
        top = re.split(r"[.\[]", path, maxsplit=1)[0]
        assert cells[2] == ("restart" if top in RESTART_ONLY else "reload"), path
    assert rows["mqtt.port"][2] == "restart"
    assert rows["routes[].deadline_ms"][2] == "reload"
    assert rows["stats_interval_s"][2] == "reload"


def test_the_reference_shows_defaults_bounds_and_choices() -> None:
    rows = reference_rows()
    assert rows["mqtt.port"][:2] == ["integer, >= 1 and <= 65535", "`1883`"]
    assert rows["routes[].name"][1] == "**required**"
    assert rows["routes[].queue"][0] == 'one of `"fifo"`, `"latest"`, `"edf"`'
    assert rows["models"][1] == "`{}`"
