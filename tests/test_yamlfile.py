"""edged.yamlfile: YAML with the line of every key, duplicate keys refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.errors import ConfigError
from edged.yamlfile import format_path, line_of, load_yaml_with_lines


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edged.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_lines_of_nested_keys_and_list_items(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# a comment\n"
        "device_id: box\n"
        "mqtt:\n"
        "  host: broker\n"
        "\n"
        "  port: 1883\n"
        "routes:\n"
        "  - name: cam\n"
        "    subscribe: a/+\n"
        "  - name: mic\n"
        "    input:\n"
        "      format: json\n",
    )
    data, lines = load_yaml_with_lines(path)
    assert data["mqtt"] == {"host": "broker", "port": 1883}
    assert data["routes"][1]["input"] == {"format": "json"}
    assert lines[("device_id",)] == 2
    assert lines[("mqtt",)] == 3
    assert lines[("mqtt", "host")] == 4
    assert lines[("mqtt", "port")] == 6
    assert lines[("routes",)] == 7
    assert lines[("routes", 0)] == 8
    assert lines[("routes", 0, "subscribe")] == 9
    assert lines[("routes", 1)] == 10
    assert lines[("routes", 1, "input", "format")] == 12


def test_flow_style_keys_get_their_own_line(tmp_path: Path) -> None:
    path = write(tmp_path, "a: 1\nmqtt: {host: h,\n  port: 2}\n")
    _, lines = load_yaml_with_lines(path)
    assert lines[("mqtt", "host")] == 2
    assert lines[("mqtt", "port")] == 3


def test_empty_file_is_an_empty_mapping(tmp_path: Path) -> None:
    data, lines = load_yaml_with_lines(write(tmp_path, ""))
    assert data == {}
    assert lines == {}


def test_comment_only_file_is_an_empty_mapping(tmp_path: Path) -> None:
    data, _ = load_yaml_with_lines(write(tmp_path, "# nothing configured yet\n"))
    assert data == {}


def test_duplicate_top_level_key_is_an_error_naming_both_path_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "device_id: a\nmqtt: {}\ndevice_id: b\n")
    with pytest.raises(ConfigError) as info:
        load_yaml_with_lines(path)
    assert info.value.problems == ["device_id (line 3): duplicate key"]
    assert info.value.source == str(path)


def test_duplicate_nested_keys_are_all_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mqtt:\n  port: 1\n  port: 2\nroutes:\n  - name: a\n    name: b\n",
    )
    with pytest.raises(ConfigError) as info:
        load_yaml_with_lines(path)
    assert info.value.problems == [
        "mqtt.port (line 3): duplicate key",
        "routes[0].name (line 6): duplicate key",
    ]


def test_same_key_in_different_mappings_is_not_a_duplicate(tmp_path: Path) -> None:
    path = write(tmp_path, "a:\n  name: x\nb:\n  name: x\n")
    data, _ = load_yaml_with_lines(path)
    assert data == {"a": {"name": "x"}, "b": {"name": "x"}}


def test_invalid_yaml_names_the_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "device_id: box\nmqtt:\n  host: [broker\n  port: 1883\n")
    with pytest.raises(ConfigError) as info:
        load_yaml_with_lines(path)
    (problem,) = info.value.problems
    assert problem.startswith("line ")
    assert "not valid YAML" in problem


def test_bad_indentation_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt:\n  host: broker\n port: 1883\n")
    with pytest.raises(ConfigError) as info:
        load_yaml_with_lines(path)
    (problem,) = info.value.problems
    assert problem.startswith("line 3, column 2: not valid YAML")


def test_tab_indentation_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt:\n\thost: broker\n")
    with pytest.raises(ConfigError) as info:
        load_yaml_with_lines(path)
    assert info.value.problems[0].startswith("line 2, ")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml_with_lines(write(tmp_path, text))
    assert info.value.problems == ["the top level must be a mapping of keys to values"]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml_with_lines(tmp_path / "absent.yaml")
    assert "cannot read the file" in info.value.problems[0]
    assert "absent.yaml" in str(info.value)


def test_multiple_documents_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml_with_lines(write(tmp_path, "a: 1\n---\nb: 2\n"))
    assert "not valid YAML" in info.value.problems[0]


def test_python_tags_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError) as info:
        load_yaml_with_lines(path)
    assert "line 1" in info.value.problems[0]


def test_aliases_are_expanded(tmp_path: Path) -> None:
    path = write(tmp_path, "base: &b {workers: 2}\nmodels:\n  a: *b\n  c: *b\n")
    data, lines = load_yaml_with_lines(path)
    assert data["models"] == {"a": {"workers": 2}, "c": {"workers": 2}}
    assert lines[("models", "c")] == 4
    # Keys inside an alias point at the alias, where the reader looks.
    assert line_of(("models", "c", "workers"), lines) == 4


def test_recursive_alias_does_not_crash_the_loader(tmp_path: Path) -> None:
    # A self-referencing anchor must not send the line walk into endless recursion.
    path = write(tmp_path, "a: &x\n  b: *x\n")
    data, lines = load_yaml_with_lines(path)
    assert data["a"]["b"] is data["a"]
    assert lines[("a", "b")] == 2


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), "(top level)"),
        (("mqtt",), "mqtt"),
        (("mqtt", "tls", "ca_file"), "mqtt.tls.ca_file"),
        (("routes", 0, "input"), "routes[0].input"),
        (("routes", 12, "input", "format"), "routes[12].input.format"),
        (("matrix", 1, 2), "matrix[1][2]"),
        ((0, "a"), "[0].a"),
    ],
)
def test_format_path(path: tuple[str | int, ...], text: str) -> None:
    assert format_path(path) == text


def test_line_of_falls_back_to_the_nearest_ancestor() -> None:
    lines = {("routes",): 7, ("routes", 1): 10, ("routes", 1, "input"): 11}
    assert line_of(("routes", 1, "input"), lines) == 11
    assert line_of(("routes", 1, "input", "format"), lines) == 11
    assert line_of(("routes", 1, "publish"), lines) == 10
    assert line_of(("routes", 5, "name"), lines) == 7
    assert line_of(("mqtt", "port"), lines) is None
    assert line_of((), lines) is None
