#!/usr/bin/env python3
"""The end-to-end demo: a private mosquitto on a free loopback port, edged with the bundled
models, the digits hold-out images and vibration windows sent through the broker, then a
vibration sensor streaming one reading per message at 1 kHz; prints predictions, accuracy,
latency and the window classifications, then stops everything. Run it via
scripts/demo.sh."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.broker import Broker  # noqa: E402  (the test suite's broker helper)
from tests.support.probe import Probe  # noqa: E402


def config(port: int, deadline_ms: int = 100) -> dict[str, object]:
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
             "input": {"format": "raw"}, "deadline_ms": deadline_ms},
            {"name": "vibration", "subscribe": "sensors/+/vibration", "model": "vibration",
             "input": {"format": "npy"}, "deadline_ms": deadline_ms},
            # One JSON reading per message; a window of 128 readings (the model's time
            # axis) every 64 new ones, per source topic.
            {"name": "vibration-stream", "subscribe": "sensors/+/accel", "model": "vibration",
             "input": {"format": "json"}, "deadline_ms": deadline_ms,
             "window": {"size": 128, "hop": 64, "fields": ["ax", "ay", "az"]},
             "publish": "edged/{device_id}/vibration/{topic[1]}"},
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


def stream_vibration(probe: Probe, windows: int = 20, rate_hz: float = 1000.0
                     ) -> dict[str, object]:
    """Play hold-out windows back to back as one sensor would send them: one reading per
    message at ``rate_hz``; print the classification of each window that is exactly one
    hold-out window (every other one: the ones between straddle two)."""
    data = np.load(REPO / "models" / "vibration_holdout.npz")
    labels = (REPO / "models" / "vibration.labels").read_text().split()
    readings = data["windows"][:windows].reshape(-1, 3)
    results = "edged/demo-box/vibration/pump2"
    probe.subscribe(results)
    start = time.monotonic()
    for i, (ax, ay, az) in enumerate(readings.tolist()):
        # Keep to the sensor's clock, not as fast as Python can go: sleep in steps of 16
        # readings, so sleep's own overhead does not slow the stream below rate_hz.
        if i % 16 == 0:
            time.sleep(max(0.0, start + i / rate_hz - time.monotonic()))
        probe.publish("sensors/pump2/accel", json.dumps({"ax": ax, "ay": ay, "az": az}).encode(),
                      qos=0)
    took = time.monotonic() - start
    expected = 1 + (len(readings) - 128) // 64
    got = [m.json() for m in probe.collect(expected, 10, topic=results)]
    correct = 0
    for n, body in enumerate(got):
        if n % 2:
            continue
        truth = labels[int(data["labels"][n // 2])]
        result = body["result"]
        correct += result["label"] == truth
        print(f"  readings {n * 64:5d}..{n * 64 + 127:5d}  {result['label']:14} "
              f"{result['score']:.3f}  (true: {truth})")
    latency = [b["timings_ms"]["total"] for b in got if "timings_ms" in b]
    summary = {"readings": len(readings), "seconds": round(took, 2), "windows": len(got),
               "expected": expected, "accuracy": round(correct / windows, 4),
               "latency_ms": round(statistics.median(latency), 3) if latency else None}
    print(f"  ({len(got) - windows} windows in between, each half of one hold-out window and "
          "half of the next, not shown)")
    print(f"  {len(readings)} readings in {took:.2f} s; {len(got)} windows of {expected} "
          f"expected; hold-out windows right: {correct}/{windows}")
    return summary


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edged", default=f"{sys.executable} -m edged",
                        help="the command that runs edged (default: this checkout's); e.g. "
                             "/opt/edged/bin/edged for an installed package")
    parser.add_argument("--mosquitto", default=None,
                        help="the command that runs mosquitto (default: this machine's)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the configs and logs go (default: a temporary folder); "
                             "both commands must see it at the same path")
    parser.add_argument("--stream-rate", type=float, default=1000.0,
                        help="readings per second of the streaming sensor (default: 1000)")
    parser.add_argument("--deadline-ms", type=int, default=100,
                        help="every route's deadline (default: 100)")
    parser.add_argument("--start-timeout", type=float, default=60.0,
                        help="seconds to wait for edged to come online (default: 60)")
    return parser.parse_args()


def main() -> int:
    args = arguments()
    with tempfile.TemporaryDirectory(prefix="edged-demo-", dir=args.workdir) as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # mosquitto may run as its own user
        broker = Broker(work, command=shlex.split(args.mosquitto or ""))
        broker.start()
        print(f"mosquitto listening on 127.0.0.1:{broker.port}")
        (work / "edged.yaml").write_text(yaml.safe_dump(config(broker.port, args.deadline_ms),
                                                        sort_keys=False))
        log = (work / "edged.log").open("wb")
        edged = subprocess.Popen(
            [*shlex.split(args.edged), "run", "--config", str(work / "edged.yaml")],
            stdout=log, stderr=log, cwd=REPO,
        )
        probe = Probe(broker.port)
        try:
            probe.subscribe("edged/demo-box/status")
            status = probe.next(timeout=args.start_timeout,
                                topic="edged/demo-box/status").payload.decode()
            print(f"edged status: {status}")
            time.sleep(0.3)
            print(f"\n== digits hold-out images (raw uint8 frames, {args.deadline_ms} ms "
                  "deadline) ==")
            digits = publish(broker.port, "sensors/cam1/frame", "digits", "raw", 100)
            print(f"\n== vibration hold-out windows (.npy float windows, {args.deadline_ms} ms "
                  "deadline) ==")
            vib = publish(broker.port, "sensors/pump1/vibration", "vibration", "npy", 50)
            print(f"\n== vibration sensor streaming one JSON reading per message at "
                  f"{args.stream_rate:g} Hz (window 128, hop 64) ==")
            stream = stream_vibration(probe, rate_hz=args.stream_rate)
        finally:
            probe.close()
            edged.send_signal(signal.SIGTERM)
            code = edged.wait(30)
            broker.stop()
            log.close()
        print(f"\nedged stopped with exit code {code}")
        print(f"digits:    accuracy {digits['accuracy']}  latency {digits['latency_ms']}")
        print(f"vibration: accuracy {vib['accuracy']}  latency {vib['latency_ms']}")
        print(f"streamed:  {stream['windows']} windows from {stream['readings']} readings, "
              f"accuracy {stream['accuracy']}  median latency from the last reading "
              f"{stream['latency_ms']} ms")
        ok = (code == 0 and digits["answered"] == digits["sent"]
              and vib["answered"] == vib["sent"] and stream["windows"] == stream["expected"])
        if not ok:
            print((work / "edged.log").read_text()[-4000:], file=sys.stderr)
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
