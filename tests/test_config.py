"""edged.config: one validated Settings object; every problem names its key path and line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from edged.config import load_settings
from edged.errors import ConfigError

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], Path]:
    def _write(text: str) -> Path:
        path = tmp_path / "edged.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return _write


def valid_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DATA / "config_valid.yaml").read_text())
    return data


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.source == str(path)
    return info.value.problems


MINIMAL = """\
models:
  m:
    path: m.tflite
routes:
  - name: r
    subscribe: {subscribe}
    model: m
    publish: {publish}
"""


def minimal(subscribe: str = "a/+", publish: str = '"out/{route}"') -> str:
    return MINIMAL.format(subscribe=subscribe, publish=publish)


# --- the golden files -------------------------------------------------------------------


def test_full_valid_config_loads() -> None:
    settings = load_settings(DATA / "config_valid.yaml")
    assert settings.device_id == "line-3-box"
    mqtt = settings.mqtt
    assert (mqtt.host, mqtt.port, mqtt.protocol) == ("broker.plant.local", 8883, "5")
    assert mqtt.client_id == "edged-line-3"
    assert mqtt.keepalive_s == 60
    assert mqtt.password_file == Path("/etc/edged/password")
    assert mqtt.tls is not None
    assert mqtt.tls.ca_file == Path("/etc/edged/ca.pem")
    assert mqtt.tls.cert_file is None
    assert mqtt.topic_prefix == "plant/edged"
    assert mqtt.reconnect_max_s == 20.0
    assert set(settings.models) == {"digits", "vibration"}
    digits = settings.models["digits"]
    assert (digits.workers, digits.top_k) == (2, 3)
    assert settings.models["vibration"].postprocess == "raw"
    assert [r.name for r in settings.routes] == ["cam", "vib"]
    cam, vib = settings.routes
    assert cam.subscribe == "$share/edged/sensors/+/frame"
    assert (cam.queue, cam.queue_size, cam.priority) == ("latest", 16, 5)
    assert (vib.queue, vib.queue_size, vib.on_late) == ("fifo", 32, "drop")
    assert cam.publish == "{prefix}/{device_id}/predictions/{route}/{topic[1]}"
    assert cam.deadline_ms == 2000
    assert vib.input.format == "json"
    assert vib.input.field == "samples"
    assert vib.input.max_payload_bytes == 65536
    assert vib.publish == "{prefix}/{device_id}/predictions/{route}"  # the default
    assert vib.publish_qos == 1
    assert settings.logging.format == "json"
    assert settings.shutdown_timeout_s == 5.0
    assert settings.stats_interval_s == 60.0


def test_relative_model_paths_resolve_against_the_config_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # not against the working directory
    settings = load_settings(DATA / "config_valid.yaml")
    digits = settings.models["digits"]
    assert digits.path == REPO / "models" / "digits_int8.tflite"
    assert digits.labels == REPO / "models" / "digits.labels"
    assert digits.path.is_file()
    assert settings.models["vibration"].labels is None


def test_absolute_model_paths_are_kept(write: Callable[[str], Path]) -> None:
    path = write("models:\n  m:\n    path: /opt/models/m.tflite\n    labels: /opt/m.labels\n")
    model = load_settings(path).models["m"]
    assert model.path == Path("/opt/models/m.tflite")
    assert model.labels == Path("/opt/m.labels")


def test_mistyped_key_gives_path_line_and_hint() -> None:
    assert problems_of(DATA / "config_typo.yaml") == [
        "mqtt.prot (line 4): unknown key; did you mean 'port'?"
    ]


def test_bad_value_deep_in_a_route_gives_path_and_line() -> None:
    (problem,) = problems_of(DATA / "config_bad_input.yaml")
    assert problem.startswith("routes[1].input.max_payload_bytes (line 14): ")
    assert "greater than or equal to 1" in problem


def test_config_error_message_lists_every_problem(write: Callable[[str], Path]) -> None:
    path = write("mqtt:\n  port: 0\n  keepalive_s: 1\nlogging:\n  level: loud\n")
    problems = problems_of(path)
    assert [p.split(":")[0] for p in problems] == [
        "mqtt.port (line 2)",
        "mqtt.keepalive_s (line 3)",
        "logging.level (line 5)",
    ]
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).startswith(f"invalid configuration in {path}:\n  - mqtt.port")


# --- typos ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mqt:\n  host: h\n", "mqt (line 1): unknown key; did you mean 'mqtt'?"),
        (
            "mqtt:\n  tls:\n    ca_flie: /ca.pem\n",
            "mqtt.tls.ca_flie (line 3): unknown key; did you mean 'ca_file'?",
        ),
        (
            "logging:\n  levle: info\n",
            "logging.levle (line 2): unknown key; did you mean 'level'?",
        ),
        (
            "models:\n  m:\n    path: m.tflite\n    wokers: 2\n",
            "models.m.wokers (line 4): unknown key; did you mean 'workers'?",
        ),
        (
            "models:\n  m:\n    path: m.tflite\nroutes:\n  - name: r\n    subscribe: a\n"
            "    model: m\n    inptu: {}\n",
            "routes[0].inptu (line 8): unknown key; did you mean 'input'?",
        ),
        ("zzzzzz: 1\n", "zzzzzz (line 1): unknown key"),
    ],
)
def test_typo_hints(write: Callable[[str], Path], text: str, expected: str) -> None:
    assert problems_of(write(text)) == [expected]


def test_a_model_named_like_a_field_still_gets_hints(write: Callable[[str], Path]) -> None:
    # 'path' is the name of an entry under models, not ModelConfig.path.
    path = write("models:\n  path:\n    path: m.tflite\n    top_kk: 2\n")
    assert problems_of(path) == ["models.path.top_kk (line 4): unknown key; did you mean 'top_k'?"]


# --- the environment --------------------------------------------------------------------


def test_environment_overrides_the_file_nested_with_double_underscore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDGED_MQTT__PORT", "1884")
    monkeypatch.setenv("EDGED_DEVICE_ID", "from-env")
    monkeypatch.setenv("EDGED_LOGGING__LEVEL", "debug")
    settings = load_settings(DATA / "config_valid.yaml")
    assert settings.mqtt.port == 1884
    assert settings.device_id == "from-env"
    assert settings.logging.level == "debug"
    # The rest of each section still comes from the file.
    assert settings.mqtt.host == "broker.plant.local"
    assert settings.mqtt.client_id == "edged-line-3"
    assert settings.logging.format == "json"


def test_environment_reaches_into_a_named_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGED_MODELS__DIGITS__WORKERS", "4")
    settings = load_settings(DATA / "config_valid.yaml")
    assert settings.models["digits"].workers == 4
    assert settings.models["digits"].top_k == 3
    assert settings.models["digits"].path == REPO / "models" / "digits_int8.tflite"


def test_environment_sets_the_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGED_MQTT__PROTOCOL", "3.1.1")
    assert load_settings(DATA / "config_valid.yaml").mqtt.protocol == "3.1.1"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("EDGED_MQTT__PORT", "abc", "mqtt.port (from the environment, EDGED_MQTT__PORT): "),
        ("EDGED_MQTT__PORT", "70000", "mqtt.port (from the environment, EDGED_MQTT__PORT): "),
        (
            "EDGED_LOGGING__LEVEL",
            "loud",
            "logging.level (from the environment, EDGED_LOGGING__LEVEL): ",
        ),
        (
            "EDGED_SHUTDOWN_TIMEOUT_S",
            "-1",
            "shutdown_timeout_s (from the environment, EDGED_SHUTDOWN_TIMEOUT_S): ",
        ),
    ],
)
def test_invalid_environment_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    (problem,) = problems_of(DATA / "config_valid.yaml")
    assert problem.startswith(expected)
    assert "(line" not in problem


def test_unknown_nested_environment_key_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDGED_MQTT__PRT", "1")
    (problem,) = problems_of(DATA / "config_valid.yaml")
    assert "EDGED_MQTT__PRT" in problem
    assert "did you mean 'port'?" in problem


def test_unknown_top_level_environment_key_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGED_MQTTT__PORT", "1884")
    (problem,) = problems_of(DATA / "config_valid.yaml")
    assert "EDGED_MQTTT__PORT" in problem
    assert "unknown key" in problem


def test_error_in_the_file_is_not_blamed_on_an_unrelated_variable(
    monkeypatch: pytest.MonkeyPatch, write: Callable[[str], Path]
) -> None:
    monkeypatch.setenv("EDGED_MQTT__HOST", "h")
    assert problems_of(write("mqtt:\n  port: 0\n"))[0].startswith("mqtt.port (line 2): ")


# --- values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"), [("5", "5"), ("3.1.1", "3.1.1"), ("'5'", "5"), ('"3.1.1"', "3.1.1")]
)
def test_protocol_parses_as_yaml_writes_it(
    write: Callable[[str], Path], text: str, expected: str
) -> None:
    assert load_settings(write(f"mqtt:\n  protocol: {text}\n")).mqtt.protocol == expected


@pytest.mark.parametrize("text", ["4", "3", "5.0", "mqtt5"])
def test_other_protocols_are_refused(write: Callable[[str], Path], text: str) -> None:
    (problem,) = problems_of(write(f"mqtt:\n  protocol: {text}\n"))
    assert problem.startswith("mqtt.protocol (line 2): ")


def test_topic_prefix_loses_its_outer_slashes(write: Callable[[str], Path]) -> None:
    assert load_settings(write("mqtt:\n  topic_prefix: /site/edged/\n")).mqtt.topic_prefix == (
        "site/edged"
    )


@pytest.mark.parametrize("prefix", ["'edged/#'", "'edged/+/x'", "'{device_id}'"])
def test_topic_prefix_cannot_hold_wildcards_or_placeholders(
    write: Callable[[str], Path], prefix: str
) -> None:
    (problem,) = problems_of(write(f"mqtt:\n  topic_prefix: {prefix}\n"))
    assert problem.startswith("mqtt.topic_prefix (line 2): ")


@pytest.mark.parametrize("device_id", ["'a/b'", "'a+'", "'#'", "''"])
def test_device_id_must_be_one_safe_level(write: Callable[[str], Path], device_id: str) -> None:
    (problem,) = problems_of(write(f"device_id: {device_id}\n"))
    assert problem.startswith("device_id (line 1): ")


def test_empty_file_gives_the_defaults(write: Callable[[str], Path]) -> None:
    settings = load_settings(write(""))
    assert settings.mqtt.host == "127.0.0.1"
    assert settings.mqtt.port == 1883
    assert settings.mqtt.protocol == "auto"
    assert settings.routes == []
    assert settings.models == {}
    assert settings.device_id  # the host name


def test_settings_are_frozen() -> None:
    settings = load_settings(DATA / "config_valid.yaml")
    with pytest.raises(ValidationError):
        settings.mqtt.port = 1  # type: ignore[misc]


def test_model_needs_a_path(write: Callable[[str], Path]) -> None:
    (problem,) = problems_of(write("models:\n  m:\n    workers: 2\n"))
    assert problem == "models.m.path (line 2): Field required"


# --- routes -----------------------------------------------------------------------------


def test_route_naming_an_unknown_model_is_an_error(write: Callable[[str], Path]) -> None:
    path = write(
        "models:\n  digits:\n    path: d.tflite\n"
        "routes:\n  - name: cam\n    subscribe: a\n    model: digts\n"
    )
    (problem,) = problems_of(path)
    assert "route 'cam' uses model 'digts'" in problem
    assert "known: digits" in problem


def test_route_with_no_models_configured(write: Callable[[str], Path]) -> None:
    (problem,) = problems_of(write("routes:\n  - name: cam\n    subscribe: a\n    model: m\n"))
    assert "none are configured" in problem


def test_duplicate_route_names_are_an_error(write: Callable[[str], Path]) -> None:
    data = valid_data()
    data["routes"][1]["name"] = "cam"
    path = write(yaml.safe_dump(data))
    (problem,) = problems_of(path)
    assert "route name 'cam' is used twice" in problem


@pytest.mark.parametrize("name", ["'has space'", "'a/b'", "''", "x" * 65])
def test_route_names_are_plain(write: Callable[[str], Path], name: str) -> None:
    text = minimal().replace("name: r", f"name: {name}")
    (problem,) = problems_of(write(text))
    assert problem.startswith("routes[0].name (line 5): ")


@pytest.mark.parametrize(
    ("topic_filter", "reason"),
    [
        ("a/#/b", "'#' must be a whole level and the last one"),
        ("a/b#", "'#' must be a whole level and the last one"),
        ("a/b+/c", "'+' must be a whole level"),
        ("''", "the filter is empty"),
        ("$share/grp", "a shared subscription is $share/GROUP/filter"),
        ("$share//a/b", "a shared subscription is $share/GROUP/filter"),
        ("$share/g+/a", "the share group name cannot hold wildcards"),
    ],
)
def test_bad_subscribe_filter_is_an_error(
    write: Callable[[str], Path], topic_filter: str, reason: str
) -> None:
    (problem,) = problems_of(write(minimal(subscribe=topic_filter)))
    assert problem == f"routes[0].subscribe (line 6): {reason}"


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ('"out/+/{route}"', "a publish topic cannot contain the wildcards '+' or '#'"),
        ('"out/{route}/#"', "a publish topic cannot contain the wildcards '+' or '#'"),
        ('"out/{sensor}"', "unknown placeholder {sensor}"),
        ('"out/{}"', "unknown placeholder {}"),
        ('"out/{topic[x]}"', "unknown placeholder {topic[x]}"),
        ('"out/{route:>8}"', "cannot carry a format spec"),
        ('"out/{route!r}"', "cannot carry a format spec"),
        ('"out/{route"', "(line 8): "),
        ("''", "the topic is empty"),
    ],
)
def test_bad_publish_template_is_an_error(
    write: Callable[[str], Path], template: str, reason: str
) -> None:
    (problem,) = problems_of(write(minimal(publish=template)))
    assert problem.startswith("routes[0].publish (line 8): ")
    assert reason in problem


@pytest.mark.parametrize(
    "template",
    ['"{prefix}/{device_id}/{model}/{route}"', '"out/{topic}"', '"out/{topic[-1]}/{topic[0]}"'],
)
def test_good_publish_templates_load(write: Callable[[str], Path], template: str) -> None:
    settings = load_settings(write(minimal(publish=template)))
    assert settings.routes[0].publish == template.strip('"')


def test_the_shipped_example_config_loads() -> None:
    settings = load_settings(REPO / "systemd" / "edged.yaml")
    assert settings.device_id == "edge-01"
    assert settings.mqtt.protocol == "auto"
    assert [r.name for r in settings.routes] == ["cam"]
    assert settings.routes[0].model in settings.models
