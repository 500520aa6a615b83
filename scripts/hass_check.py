"""Run a real Home Assistant against edged and list the entities and states it shows.

Home Assistant (from PyPI, in a virtualenv of its own on Python 3.13, installed with its own
package_constraints.txt: a plain ``pip install homeassistant`` backtracks for a long time)
and edged share a private mosquitto on a free loopback port. Home Assistant's
mqtt_statestream integration publishes every entity's state and attributes back to that
broker, so this script sees exactly what Home Assistant shows. The scenario:

1. edged with a route per decoder announces itself; frames, readings and audio are sent
   from several sources; the entities and states Home Assistant shows are listed.
2. edged stops: every entity must be unavailable.
3. edged starts again: the sources' entities must show unknown, not the old states, until
   their sources send; one source sends again.
4. Home Assistant restarts: every state must come back as it was.
5. Home Assistant's log is searched for warnings about edged's messages and templates.

    PYTHONPATH=. .venv/bin/python scripts/hass_check.py [--python python3.13]
        [--venv DIR] [--version 2025.4.4]

Too heavy for CI (the install takes a few minutes the first time, each start of Home
Assistant tens of seconds): the tests render the templates by Home Assistant's rules
instead (tests/test_home_assistant.py). Exits 1 when a check above fails.
"""

from __future__ import annotations

import argparse
import ast
import glob
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
OWW = REPO / ".cache" / "models" / "openwakeword"
DEVICE = "hass-check"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing listens on port {port} after {timeout} s")


def python313(given: str | None) -> str:
    # pyenv's own builds first: its shim on PATH may point at no active version.
    candidates = [given] if given else [
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13"))),
        shutil.which("python3.13")]
    for c in candidates:
        if c and subprocess.run([c, "-c", "import sys; assert sys.version_info[:2] == "
                                 "(3, 13)"], capture_output=True).returncode == 0:
            return c
    raise SystemExit("Home Assistant 2025.4 needs Python 3.13: pass --python")


def install(venv: Path, python: str, version: str) -> Path:
    """Home Assistant ``version`` and its MQTT integration's requirements in ``venv``."""
    hass = venv / "bin" / "hass"
    if hass.exists():
        return hass
    began = time.monotonic()
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "download", "-q",
                        "--no-deps", f"homeassistant=={version}", "-d", tmp], check=True)
        (wheel,) = Path(tmp).glob("homeassistant-*.whl")
        with zipfile.ZipFile(wheel) as z:
            constraints = Path(tmp) / "package_constraints.txt"
            constraints.write_bytes(z.read("homeassistant/package_constraints.txt"))
            requirements = integration_requirements(z)
        subprocess.run([*pip, "-c", str(constraints), str(wheel), *requirements], check=True)
    print(f"installed Home Assistant {version} in {venv} "
          f"({time.monotonic() - began:.0f} s)", flush=True)
    return hass


def integration_requirements(wheel: zipfile.ZipFile) -> list[str]:
    """The requirements of every integration Home Assistant sets up at start (its
    bootstrap's sets), of MQTT and mqtt_statestream, and of their dependencies: installed
    beforehand, with the constraints, rather than by Home Assistant itself at start."""
    source = wheel.read("homeassistant/bootstrap.py").decode()
    wanted = {"mqtt", "mqtt_statestream", "homeassistant", "persistent_notification"}
    for tree in ast.walk(ast.parse(source)):
        if isinstance(tree, (ast.Assign, ast.AnnAssign)):
            targets = tree.targets if isinstance(tree, ast.Assign) else [tree.target]
            names = {t.id for t in targets if isinstance(t, ast.Name)}
            if names & {"LOGGING_AND_HTTP_DEPS_INTEGRATIONS", "FRONTEND_INTEGRATIONS",
                        "DEFAULT_INTEGRATIONS"} and isinstance(tree.value, ast.Set):
                wanted |= {e.value for e in tree.value.elts
                           if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    requirements: set[str] = set()
    seen: set[str] = set()
    while wanted:
        domain = wanted.pop()
        seen.add(domain)
        try:
            manifest = json.loads(wheel.read(f"homeassistant/components/{domain}/"
                                             "manifest.json"))
        except KeyError:
            continue
        requirements.update(manifest.get("requirements", []))
        wanted |= set(manifest.get("dependencies", [])) - seen
    return sorted(requirements)


def png(pixels: Any) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def edged_config(port: int) -> dict[str, Any]:
    models: dict[str, Any] = {
        "digits": {"path": str(MODELS / "digits_int8.tflite"),
                   "labels": str(MODELS / "digits.labels")},
        "shapes": {"path": str(MODELS / "shapes_detect_int8.tflite"),
                   "labels": str(MODELS / "shapes.labels"), "postprocess": "detection"},
        "dots": {"path": str(MODELS / "dots_keypoints_int8.tflite"),
                 "postprocess": "keypoints", "score_threshold": 0.0},
        "vibration": {"path": str(MODELS / "vibration_int8.tflite"),
                      "labels": str(MODELS / "vibration.labels"), "postprocess": "anomaly",
                      "anomaly": {"source": "class", "label": "normal", "threshold": 0.5,
                                  "direction": "below"}},
    }
    image = {"format": "image", "resize": "letterbox"}
    routes: list[dict[str, Any]] = [
        {"name": "digit", "subscribe": "sensors/+/digit", "model": "digits",
         "input": {"format": "raw"}},
        {"name": "shapes", "subscribe": "cams/+/frames", "model": "shapes", "input": image},
        {"name": "dots", "subscribe": "yard/dots", "model": "dots", "input": image},
        {"name": "bearing", "subscribe": "pumps/+/window", "model": "vibration",
         "input": {"format": "json"}},
    ]
    if (OWW / "hey_jarvis_v0.1.tflite").exists():
        models.update({
            "melspectrogram": {"path": str(OWW / "melspectrogram.tflite"),
                               "input_shape": [1, 1760], "postprocess": "raw"},
            "speech_embedding": {"path": str(OWW / "embedding_model.tflite"),
                                 "postprocess": "raw"},
            "hey_jarvis": {"path": str(OWW / "hey_jarvis_v0.1.tflite"),
                           "postprocess": "phrase", "phrase": {"threshold": 0.5}}})
        routes.append({
            "name": "wake", "subscribe": "mics/+/audio", "model": "melspectrogram",
            "input": {"format": "pcm", "sample_rate": 16000, "channels": 1,
                      "dtype": "int16"},
            "window": {"size": 1760, "hop": 1280, "fill": 0.0, "max_gap_ms": 500},
            "chain": [{"model": "speech_embedding", "scale": 0.1, "offset": 2.0,
                       "window": {"size": 76, "hop": 8, "fill": 1.0}},
                      {"model": "hey_jarvis", "window": {"size": 16, "hop": 1}}],
            "queue_size": 2048})
    for route in routes:
        route["deadline_ms"] = 30000
    return {"device_id": DEVICE,
            "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min_s": 0.2,
                     "reconnect_max_s": 1.0},
            "models": models, "routes": routes, "discovery": {"enabled": True},
            "logging": {"format": "json"}, "stats_interval_s": 0}


def hass_config(directory: Path, broker: int) -> None:
    (directory / ".storage").mkdir(parents=True)
    (directory / "configuration.yaml").write_text(yaml.safe_dump({
        "homeassistant": {"name": "edged check", "latitude": 52.0, "longitude": 4.9,
                          "elevation": 0, "unit_system": "metric", "time_zone": "UTC"},
        "http": {"server_host": "127.0.0.1", "server_port": free_port()},
        "logger": {"default": "warning"},
        "mqtt_statestream": {"base_topic": "hass_states", "publish_attributes": True},
    }))
    now = "2026-01-01T00:00:00+00:00"
    entry: dict[str, Any] = {"created_at": now, "modified_at": now, "data": {"broker": "127.0.0.1",
             "port": broker}, "options": {"discovery": True,
                                          "discovery_prefix": "homeassistant"},
             "discovery_keys": {}, "disabled_by": None, "domain": "mqtt",
             "entry_id": uuid.uuid4().hex, "minor_version": 2, "version": 1,
             "pref_disable_new_entities": False, "pref_disable_polling": False,
             "source": "user", "subentries": [], "title": "127.0.0.1", "unique_id": None}
    (directory / ".storage" / "core.config_entries").write_text(json.dumps({
        "version": 1, "minor_version": 5, "key": "core.config_entries",
        "data": {"entries": [entry]}}))


class States:
    """What Home Assistant's mqtt_statestream publishes: entity -> state and attributes."""

    def __init__(self, port: int) -> None:
        self.entities: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hass-check")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("hass_states/#")
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 4:
            return
        _, domain, obj, key = parts
        text = msg.payload.decode(errors="replace")
        with self.lock:
            entity = self.entities.setdefault(f"{domain}.{obj}", {})
            try:
                entity[key] = text if key == "state" else json.loads(text)
            except ValueError:
                entity[key] = text

    def ours(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {k: dict(v) for k, v in sorted(self.entities.items())
                    if "edged" in k and k != "sun.sun"}

    def show(self, title: str, attributes: bool = False) -> dict[str, dict[str, Any]]:
        """The entities and their states (and attributes: statestream publishes only those
        that change, so they are shown where all are fresh, the first time)."""
        found = self.ours()
        print(f"\n== {title}: {len(found)} entities of edged")
        for entity_id, v in found.items():
            attrs = {k: a for k, a in v.items() if k not in ("state", "friendly_name")}
            line = f"  {entity_id:38} {v.get('state', '?')!s:32} {v.get('friendly_name', '')}"
            print(line + (f"\n      {json.dumps(attrs)[:150]}" if attributes else ""))
        return found

    def wait(self, check: Any, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if check(self.ours()):
                return True
            time.sleep(0.5)
        return False


class Sender:
    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hass-check-sender")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)


def send_everything(sender: Sender) -> None:
    digits = np.load(MODELS / "digits_holdout.npz")["images"]
    for i, source in enumerate(("pump-7", "pump-8")):
        pixels = np.clip(np.rint(digits[i] * 255.0), 0, 255).astype(np.uint8)
        sender.send(f"sensors/{source}/digit", pixels.tobytes())
    shapes = np.load(MODELS / "shapes_holdout.npz")["images"]
    sender.send("cams/door/frames", png(shapes[0]))
    sender.send("cams/yard/frames", png(shapes[1]))
    sender.send("yard/dots", png(np.load(MODELS / "dots_holdout.npz")["images"][0]))
    vib = np.load(MODELS / "vibration_holdout.npz")
    normal = vib["windows"][list(vib["labels"]).index(0)]
    faulty = vib["windows"][next(i for i, v in enumerate(vib["labels"]) if v != 0)]
    sender.send("pumps/pump-7/window", json.dumps(faulty.tolist()).encode())
    sender.send("pumps/pump-8/window", json.dumps(normal.tolist()).encode())
    if (OWW / "hey_jarvis_v0.1.tflite").exists() and shutil.which("espeak-ng"):
        from tests.support.audio import CHUNK, silence, speak
        # The first two seconds announce the microphone; Home Assistant then needs a moment
        # to subscribe to its event entity (events are not retained). The stream restarts
        # after the pause, and fills its windows again before the phrase.
        first = silence(2.0)
        audio = np.concatenate([silence(2.0), speak("hey jarvis"), silence(1.5)])
        for part in (first, audio):
            for i in range(0, len(part) - CHUNK + 1, CHUNK):
                sender.send("mics/kitchen/audio", part[i:i + CHUNK].astype("<i2").tobytes())
            time.sleep(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", help="a Python 3.13 for Home Assistant")
    parser.add_argument("--version", default="2025.4.4")
    parser.add_argument("--venv", type=Path, help="default: ~/.cache/edged/hass-VERSION")
    args = parser.parse_args()
    default = Path.home() / ".cache" / "edged" / f"hass-{args.version}"
    hass = install(args.venv or default,
                   python313(args.python), args.version)
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        (work / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\n"
                                             "allow_anonymous true\n")
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        procs = [subprocess.Popen([mosquitto, "-c", str(work / "mosquitto.conf")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        try:
            wait_port(port, 10)
            states = States(port)
            (work / "edged.yaml").write_text(yaml.safe_dump(edged_config(port)))
            edged_cmd = [sys.executable, "-m", "edged", "run", "--config",
                         str(work / "edged.yaml")]
            edged_log = (work / "edged.log").open("ab")
            edged = subprocess.Popen(edged_cmd, cwd=REPO, stdout=edged_log, stderr=edged_log)
            procs.append(edged)
            hass_config(work / "ha", port)
            began = time.monotonic()
            procs.append(subprocess.Popen([str(hass), "-c", str(work / "ha")],
                                          stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            if not states.wait(lambda f: any(k.startswith("binary_sensor.edged_hass_check")
                                             for k in f), 180):
                failures.append("Home Assistant showed no entity of edged within 180 s")
            print(f"Home Assistant {args.version} up with edged's box entity after "
                  f"{time.monotonic() - began:.0f} s")
            sender = Sender(port)
            send_everything(sender)
            states.wait(lambda f: sum(1 for v in f.values()
                                      if v.get("state") not in (None, "unknown")) >= 9, 60)
            time.sleep(3)
            first = states.show("after the sources sent", attributes=True)
            live = {k for k, v in first.items() if v.get("state") != "unknown"}
            bad = [k for k, v in first.items() if v.get("state") in ("unavailable",)]
            if bad:
                failures.append(f"unavailable while edged runs: {bad}")

            edged.send_signal(signal.SIGTERM)
            edged.wait(30)
            states.wait(lambda f: all(v.get("state") == "unavailable" for v in f.values()
                                      if not k_is_box(v)), 30)
            stopped = states.show("edged stopped")
            still = [k for k, v in stopped.items() if v.get("state") != "unavailable"
                     and not k.startswith("binary_sensor.edged_hass_check_online")]
            if still:
                failures.append(f"not unavailable after edged stopped: {still}")

            edged = subprocess.Popen(edged_cmd, cwd=REPO, stdout=edged_log, stderr=edged_log)
            procs.append(edged)
            states.wait(lambda f: f.get("sensor.edged_pump_7_digit", {}).get("state")
                        == "unknown", 60)
            time.sleep(3)
            restarted = states.show("edged restarted, before any source sent")
            stale = [k for k in live if k in restarted and not k.startswith("event.")
                     and "edged_hass_check" not in k
                     and restarted[k].get("state") not in ("unknown",)]
            if stale:
                failures.append(f"an earlier run's state shown after a restart: {stale}")
            sender.send("pumps/pump-7/window", json.dumps(
                np.load(MODELS / "vibration_holdout.npz")["windows"][0].tolist()).encode())
            states.wait(lambda f: f.get("binary_sensor.edged_pump_7_bearing", {})
                        .get("state") in ("on", "off"), 30)
            before = states.show("pump-7 sent a window again")

            # Home Assistant restarts: it must find every state again (retained, and
            # published again when it says online on homeassistant/status).
            home = procs[2]
            home.send_signal(signal.SIGTERM)
            home.wait(120)
            with states.lock:
                states.entities.clear()
            procs.append(subprocess.Popen([str(hass), "-c", str(work / "ha")],
                                          stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            states.wait(lambda f: f.get("binary_sensor.edged_pump_7_bearing", {})
                        .get("state") in ("on", "off"), 120)
            time.sleep(3)
            after = states.show("Home Assistant restarted")
            changed = [k for k, v in before.items() if not k.startswith("event.")
                       and after.get(k, {}).get("state") != v.get("state")]
            if changed:
                failures.append(f"states changed across Home Assistant's restart: {changed}")
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
        lines = [line for name in ("home-assistant.log.1", "home-assistant.log")
                 if (work / "ha" / name).exists()
                 for line in (work / "ha" / name).read_text(errors="replace").splitlines()]
        about = [line for line in lines if any(w in line for w in (
            "edged", "Template", "template", "mqtt", "MQTT")) and (
            "WARNING" in line or "ERROR" in line)]
        print(f"\n== Home Assistant's logs: {len(lines)} lines, {len(about)} warnings or "
              "errors about MQTT, templates or edged")
        for line in about[:40]:
            print("  " + line[:220])
        if about:
            failures.append(f"{len(about)} warnings in Home Assistant's log")
    print("\n" + ("ok" if not failures else "FAILED:\n  " + "\n  ".join(failures)))
    return 0 if not failures else 1


def k_is_box(entity: dict[str, Any]) -> bool:
    return str(entity.get("friendly_name", "")).endswith(" online")


if __name__ == "__main__":
    sys.exit(main())
