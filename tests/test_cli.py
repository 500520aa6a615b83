"""``edged check`` as a field engineer runs it: a separate process, real models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edged.cli import EX_NOINPUT
from tests.support.daemon import REPO, digits_config


def edged(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edged", *args],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )


@pytest.mark.legacy
def test_check_reports_runtime_models_and_routes(tmp_path: Path) -> None:
    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump(digits_config(1883)))
    done = edged("check", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "runtime  " in done.stdout
    assert ("ai-edge-litert" in done.stdout) or ("tflite-runtime" in done.stdout)
    assert "digits_int8.tflite" in done.stdout
    assert "uint8[1x8x8x1]" in done.stdout
    assert "route    cam: sensors/+/frame -> digits" in done.stdout
    assert done.stdout.rstrip().endswith("ok")


def test_check_names_the_key_path_and_line_of_a_typo(tmp_path: Path) -> None:
    config = tmp_path / "edged.yaml"
    text = yaml.safe_dump(digits_config(1883), sort_keys=False)
    text = text.replace("deadline_ms: 2000", "deadline_ms: 2000\n  deadlin_ms: 50")
    config.write_text(text)
    line = text.splitlines().index("  deadlin_ms: 50") + 1
    done = edged("check", "--config", str(config))
    assert done.returncode == 78
    assert f"routes[0].deadlin_ms (line {line}): unknown key; did you mean 'deadline_ms'?" in (
        done.stderr
    )


def check_digits_with(tmp_path: Path, **model: str) -> subprocess.CompletedProcess[str]:
    """``edged check`` of the digits config with ``model`` keys replaced."""
    data = digits_config(1883)
    data["models"]["digits"].update(model)
    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump(data))
    return edged("check", "--config", str(config))


def test_check_fails_on_a_missing_model_file(tmp_path: Path) -> None:
    done = check_digits_with(tmp_path, path="nowhere/digits.tflite")
    assert done.returncode == EX_NOINPUT  # a restart cannot fix it
    assert str(tmp_path / "nowhere" / "digits.tflite") in done.stderr  # resolved next to the file
    assert "cannot read" in done.stderr


def test_check_fails_when_labels_do_not_match_the_classes(tmp_path: Path) -> None:
    labels = tmp_path / "three.labels"
    labels.write_text("a\nb\nc\n")
    done = check_digits_with(tmp_path, labels=str(labels))
    assert done.returncode == EX_NOINPUT
    assert "3 labels for 10 output classes" in done.stderr


def test_check_rejects_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"this is not a flatbuffer at all")
    done = check_digits_with(tmp_path, path=str(bogus))
    assert done.returncode == EX_NOINPUT
    assert "not a TFLite flatbuffer" in done.stderr


@pytest.mark.integration
@pytest.mark.parametrize("nodelay", [True, False])
def test_check_times_the_way_back_and_names_a_broker_that_delays_small_messages(
    tmp_path: Path, nodelay: bool
) -> None:
    from tests.support.broker import Broker

    (tmp_path / "mosquitto").mkdir()
    broker = Broker(tmp_path / "mosquitto", extra=[] if nodelay else ["set_tcp_nodelay false"])
    broker.start()
    try:
        config = tmp_path / "edged.yaml"
        config.write_text(yaml.safe_dump(digits_config(broker.port)))
        done = edged("check", "--config", str(config))
    finally:
        broker.stop()
    assert done.returncode == 0, done.stderr
    assert (f"broker   127.0.0.1:{broker.port} answered (MQTT 5); way back through it"
            in done.stdout)
    assert f"Nagle suspected: {'no' if nodelay else 'yes'}" in done.stdout, done.stdout
    if not nodelay:
        assert "set `set_tcp_nodelay true`" in done.stdout


def test_check_says_the_broker_is_unreachable_without_failing(tmp_path: Path) -> None:
    from tests.support.broker import free_port

    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump(digits_config(free_port())))
    done = edged("check", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "warning  broker: connection refused" in done.stdout


def test_check_fails_on_tls_material_it_cannot_read(tmp_path: Path) -> None:
    raw = digits_config(1883)
    raw["mqtt"]["tls"] = {"ca_file": str(tmp_path / "missing-ca.pem")}
    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump(raw))
    done = edged("check", "--no-broker", "--config", str(config))
    assert done.returncode == 78, done.stdout
    assert "mqtt.tls" in done.stderr and "missing-ca.pem" in done.stderr
    assert "runtime" not in done.stdout  # refused before any model was loaded


def test_check_fails_on_a_spool_it_cannot_open(tmp_path: Path) -> None:
    raw = digits_config(1883)
    (tmp_path / "a-file").write_text("not a folder")
    raw["outbox"] = {"spool_path": str(tmp_path / "a-file" / "spool.sqlite")}
    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump(raw))
    done = edged("check", "--no-broker", "--config", str(config))
    assert done.returncode == 78, done.stdout
    assert "outbox.spool_path" in done.stderr
