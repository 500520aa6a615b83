"""edged.discovery: the Home Assistant discovery configs a Settings object announces."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from edged import discovery, results
from edged.config import Settings
from edged.results import Identity, Timings
from tests.support.broker import Broker
from tests.support.daemon import Edged, digits_config
from tests.support.probe import Probe


def settings(enabled: bool = True, device_id: str = "pump-3", **overrides: Any) -> Settings:
    data: dict[str, Any] = {
        "device_id": device_id,
        "mqtt": {"topic_prefix": "plant/edged"},
        "models": {
            "digits": {"path": "/m/digits.tflite"},
            "shapes": {"path": "/m/shapes.tflite", "postprocess": "detection"},
            "vib": {"path": "/m/vib.tflite", "postprocess": "anomaly",
                    "anomaly": {"source": "class", "label": "normal", "threshold": 0.5,
                                "direction": "below"}},
            "dump": {"path": "/m/dump.tflite", "postprocess": "raw"},
        },
        "routes": [
            {"name": "cam", "subscribe": "cams/+/frame", "model": "digits"},
            {"name": "yard.shapes", "subscribe": "yard/frame", "model": "shapes",
             "publish": "site/{device_id}/{model}/{route}", "publish_qos": 0},
            {"name": "bearing", "subscribe": "$share/g/pumps/+/window", "model": "vib",
             "publish": "alarms/{device_id}/{route}"},
            {"name": "per-sensor", "subscribe": "sensors/+/frame", "model": "digits",
             "publish": "out/{topic[1]}/{route}"},
            {"name": "tensors", "subscribe": "t/#", "model": "dump"},
        ],
        "discovery": {"enabled": enabled},
    }
    data.update(overrides)
    return Settings(**data)


def by_topic(s: Settings) -> dict[str, dict[str, Any]]:
    return {m.topic: json.loads(m.payload) for m in discovery.discovery_messages(s)}


def render(template: str, payload: bytes) -> Any:
    """Home Assistant's templates here are ``{{ value_json.a.b }}``: follow the path."""
    match = re.fullmatch(r"\{\{ value_json((?:\.\w+)+) \}\}", template)
    assert match, template
    value = json.loads(payload)
    for key in match.group(1).strip(".").split("."):
        value = value[key]
    return value


def test_off_by_default_and_when_disabled() -> None:
    assert Settings().discovery.enabled is False
    assert Settings().discovery.prefix == "homeassistant"
    assert discovery.discovery_messages(settings(enabled=False)) == []


def test_each_route_with_a_fixed_topic_and_a_single_value_becomes_a_sensor() -> None:
    msgs = discovery.discovery_messages(settings())
    assert [m.topic for m in msgs] == [
        "homeassistant/sensor/pump-3/cam/config",
        "homeassistant/sensor/pump-3/yard_shapes/config",
        "homeassistant/sensor/pump-3/bearing/config",
    ]
    # Retained, so a Home Assistant that starts later still finds them; QoS 1 so none is lost.
    assert all(m.retain and m.qos == 1 for m in msgs)


def test_classification_sensor_reads_the_label_from_the_routes_topic() -> None:
    cam = by_topic(settings())["homeassistant/sensor/pump-3/cam/config"]
    assert cam["name"] == "cam"
    assert cam["unique_id"] == "edged_pump-3_cam"
    assert cam["state_topic"] == "plant/edged/pump-3/predictions/cam"  # the default template
    assert cam["json_attributes_topic"] == cam["state_topic"]
    assert cam["qos"] == 1
    payload = results.result_payload(
        Identity("cam", "digits", "pump-3", "cams/a/frame", 0.0),
        {"label": "7", "score": 0.98, "top_k": [{"index": 7, "label": "7", "score": 0.98}]},
        Timings(), 100.0)
    assert render(cam["value_template"], payload) == "7"


def test_detection_and_anomaly_sensors_show_the_count_and_the_state() -> None:
    found = by_topic(settings())
    shapes = found["homeassistant/sensor/pump-3/yard_shapes/config"]
    assert shapes["state_topic"] == "site/pump-3/shapes/yard.shapes"
    assert shapes["qos"] == 0 and shapes["state_class"] == "measurement"
    bearing = found["homeassistant/sensor/pump-3/bearing/config"]
    assert bearing["state_topic"] == "alarms/pump-3/bearing"
    assert "state_class" not in bearing  # a text state has no statistics
    identity = Identity("r", "m", "pump-3", "x", 0.0)
    detections = results.result_payload(identity, {"count": 2, "detections": []}, Timings(), 1)
    event = results.result_payload(identity, {"score": 0.1, "threshold": 0.5,
                                              "state": "anomalous", "changed": True,
                                              "previous": "normal"}, Timings(), 1)
    assert render(shapes["value_template"], detections) == 2
    assert render(bearing["value_template"], event) == "anomalous"


def test_availability_follows_edgeds_status_topic() -> None:
    for config in by_topic(settings()).values():
        (avail,) = config["availability"]
        assert avail["topic"] == "plant/edged/pump-3/status"
        assert (avail["payload_available"], avail["payload_not_available"]) == (
            "online", "offline")
        # edged says "stopped" on a clean shutdown: Home Assistant must see it as offline,
        # so the template folds every payload but online into offline.
        assert avail["value_template"] == "{{ 'online' if value == 'online' else 'offline' }}"


def test_one_device_block_for_every_sensor_of_a_box() -> None:
    devices = [c["device"] for c in by_topic(settings()).values()]
    assert all(d == devices[0] for d in devices)
    assert devices[0]["identifiers"] == ["edged_pump-3"]
    assert devices[0]["name"] == "edged pump-3" and devices[0]["manufacturer"] == "edged"


def test_routes_that_cannot_be_one_sensor_are_skipped_with_a_reason() -> None:
    skipped = {s.route: s.reason for s in discovery.plan(settings()).skipped}
    assert set(skipped) == {"per-sensor", "tensors"}
    assert "depends on the source topic" in skipped["per-sensor"]
    assert "raw" in skipped["tensors"]


def test_ids_hold_only_what_home_assistant_accepts() -> None:
    s = settings(device_id="hall 2 (east)", discovery={"enabled": True, "prefix": "ha/"})
    (topic, config), *_ = by_topic(s).items()
    assert topic == "ha/sensor/hall_2__east_/cam/config"
    assert config["unique_id"] == "edged_hall_2__east__cam"
    # The status topic keeps the device id as edged publishes it.
    assert config["availability"][0]["topic"] == "plant/edged/hall 2 (east)/status"


def test_removal_clears_what_a_reload_took_away() -> None:
    old = settings()
    new = settings(routes=[r.model_dump(exclude_unset=True) for r in old.routes
                           if r.name != "bearing"])
    gone = discovery.removal_messages(old, new)
    assert [(m.topic, m.payload, m.retain) for m in gone] == [
        ("homeassistant/sensor/pump-3/bearing/config", b"", True)]
    assert discovery.removal_messages(old, old) == []
    assert len(discovery.removal_messages(old, settings(enabled=False))) == 3


def test_a_prefix_with_wildcards_is_refused() -> None:
    with pytest.raises(ValueError, match="wildcards"):
        settings(discovery={"enabled": True, "prefix": "ha/#"})


@pytest.mark.integration
def test_the_daemon_announces_its_routes_retained_on_connect(
    tmp_path: Path, broker: Broker, daemons: list[Edged]
) -> None:
    config = digits_config(broker.port)
    config["discovery"] = {"enabled": True}
    edged = Edged(tmp_path, config)
    daemons.append(edged)
    edged.start()
    watcher = Probe(broker.port)
    try:
        watcher.subscribe("edged/test-box/status")
        while watcher.next(timeout=60, topic="edged/test-box/status").payload != b"online":
            pass
        # Retained: a consumer that subscribes afterwards (Home Assistant starting) gets it.
        late = Probe(broker.port)
        try:
            late.subscribe("homeassistant/sensor/+/+/config")
            announced = late.next(timeout=10)
        finally:
            late.close()
    finally:
        watcher.close()
    assert announced.retain
    assert announced.topic == "homeassistant/sensor/test-box/cam/config"
    body = announced.json()
    assert body["state_topic"] == "edged/test-box/predictions/cam"
    assert body["availability"][0]["topic"] == "edged/test-box/status"
