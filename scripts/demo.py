#!/usr/bin/env python3
"""The end-to-end demo: a private mosquitto on a free loopback port, edged with the bundled
models, the digits hold-out images and vibration windows sent through the broker; prints
predictions, accuracy and latency, then stops everything. Run it via scripts/demo.sh."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.broker import Broker  # noqa: E402  (the test suite's broker helper)
from tests.support.probe import Probe  # noqa: E402


def config(port: int) -> dict[str, object]:
    models = REPO / "models"
    return {
        "device_id": "demo-box",
        "mqtt": {"host": "127.0.0.1", "port": port, "protocol": "5", "topic_prefix": "edged"},
        "models": {
            "digits": {"path": str(models / "digits_int8.tflite"),
                       "labels": str(models / "digits.labels"), "workers": 2},
            "vibration": {"path": str(models / "vibration_int8.tflite"),
                          "labels": str(models / "vibration.labels"), "workers": 1},
        },
        "routes": [
            {"name": "cam", "subscribe": "sensors/+/frame", "model": "digits",
             "input": {"format": "raw"}, "deadline_ms": 100},
            {"name": "vibration", "subscribe": "sensors/+/vibration", "model": "vibration",
             "input": {"format": "npy"}, "deadline_ms": 100},
        ],
        "logging": {"format": "json"},
        "stats_interval_s": 0,
    }


def publish(port: int, topic: str, source: str, fmt: str, rate: int) -> dict[str, object]:
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    cmd = [sys.executable, str(REPO / "scripts" / "publish_frames.py"),
           "--broker", f"127.0.0.1:{port}", "--topic", topic, "--source", source,
           "--format", fmt, "--rate", str(rate), "--wait-replies", "--show", "5",
           "--json-out", str(out), "--quiet"]
    subprocess.run(cmd, check=False)
    summary: dict[str, object] = json.loads(out.read_text())
    out.unlink()
    return summary


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="edged-demo-") as tmp:
        work = Path(tmp)
        broker = Broker(work)
        broker.start()
        print(f"mosquitto listening on 127.0.0.1:{broker.port}")
        (work / "edged.yaml").write_text(yaml.safe_dump(config(broker.port), sort_keys=False))
        log = (work / "edged.log").open("wb")
        edged = subprocess.Popen(
            [sys.executable, "-m", "edged", "run", "--config", str(work / "edged.yaml")],
            stdout=log, stderr=log, cwd=REPO,
        )
        probe = Probe(broker.port)
        try:
            probe.subscribe("edged/demo-box/status")
            status = probe.next(timeout=60, topic="edged/demo-box/status").payload.decode()
            print(f"edged status: {status}")
            time.sleep(0.3)
            print("\n== digits hold-out images (raw uint8 frames, 100 ms deadline) ==")
            digits = publish(broker.port, "sensors/cam1/frame", "digits", "raw", 100)
            print("\n== vibration hold-out windows (.npy float windows, 100 ms deadline) ==")
            vib = publish(broker.port, "sensors/pump1/vibration", "vibration", "npy", 50)
        finally:
            probe.close()
            edged.send_signal(signal.SIGTERM)
            code = edged.wait(30)
            broker.stop()
            log.close()
        print(f"\nedged stopped with exit code {code}")
        print(f"digits:    accuracy {digits['accuracy']}  latency {digits['latency_ms']}")
        print(f"vibration: accuracy {vib['accuracy']}  latency {vib['latency_ms']}")
        ok = code == 0 and digits["answered"] == digits["sent"] and vib["answered"] == vib["sent"]
        if not ok:
            print((work / "edged.log").read_text()[-4000:], file=sys.stderr)
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
