"""Run the real edged as a separate process, with a config a test writes."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support.probe import Probe

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
# The daemon under test: this checkout's, or another's, e.g. an installed package's in a
# Debian root of another architecture (tests/test_package_arm64.py runs the contract tests
# against ``chroot ROOT /opt/edged/bin/edged``, under emulation: hence a longer start).
COMMAND = tuple(shlex.split(os.environ.get("TEST_EDGED_COMMAND", ""))) or (
    sys.executable, "-m", "edged")
START_S = float(os.environ.get("TEST_EDGED_START_S", "30"))


def digits_config(port: int, **route_overrides: Any) -> dict[str, Any]:
    """A config serving the bundled digits model on one route, as field engineers write it."""
    route: dict[str, Any] = {
        "name": "cam",
        "subscribe": "sensors/+/frame",
        "model": "digits",
        "input": {"format": "raw"},
        "publish": "edged/{device_id}/predictions/{route}",
        "deadline_ms": 2000,
    }
    route.update(route_overrides)
    return {
        "device_id": "test-box",
        "mqtt": {"host": "127.0.0.1", "port": port, "protocol": "5", "topic_prefix": "edged",
                 "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
                 # Tests share a broker: a persistent session left by one test would hand
                 # its queued messages to the next edged. Fault tests turn it back on.
                 "session_expiry_s": 0},
        "models": {
            "digits": {
                "path": str(MODELS / "digits_int8.tflite"),
                "labels": str(MODELS / "digits.labels"),
                "workers": 2,
                "postprocess": "classification",
            }
        },
        "routes": [route],
        "logging": {"format": "json", "level": "info"},
        "shutdown_timeout_s": 5,
        "stats_interval_s": 0,
    }


class Edged:
    """``python -m edged run`` in a child process; its log goes to a file in ``workdir``."""

    def __init__(self, workdir: Path, config: dict[str, Any], runtime: str | None = None) -> None:
        self.config_path = workdir / "edged.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = workdir / "edged.log"
        self.runtime = runtime
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [*COMMAND, "run", "--config", str(self.config_path)]
        if self.runtime:
            cmd += ["--runtime", self.runtime]
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGED_")}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=REPO, env=env)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(
                    f"edged did not stop within {timeout} s:\n{self.log()}"
                ) from None
        return int(self.proc.returncode)

    def wait_online(self, probe: Probe, status_topic: str, timeout: float = START_S) -> None:
        """Return once edged has said ``online`` on ``status_topic`` (which ``probe`` must
        already be subscribed to): it has subscribed to its routes by then."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                msg = probe.next(timeout=0.5, topic=status_topic)
            except TimeoutError:
                assert self.proc is not None and self.proc.poll() is None, self.log()
                continue
            if msg.payload == b"online":
                time.sleep(0.3)  # edged subscribes before it says online; let the SUBACK land
                return
        raise AssertionError(f"edged never said online:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
