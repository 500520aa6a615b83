"""What edged does with each CONNACK property (edged/mqtt/announced.py, MQTT 5 3.2.2.3)."""

from __future__ import annotations

from edged.mqtt.announced import NO_LIMIT, Announced, findings
from edged.mqtt.packets import ConnAck


def by_name(announced: Announced, **kw: object) -> dict[str, tuple[str, bool, bool]]:
    args: dict[str, object] = {"keepalive_s": 30, "publish_qos": {"cam": 2, "vib": 1},
                               "filters": ["cams/+/frames", "$share/g/vib"]}
    args.update(kw)
    return {f.name: (f.action, f.fatal, f.warning)
            for f in findings(announced, **args)}  # type: ignore[arg-type]


def test_3_1_1_announces_nothing_and_reads_as_every_default() -> None:
    connack = ConnAck(True, 0, receive_maximum=5, maximum_qos=1, retain_available=False)
    announced = Announced.of(connack, "3.1.1")
    assert (announced.maximum_qos, announced.retain_available, announced.receive_maximum,
            announced.session_present) == (2, True, 65535, True)
    assert announced.packet_limit() == NO_LIMIT and announced.keepalive(30) == 30


def test_mqtt5_limits_become_what_edged_does() -> None:
    connack = ConnAck(False, 0, receive_maximum=100, maximum_qos=1, retain_available=False,
                      maximum_packet_size=131072, server_keep_alive=0,
                      wildcard_available=False, shared_available=False)
    announced = Announced.of(connack, "5")
    assert announced.keepalive(30) == 0  # MQTT-3.2.2-21: the broker's, even 0
    assert announced.packet_limit() == 131072
    found = by_name(announced)
    assert found["Maximum QoS"] == ("routes cam publish at QoS 1 instead (MQTT-3.2.2-11)",
                                    False, True)
    assert found["Retain Available"][2]  # a warning: nothing retained
    # A route whose subscription the broker cannot take cannot work: `edged check` fails.
    assert found["Wildcard Subscription Available"][1]
    assert found["Shared Subscription Available"][1]
    assert "pings" not in found["Server Keep Alive"][0]


def test_a_broker_with_everything_needs_nothing() -> None:
    found = by_name(Announced.of(ConnAck(False, 0), "5"))
    assert not any(fatal or warning for _, fatal, warning in found.values())
