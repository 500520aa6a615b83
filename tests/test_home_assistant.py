"""Home Assistant as its users see it, through a real mosquitto and the real daemon: an
entity per source, states retained and published again, entities of an earlier run shown
unknown and then removed, the bound on sources, and every template rendered by Home
Assistant's rules against what real runs of every decoder published."""

from __future__ import annotations

import io
import json
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.support.audio import (
    CHUNK,
    require_tools,
    silence,
    speak,
    wakeword_models,
    wakeword_route,
)
from tests.support.broker import Broker
from tests.support.daemon import MODELS, Edged, digits_config
from tests.support.hass import attributes_of, state_of
from tests.support.probe import Probe, Received

pytestmark = pytest.mark.integration


def frame(index: int) -> bytes:
    image = np.load(MODELS / "digits_holdout.npz")["images"][index]
    return bytes(np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8).tobytes())


def retained(port: int, topic_filter: str, settle: float = 1.0) -> dict[str, Any]:
    """What the broker holds retained under ``topic_filter``: topic -> JSON body."""
    reader = Probe(port)
    try:
        reader.subscribe(topic_filter)
        found = reader.collect(1000, settle)
    finally:
        reader.close()
    return {m.topic: body(m.payload) for m in found if m.retain and m.payload}


def body(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode()


def config(port: int, device: str, **discovery: Any) -> dict[str, Any]:
    data = digits_config(port)
    data["device_id"] = device
    data["discovery"] = {"enabled": True, **discovery}
    return data


def start(tmp_path: Path, data: dict[str, Any], probe: Probe, daemons: list[Edged]) -> Edged:
    tmp_path.mkdir(parents=True, exist_ok=True)
    edged = Edged(tmp_path, data)
    daemons.append(edged)
    status = f"edged/{data['device_id']}/status"
    probe.subscribe(status)
    edged.start()
    edged.wait_online(probe, status)
    return edged


def ask(probe: Probe, topic: str, payload: bytes, reply: str) -> dict[str, Any]:
    probe.subscribe(reply)
    probe.publish(topic, payload, response_topic=reply, correlation_data=b"1")
    answer: dict[str, Any] = probe.next(timeout=30, topic=reply).json()
    return answer


def wait_for(port: int, topic_filter: str, check: Any, timeout: float = 20.0
             ) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        found = retained(port, topic_filter, settle=0.5)
        if check(found) or time.monotonic() > end:
            return found


def test_each_source_has_its_entity_and_its_state_reaches_home_assistant(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    device = "ha-sources"
    start(tmp_path, config(broker.port, device), probe, daemons)
    # Requests with a Response Topic: the requester gets the answer, and Home Assistant's
    # entity of the source shows it too (publish_answered is off: the route's topic not).
    answers = {pump: ask(probe, f"sensors/{pump}/frame", frame(i), f"replies/{pump}")
               for i, pump in enumerate(("pump-7", "pump-8"))}
    node = f"homeassistant/sensor/{device}"
    found = wait_for(broker.port, "#", lambda f: f"edged/{device}/ha/cam/pump-8" in f)
    for pump, answer in answers.items():
        cfg = found[f"{node}/cam_{pump}/config"]
        assert (cfg["device"]["name"], cfg["name"]) == (f"edged {pump}", "cam")
        assert cfg["device"]["via_device"] == f"edged_{device}"
        state = found[f"edged/{device}/ha/cam/{pump}"]
        assert state_of(cfg, state) == answer["result"]["label"]
        assert attributes_of(cfg, state)["score"] == answer["result"]["score"]
        assert state["topic"] == f"sensors/{pump}/frame"
    # The box itself: connected while edged is online.
    box = found[f"homeassistant/binary_sensor/{device}/online/config"]
    assert box["device_class"] == "connectivity"
    assert state_of(box, found[box["state_topic"]].encode()) == "online"

    # Home Assistant starting says online on its status topic: everything comes again.
    expected = {f"{node}/cam_pump-7/config", f"{node}/cam_pump-8/config",
                f"edged/{device}/ha/cam/pump-7", f"edged/{device}/ha/cam/pump-8"}
    watcher = Probe(broker.port)
    try:
        watcher.subscribe(f"{node}/+/config", f"edged/{device}/ha/#")
        watcher.collect(100, 0.5)  # the retained copies
        probe.publish("homeassistant/status", b"online")
        again: set[str] = set()
        end = time.monotonic() + 20
        while not expected <= again and time.monotonic() < end:
            again |= {m.topic for m in watcher.collect(100, 0.5) if not m.retain}
    finally:
        watcher.close()
    assert expected <= again


def test_after_a_restart_old_entities_show_unknown_then_go_when_silent(
    tmp_path: Path, private_broker: Broker, daemons: list[Edged]
) -> None:
    private_broker.start()  # its own: nothing retained from other tests
    port, device = private_broker.port, "ha-restart"
    probe = Probe(port)
    try:
        restart_and_expire(tmp_path, port, device, probe, daemons)
    finally:
        probe.close()


def restart_and_expire(tmp_path: Path, port: int, device: str, probe: Probe,
                       daemons: list[Edged]) -> None:
    first = start(tmp_path / "a", config(port, device), probe, daemons)
    ask(probe, "sensors/pump-1/frame", frame(0), "replies/1")
    state_topic = f"edged/{device}/ha/cam/pump-1"
    held = wait_for(port, state_topic, lambda f: state_topic in f)
    assert held[state_topic]["result"]["label"] is not None
    first.stop()
    # Stopped, edged's status is not online: Home Assistant shows every entity unavailable.
    assert retained(port, f"edged/{device}/status") == {f"edged/{device}/status": "stopped"}
    restarted = config(port, device, expire_after_s=4)
    start(tmp_path / "b", restarted, probe, daemons)
    # The new run holds no state of pump-1: Home Assistant must not show the old one.
    unknown = wait_for(port, state_topic,
                       lambda f: f.get(state_topic, {}).get("result", {}).get("label", 1)
                       is None)
    cfg = retained(port, f"homeassistant/sensor/{device}/cam_pump-1/config")
    assert state_of(cfg[f"homeassistant/sensor/{device}/cam_pump-1/config"],
                    unknown[state_topic]) == "None"  # Home Assistant: unknown
    # pump-1 stays silent past expire_after_s: its entity and its state are removed.
    gone = wait_for(port, f"homeassistant/sensor/{device}/#",
                    lambda f: not any("pump-1" in t for t in f), timeout=30)
    assert not any("pump-1" in t for t in gone)
    assert retained(port, state_topic) == {}


def test_sources_past_max_sources_are_answered_counted_and_logged(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    device = "ha-bounded"
    edged = start(tmp_path, config(broker.port, device, max_sources=2), probe, daemons)
    for i in range(4):
        answer = ask(probe, f"sensors/s{i}/frame", frame(i), f"replies/b{i}")
        assert "result" in answer  # answered as usual
    found = wait_for(broker.port, f"homeassistant/sensor/{device}/+/config",
                     lambda f: len(f) >= 2)
    assert sorted(found) == [f"homeassistant/sensor/{device}/cam_s0/config",
                             f"homeassistant/sensor/{device}/cam_s1/config"]
    probe.subscribe(f"edged/{device}/stats")
    probe.publish(f"edged/{device}/stats/request", b"")
    stats: Received = probe.next(timeout=10, topic=f"edged/{device}/stats")
    assert stats.json()["home_assistant"]["sources_refused"] == {"cam": 2}
    assert "discovery.max_sources" in edged.log()


# --------------------------------------------------------------------------- templates

THIRD = MODELS.parent / ".cache" / "third_party"


def decoders_config(port: int, device: str) -> dict[str, Any]:
    """A route per decoder, on real models, each on a wildcard topic."""
    models: dict[str, Any] = {
        "digits": {"path": str(MODELS / "digits_int8.tflite"),
                   "labels": str(MODELS / "digits.labels")},
        "shapes": {"path": str(MODELS / "shapes_detect_int8.tflite"),
                   "labels": str(MODELS / "shapes.labels"), "postprocess": "detection"},
        "yolo": {"path": str(MODELS / "shapes_yolov8_int8.tflite"),
                 "labels": str(MODELS / "shapes.labels"), "postprocess": "yolo"},
        "dots": {"path": str(MODELS / "dots_keypoints_int8.tflite"),
                 "postprocess": "keypoints", "score_threshold": 0.0},
        "faces": {"path": str(THIRD / "face_detection_short_range.tflite"),
                  "postprocess": "anchors", "score_threshold": 0.5,
                  "anchors": {"strides": [8, 16], "anchors_per_cell": [2, 6],
                              "keypoints": 6, "nms": "weighted", "iou_threshold": 0.3}},
        "people": {"path": str(THIRD / "selfie_segmentation.tflite"),
                   "postprocess": "segmentation",
                   "segmentation": {"threshold": 0.5, "mask": "rle"}},
        "vibration": {"path": str(MODELS / "vibration_int8.tflite"),
                      "labels": str(MODELS / "vibration.labels"), "postprocess": "anomaly",
                      "anomaly": {"source": "class", "label": "normal", "threshold": 0.5,
                                  "direction": "below"}},
        **wakeword_models(refractory_ms=0),
    }
    image = {"format": "image", "resize": "letterbox"}
    routes: list[dict[str, Any]] = [
        {"name": "digit", "subscribe": "sensors/+/digit", "model": "digits",
         "input": {"format": "raw"}},
        {"name": "shapes", "subscribe": "cams/+/shapes", "model": "shapes", "input": image},
        {"name": "yolo", "subscribe": "cams/+/yolo", "model": "yolo", "input": image},
        {"name": "dots", "subscribe": "cams/+/dots", "model": "dots", "input": image},
        {"name": "faces", "subscribe": "cams/+/faces", "model": "faces",
         "input": {**image, "mean": [0.5], "std": [0.5]}},
        {"name": "people", "subscribe": "cams/+/people", "model": "people", "input": image},
        {"name": "bearing", "subscribe": "pumps/+/window", "model": "vibration",
         "input": {"format": "json"}},
        wakeword_route(deadline_ms=30000, queue_size=2048),
    ]
    for route in routes:
        route.setdefault("deadline_ms", 30000)
    data = digits_config(port)
    data.update(device_id=device, models=models, routes=routes,
                discovery={"enabled": True, "min_interval_s": 0})
    return data


def png(pixels: Any) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_every_template_renders_against_real_results_of_every_decoder(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    require_tools()
    if not (THIRD / "selfie_segmentation.tflite").exists():
        pytest.skip("third-party models missing (scripts/models/fetch_models.sh fetches them)")
    device = "ha-decoders"
    start(tmp_path, decoders_config(broker.port, device), probe, daemons)
    probe.subscribe(f"edged/{device}/ha/#")  # events are not retained: listen first
    shapes = np.load(MODELS / "shapes_holdout.npz")["images"][0]
    dots = np.load(MODELS / "dots_holdout.npz")["images"][0]
    photo = (THIRD / "astronaut.png").read_bytes()
    window = np.load(MODELS / "vibration_holdout.npz")["windows"][0]
    asked = {
        "digit": ("sensors/d1/digit", frame(3)),
        "shapes": ("cams/c1/shapes", png(shapes)),
        "yolo": ("cams/c1/yolo", png(shapes)),
        "dots": ("cams/c1/dots", png(dots)),
        "faces": ("cams/c1/faces", photo),
        "people": ("cams/c1/people", photo),
        "bearing": ("pumps/p1/window", json.dumps(window.tolist()).encode()),
    }
    results = {}
    for route, (topic, payload) in asked.items():
        answer = ask(probe, topic, payload, f"replies/{route}")
        assert "result" in answer, answer
        results[route] = answer["result"]
    audio = np.concatenate([silence(1.0), speak("hey jarvis"), silence(1.5)])
    for i in range(0, len(audio), CHUNK):
        probe.publish("mics/k1/audio", audio[i:i + CHUNK].astype("<i2").tobytes())
        time.sleep(0.004)
    event = probe.next(timeout=60, topic=f"edged/{device}/ha/wake/k1")

    configs = wait_for(broker.port, f"homeassistant/+/{device}/+/config",
                       lambda f: len(f) >= 9)
    states = retained(broker.port, f"edged/{device}/ha/#")
    by_route = {c["name"]: c for c in configs.values() if "state_topic" in c
                and c["name"] != "online"}
    assert set(by_route) == {*asked, "wake"}
    expected = {"digit": results["digit"]["label"], "bearing": results["bearing"]["state"],
                **{r: str(results[r]["count"]) for r in
                   ("shapes", "yolo", "dots", "faces", "people")}}
    for route, cfg in by_route.items():
        if route == "wake":
            continue
        state = states[cfg["state_topic"]]
        # Home Assistant's rules, StrictUndefined: a key the message lacks fails here.
        assert state_of(cfg, state) == str(expected[route]), (route, state)
        attributes = attributes_of(cfg, state)
        assert len(json.dumps(attributes)) < 16 * 1024
        assert "mask" not in attributes and "detections" not in attributes
    assert by_route["bearing"]["device_class"] == "problem"
    assert state_of(by_route["bearing"], states[by_route["bearing"]["state_topic"]]) in (
        by_route["bearing"]["payload_on"], by_route["bearing"]["payload_off"])
    wake = by_route["wake"]
    assert not event.retain
    body = event.json()
    assert body["event_type"] in wake["event_types"] and body["result"]["score"] >= 0.5
    print("\n" + "\n".join(f"{r}: {state_of(c, states[c['state_topic']])!r} "
                           f"{attributes_of(c, states[c['state_topic']])}"
                           for r, c in by_route.items() if r != "wake")
          + f"\nwake: event {body}")


def test_a_reload_and_a_restart_remove_the_entities_of_a_removed_route(
    tmp_path: Path, private_broker: Broker, daemons: list[Edged]
) -> None:
    private_broker.start()
    port, device = private_broker.port, "ha-reload"
    probe = Probe(port)
    try:
        data = config(port, device)
        data["routes"].append({**data["routes"][0], "name": "spare",
                               "subscribe": "spares/+/frame"})
        edged = start(tmp_path, data, probe, daemons)
        ask(probe, "sensors/a/frame", frame(0), "replies/a")
        ask(probe, "spares/b/frame", frame(1), "replies/b")
        node = f"homeassistant/sensor/{device}"
        wait_for(port, f"{node}/+/config", lambda f: len(f) == 2)
        # The reload takes the route spare away: its entity and its state go with it.
        data["routes"] = data["routes"][:1]
        edged.config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        assert edged.proc is not None
        edged.proc.send_signal(signal.SIGHUP)
        found = wait_for(port, f"{node}/+/config", lambda f: len(f) == 1)
        assert list(found) == [f"{node}/cam_a/config"]
        assert retained(port, f"edged/{device}/ha/spare/#") == {}
        edged.stop()
        # While edged is stopped the route cam goes as well: the next start removes it.
        data["routes"][0].update(name="other", subscribe="others/+/frame")
        start(tmp_path / "again", data, probe, daemons)
        gone = wait_for(port, f"{node}/+/config", lambda f: not f)
        assert gone == {}
        assert retained(port, f"edged/{device}/ha/cam/#") == {}
    finally:
        probe.close()


def test_a_broker_that_lost_everything_gets_every_config_and_state_again(
    tmp_path: Path, private_broker: Broker, daemons: list[Edged]
) -> None:
    private_broker.start()  # no persistence: a restart loses every retained message
    port, device = private_broker.port, "ha-broker"
    probe = Probe(port)
    try:
        start(tmp_path, config(port, device), probe, daemons)
        answer = ask(probe, "sensors/c/frame", frame(2), "replies/c")
    finally:
        probe.close()
    state_topic = f"edged/{device}/ha/cam/c"
    wait_for(port, state_topic, lambda f: state_topic in f)
    private_broker.stop()
    private_broker.start()
    # edged reconnects and publishes every config and the state it holds, retained.
    found = wait_for(port, "#", lambda f: state_topic in f, timeout=30)
    assert f"homeassistant/sensor/{device}/cam_c/config" in found
    assert found[state_topic]["result"]["label"] == answer["result"]["label"]


def test_an_upgrade_replaces_an_older_edgeds_config_instead_of_removing_it(
    tmp_path: Path, private_broker: Broker, daemons: list[Edged]
) -> None:
    private_broker.start()
    port, device = private_broker.port, "ha-upgrade"
    topic = f"homeassistant/sensor/{device}/cam/config"
    probe = Probe(port)
    try:
        # What edged published before entities per source: the route's own topic.
        old = {"name": "cam", "unique_id": f"edged_{device}_cam",
               "state_topic": f"edged/{device}/predictions/cam"}
        probe.client.publish(topic, json.dumps(old).encode(), qos=1, retain=True)
        data = config(port, device)
        data["routes"][0]["subscribe"] = "sensors/door/frame"  # one entity, same topic
        start(tmp_path, data, probe, daemons)
    finally:
        probe.close()
    found = wait_for(port, topic, lambda f: f.get(topic, {}).get("state_topic")
                     == f"edged/{device}/ha/cam")
    assert found[topic]["unique_id"] == f"edged_{device}_cam"  # Home Assistant keeps it
    time.sleep(1.0)  # nothing removes it afterwards
    assert retained(port, topic)[topic]["state_topic"] == f"edged/{device}/ha/cam"
