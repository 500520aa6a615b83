"""``edged check`` as a field engineer runs it: a separate process, real models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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
    assert done.returncode == 1
    assert str(tmp_path / "nowhere" / "digits.tflite") in done.stderr  # resolved next to the file
    assert "cannot read" in done.stderr


def test_check_fails_when_labels_do_not_match_the_classes(tmp_path: Path) -> None:
    labels = tmp_path / "three.labels"
    labels.write_text("a\nb\nc\n")
    done = check_digits_with(tmp_path, labels=str(labels))
    assert done.returncode == 1
    assert "3 labels for 10 output classes" in done.stderr


def test_check_rejects_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"this is not a flatbuffer at all")
    done = check_digits_with(tmp_path, path=str(bogus))
    assert done.returncode == 1
    assert "not a TFLite flatbuffer" in done.stderr
