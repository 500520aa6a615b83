"""TFLite's INFO lines stay out of `edged check` and the log; everything else gets through."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edged.runtime import tflite_log

REPO = Path(__file__).resolve().parent.parent


def test_info_lines_are_dropped_and_the_rest_passed_on_in_order(
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tflite_log, "_said", threading.Event())
    with tflite_log.quiet():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"WARNING: something TFLite wants seen\n")
        os.write(2, b"a line another thread wrote meanwhile\n")
    assert capfd.readouterr().err == ("WARNING: something TFLite wants seen\n"
                                      "a line another thread wrote meanwhile\n")
    assert tflite_log._said.is_set()
    with tflite_log.quiet():  # said once: stderr is left as it is
        os.write(2, b"INFO: another\n")
    assert capfd.readouterr().err == "INFO: another\n"


def test_an_error_in_the_body_still_restores_stderr(
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tflite_log, "_said", threading.Event())
    with pytest.raises(ValueError), tflite_log.quiet():
        os.write(2, b"ERROR: the model is broken\n")
        raise ValueError("broken")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "ERROR: the model is broken\nafter\n"


def test_edged_check_prints_no_tflite_info_line(tmp_path: Path) -> None:
    config = tmp_path / "edged.yaml"
    config.write_text(
        f"models:\n  digits:\n    path: {REPO / 'models' / 'digits_int8.tflite'}\n"
        "routes:\n  - {name: cam, subscribe: cams/+/frame, model: digits}\n")
    done = subprocess.run(
        [sys.executable, "-m", "edged", "check", "--no-broker", "--config", str(config)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "INFO:" not in done.stderr + done.stdout, done.stderr
    assert done.stdout.rstrip().endswith("ok")
