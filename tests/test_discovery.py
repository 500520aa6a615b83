"""edged.discovery and edged.entities without a broker: the configs and states a Settings
object announces, per route and per source, and when each goes out or is taken away."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edged import discovery
from edged.config import Settings
from edged.discovery import Catalog
from edged.entities import Entities
from edged.types import Outbound
from tests.support.hass import render, state_of


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
            "jarvis": {"path": "/m/jarvis.tflite", "postprocess": "phrase",
                       "phrase": {"label": "hey_jarvis"}},
            "dump": {"path": "/m/dump.tflite", "postprocess": "raw"},
        },
        "routes": [
            {"name": "door", "subscribe": "cams/door/frame", "model": "digits"},
            {"name": "yard.shapes", "subscribe": "yard/frame", "model": "shapes",
             "publish": "site/{device_id}/{model}/{route}", "publish_qos": 0},
            {"name": "bearing", "subscribe": "$share/g/pumps/+/window", "model": "vib",
             "publish": "alarms/{device_id}/{route}"},
            {"name": "wake", "subscribe": "mics/+/audio", "model": "jarvis"},
            {"name": "tensors", "subscribe": "t/#", "model": "dump"},
        ],
        "discovery": {"enabled": enabled, "max_sources": 2, "expire_after_s": 60,
                      "min_interval_s": 5},
    }
    data.update(overrides)
    return Settings(**data)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def entities(s: Settings | None = None) -> tuple[Entities, list[Outbound], Clock]:
    sent: list[Outbound] = []
    clock = Clock()
    return Entities(Catalog(s or settings()), sent.append, clock), sent, clock


def bodies(messages: list[Outbound]) -> dict[str, Any]:
    return {m.topic: json.loads(m.payload) if m.payload else None for m in messages}


ANOMALOUS = {"score": 0.1, "threshold": 0.5, "state": "anomalous", "changed": True,
             "previous": "normal"}
NORMAL = {"score": 0.9, "threshold": 0.5, "state": "normal", "changed": False}


def test_off_by_default_and_when_disabled() -> None:
    assert Settings().discovery.enabled is False
    assert Settings().discovery.prefix == "homeassistant"
    assert Settings().discovery.birth_topic == "homeassistant/status"
    ents, _sent, _ = entities(settings(enabled=False))
    assert ents.everything() == [] and ents.catalog.routes == {}


def test_a_route_without_wildcards_is_one_entity_of_the_box() -> None:
    catalog = Catalog(settings())
    (door, shapes) = catalog.fixed()
    assert door.config_topic == "homeassistant/sensor/pump-3/door/config"
    assert door.state_topic == "plant/edged/pump-3/ha/door"
    body = catalog.config_body(door)
    assert body["name"] == "door" and body["unique_id"] == "edged_pump-3_door"
    assert body["device"]["identifiers"] == ["edged_pump-3"]
    assert body["device"]["name"] == "edged pump-3"
    assert body["value_template"] == "{{ value_json.result.label }}"
    assert body["json_attributes_topic"] == door.state_topic
    assert shapes.config_topic == "homeassistant/sensor/pump-3/yard_shapes/config"
    assert catalog.config_body(shapes)["state_class"] == "measurement"


def test_a_wildcard_route_gets_an_entity_and_a_device_per_source() -> None:
    catalog = Catalog(settings())
    assert catalog.source_of("bearing", "pumps/pump-7/window") == "pump-7"
    assert catalog.source_of("door", "cams/door/frame") is None
    pump = catalog.entity("bearing", "pump-7")
    assert pump.config_topic == "homeassistant/binary_sensor/pump-3/bearing_pump-7/config"
    assert pump.state_topic == "plant/edged/pump-3/ha/bearing/pump-7"
    body = catalog.config_body(pump)
    # Home Assistant names an entity "{device} {name}": edged pump-7 bearing.
    assert (body["device"]["name"], body["name"]) == ("edged pump-7", "bearing")
    assert body["device"]["via_device"] == "edged_pump-3"
    assert body["device_class"] == "problem"
    assert (body["payload_on"], body["payload_off"]) == ("anomalous", "normal")
    assert catalog.from_state_topic(pump.state_topic) == ("bearing", "pump-7")
    assert catalog.from_state_topic("plant/edged/pump-3/predictions/door") is None


def test_a_wake_word_is_an_event_entity() -> None:
    catalog = Catalog(settings())
    mic = catalog.entity("wake", "kitchen")
    body = catalog.config_body(mic)
    assert mic.config_topic == "homeassistant/event/pump-3/wake_kitchen/config"
    assert body["event_types"] == ["hey_jarvis"] and "value_template" not in body
    message = catalog.state_message(mic, {"phrase": "hey_jarvis", "score": 0.9,
                                          "threshold": 0.5}, "mics/kitchen/audio", 0.0)
    assert not message.retain  # retained, it would fire again when Home Assistant restarts
    assert json.loads(message.payload)["event_type"] == "hey_jarvis"


def test_routes_without_a_single_value_are_skipped_with_a_reason() -> None:
    skipped = {s.route: s.reason for s in Catalog(settings()).skipped}
    assert skipped == {"tensors": "postprocess raw has no single value to show"}


def test_availability_follows_edgeds_status_topic() -> None:
    catalog = Catalog(settings())
    for entity in [*catalog.fixed(), catalog.entity("bearing", "p")]:
        (avail,) = catalog.config_body(entity)["availability"]
        assert avail["topic"] == "plant/edged/pump-3/status"
        # "stopped" on a clean shutdown must read as offline too.
        assert render(avail["value_template"], b"stopped") == "offline"
        assert render(avail["value_template"], b"online") == "online"


def test_ids_hold_only_what_home_assistant_accepts() -> None:
    s = settings(device_id="hall 2 (east)", discovery={"enabled": True, "prefix": "ha/"})
    door = Catalog(s).fixed()[0]
    assert door.config_topic == "ha/sensor/hall_2__east_/door/config"
    assert Catalog(s).config_body(door)["unique_id"] == "edged_hall_2__east__door"


def test_a_sources_first_result_is_published_whatever_it_says() -> None:
    ents, sent, _clock = entities()
    ents.observe("bearing", "pumps/p1/window", NORMAL, 1.7e9)
    found = bodies(sent)
    config = found["homeassistant/binary_sensor/pump-3/bearing_p1/config"]
    state = found["plant/edged/pump-3/ha/bearing/p1"]
    assert state_of(config, state) == "normal"
    assert state["topic"] == "pumps/p1/window"
    assert all(m.retain for m in sent)
    sent.clear()
    ents.observe("bearing", "pumps/p1/window", NORMAL, 1.7e9)  # nothing new
    assert sent == []
    ents.observe("bearing", "pumps/p1/window", ANOMALOUS, 1.7e9)  # a new state: at once
    assert [state_of(config, json.loads(m.payload)) for m in sent] == ["anomalous"]


def test_a_changed_score_waits_for_min_interval_and_then_goes_out() -> None:
    ents, sent, clock = entities()
    ents.observe("door", "cams/door/frame", {"label": "7", "score": 0.9, "top_k": []}, 0.0)
    sent.clear()
    ents.observe("door", "cams/door/frame", {"label": "7", "score": 0.8, "top_k": []}, 0.0)
    ents.tick()
    assert sent == []
    clock.now += 5
    ents.tick()
    assert [json.loads(m.payload)["result"]["score"] for m in sent] == [0.8]


def test_sources_past_max_sources_are_counted_not_announced(
        caplog: pytest.LogCaptureFixture) -> None:
    ents, sent, _ = entities()
    for pump in ("a", "b", "c", "d"):
        ents.observe("bearing", f"pumps/{pump}/window", NORMAL, 0.0)
    configs = [m.topic for m in sent if m.topic.endswith("/config")]
    assert configs == ["homeassistant/binary_sensor/pump-3/bearing_a/config",
                       "homeassistant/binary_sensor/pump-3/bearing_b/config"]
    assert ents.snapshot()["sources_refused"] == {"bearing": 2}


def test_a_silent_source_is_removed_and_comes_back_when_it_sends() -> None:
    ents, sent, clock = entities()
    ents.observe("bearing", "pumps/a/window", ANOMALOUS, 0.0)
    clock.now += 30
    ents.observe("bearing", "pumps/b/window", NORMAL, 0.0)
    clock.now += 30
    sent.clear()
    ents.tick()
    # a was silent for 60 s: its config and its retained state are cleared.
    assert [(m.topic, m.payload, m.retain) for m in sent] == [
        ("homeassistant/binary_sensor/pump-3/bearing_a/config", b"", True),
        ("plant/edged/pump-3/ha/bearing/a", b"", True)]
    assert ents.snapshot()["sources"] == {"bearing": 1}
    sent.clear()
    ents.observe("bearing", "pumps/a/window", NORMAL, 0.0)
    assert next(m.topic for m in sent).endswith("bearing_a/config")


def test_an_earlier_runs_entity_shows_unknown_until_its_source_sends() -> None:
    before, _, _ = entities()
    config = before.catalog.config_message(before.catalog.entity("bearing", "p9"))
    ents, sent, clock = entities()
    ents.config_seen(config.topic, config.payload)
    found = bodies(sent)
    state = found["plant/edged/pump-3/ha/bearing/p9"]
    assert state_of(found[config.topic], state) == "None"  # Home Assistant: unknown
    sent.clear()
    ents.config_seen(config.topic, config.payload)  # our own, coming back: nothing
    assert sent == []
    clock.now += 60
    ents.tick()  # never heard from again: removed
    assert [m.payload for m in sent] == [b"", b""]


def test_configs_edged_no_longer_announces_are_removed() -> None:
    ents, sent, _ = entities()
    # An older edged's layout (the route's own topic) and a route since removed.
    old = {"name": "door", "state_topic": "plant/edged/pump-3/predictions/door"}
    ents.config_seen("homeassistant/sensor/pump-3/door_old/config", json.dumps(old).encode())
    gone = {"name": "x", "state_topic": "plant/edged/pump-3/ha/gone/p1"}
    ents.config_seen("homeassistant/sensor/pump-3/gone_p1/config", json.dumps(gone).encode())
    assert [(m.topic, m.payload) for m in sent] == [
        ("homeassistant/sensor/pump-3/door_old/config", b""),
        ("homeassistant/sensor/pump-3/gone_p1/config", b""),
        ("plant/edged/pump-3/ha/gone/p1", b"")]


def test_an_older_edgeds_config_of_an_entity_announced_anew_is_left_to_be_replaced() -> None:
    ents, sent, _ = entities()
    # edged before per-source entities: the same topic and unique id, the route's topic.
    old = {"name": "door", "unique_id": "edged_pump-3_door",
           "state_topic": "plant/edged/pump-3/predictions/door"}
    ents.config_seen("homeassistant/sensor/pump-3/door/config", json.dumps(old).encode())
    assert sent == []  # the new config replaces it; an empty one would remove the entity


def test_everything_is_published_again_with_the_states_held() -> None:
    ents, sent, _ = entities()
    ents.observe("bearing", "pumps/a/window", ANOMALOUS, 0.0)
    again = bodies(ents.everything())
    assert again["homeassistant/binary_sensor/pump-3/online/config"]["device_class"] == \
        "connectivity"
    assert again["plant/edged/pump-3/ha/bearing/a"]["result"]["state"] == "anomalous"
    # A route without wildcards exists from the start, unknown until its first result.
    assert again["plant/edged/pump-3/ha/door"]["result"] == {"label": None}
    sent.clear()
    ents.home_assistant_status(b"offline")
    assert sent == []
    ents.home_assistant_status(b"online")
    assert len(sent) == len(again)


def test_a_reload_removes_what_it_no_longer_announces() -> None:
    old = settings()
    ents, sent, _ = entities(old)
    ents.observe("bearing", "pumps/a/window", NORMAL, 0.0)
    sent.clear()
    new = settings(routes=[r.model_dump(exclude_unset=True) for r in old.routes
                           if r.name != "bearing"])
    ents.replace(Catalog(new))
    removed = [m.topic for m in sent if not m.payload]
    assert removed == ["homeassistant/binary_sensor/pump-3/bearing_a/config",
                       "plant/edged/pump-3/ha/bearing/a"]
    sent.clear()
    ents.replace(Catalog(settings(enabled=False)))
    assert {m.payload for m in sent} == {b""}
    assert "homeassistant/binary_sensor/pump-3/online/config" in {m.topic for m in sent}


def test_attributes_stay_small_whatever_the_result() -> None:
    catalog = Catalog(settings())
    shapes = catalog.fixed()[1]
    big = {"count": 500, "detections": [
        {"index": i % 3, "label": "abc"[i % 3], "score": 0.5 + i / 2000,
         "box": {"ymin": 0.1, "xmin": 0.1, "ymax": 0.2, "xmax": 0.2}} for i in range(500)],
        "mask": {"format": "rle", "size": [512, 512], "values": [0, 1] * 5000}}
    message = catalog.state_message(shapes, shapes.view.summarize(big), "yard/frame", 0.0)
    assert len(message.payload) < 1024  # Home Assistant refuses attributes over 16 KiB
    assert json.loads(message.payload)["result"] == {
        "count": 500, "best_score": 0.7495, "labels": {"a": 167, "b": 167, "c": 166}}


def test_a_prefix_with_wildcards_is_refused() -> None:
    with pytest.raises(ValueError, match="wildcards"):
        settings(discovery={"enabled": True, "prefix": "ha/#"})


def test_source_levels_follow_every_wildcard() -> None:
    assert discovery.source_levels("a/+/b/+", "a/x/b/y") == ("x", "y")
    assert discovery.source_levels("$share/g/a/#", "a/x/y") == ("x", "y")
    assert discovery.source_levels("a/b", "a/b") is None
