"""edged's MQTT client against a real mosquitto: acknowledgements and input held on stop."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from edged.config import MqttConfig
from edged.mqtt import MqttClient
from edged.types import Inbound, Outbound
from tests.support.broker import Broker
from tests.support.probe import Probe


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Inbound] = []
        self.arrived = threading.Condition()

    def __call__(self, message: Inbound) -> None:
        with self.arrived:
            self.messages.append(message)
            self.arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return [m.payload for m in self.messages]


def names(kind: str) -> tuple[str, str]:
    """A topic and a client id of this test's own."""
    return f"{kind}/{uuid.uuid4().hex[:8]}/in", f"edged-{kind}-{uuid.uuid4().hex[:6]}"


def connected(port: int, client_id: str, topic: str,
              session_expiry_s: int = 60) -> tuple[MqttClient, Inbox]:
    """edged's client, connected and subscribed to ``topic``, and what it receives."""
    inbox = Inbox()
    cfg = MqttConfig(port=port, session_expiry_s=session_expiry_s, reconnect_min_s=0.1,
                     reconnect_max_s=0.5)
    client = MqttClient(cfg, client_id, f"edged/{client_id}/status", [topic], inbox)
    client.start()
    assert client.connected.wait(10)
    time.sleep(0.2)  # the SUBSCRIBE is acknowledged
    return client, inbox


@pytest.mark.integration
@pytest.mark.parametrize("qos", [1, 2])
def test_input_is_acknowledged_and_not_delivered_twice(broker: Broker, qos: int) -> None:
    topic, name = names(f"ack{qos}")
    client, inbox = connected(broker.port, name, topic)
    probe = Probe(broker.port)
    try:
        for i in range(20):
            probe.publish(topic, str(i).encode(), qos=qos)
        assert inbox.wait_for(20) == [str(i).encode() for i in range(20)]
        client.stop()
        # Every message was acknowledged: the resumed session brings none of them again.
        resumed, again = connected(broker.port, name, topic)
        probe.publish(topic, b"after", qos=qos)
        assert again.wait_for(1) == [b"after"]
        resumed.stop()
    finally:
        probe.close()


@pytest.mark.integration
def test_qos1_input_held_on_stop_comes_back_to_the_next_session(broker: Broker) -> None:
    topic, name = names("hold")
    first, first_inbox = connected(broker.port, name, topic)
    probe = Probe(broker.port)
    try:
        probe.publish(topic, b"before", qos=1)
        assert first_inbox.wait_for(1) == [b"before"]
        assert first.hold_input()
        for i in range(10):
            probe.publish(topic, f"held {i}".encode(), qos=1)
        deadline = time.monotonic() + 10
        while first.held_for_next_session < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first.held_for_next_session == 10
        first.stop()
        assert first_inbox.wait_for(1) == [b"before"], "held input must not reach edged"

        second, second_inbox = connected(broker.port, name, topic)
        held = second_inbox.wait_for(10)
        second.stop()
        assert sorted(held) == sorted(f"held {i}".encode() for i in range(10))
    finally:
        probe.close()


@pytest.mark.integration
def test_without_a_persistent_session_nothing_is_held(broker: Broker) -> None:
    topic, name = names("nohold")
    client, inbox = connected(broker.port, name, topic, session_expiry_s=0)
    probe = Probe(broker.port)
    try:
        assert not client.hold_input()
        probe.publish(topic, b"still delivered", qos=1)
        assert inbox.wait_for(1) == [b"still delivered"]
        assert client.held_for_next_session == 0
        client.stop()
    finally:
        probe.close()


@pytest.mark.integration
def test_publishes_beyond_the_brokers_receive_maximum_wait_their_turn(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    tight = Broker(tmp_path / "b", extra=["max_inflight_messages 2"])  # Receive Maximum 2
    tight.start()
    probe = Probe(tight.port)
    try:
        probe.subscribe("out/#")
        topic, name = names("recvmax")
        client, _ = connected(tight.port, name, topic)
        for i in range(200):
            client.publish(Outbound(f"out/{i}", b"x", qos=1))
        got = probe.collect(200, timeout=15)
        assert client.flush(5.0)
        client.stop()
    finally:
        probe.close()
        tight.stop()
    assert sorted(int(m.topic.split("/")[1]) for m in got) == list(range(200))
    broker_log = tight.log.read_text() if tight.log.exists() else ""
    assert "Receive maximum exceeded" not in broker_log


@pytest.mark.integration
def test_a_qos2_publish_arrives_exactly_once(broker: Broker) -> None:
    probe = Probe(broker.port)
    try:
        probe.subscribe("exactly/#", qos=2)
        topic, name = names("qos2out")
        client, _ = connected(broker.port, name, topic)
        for i in range(20):
            client.publish(Outbound(f"exactly/{i}", b"once", qos=2))
        got = probe.collect(20, timeout=10)
        assert client.flush(5.0)  # PUBREC, PUBREL, PUBCOMP all done
        client.stop()
        with pytest.raises(TimeoutError):
            probe.next(timeout=0.5, topic="exactly/0")
    finally:
        probe.close()
    assert sorted(m.topic for m in got) == sorted(f"exactly/{i}" for i in range(20))


@pytest.mark.integration
def test_the_probes_time_the_way_back_and_never_reach_edged(broker: Broker) -> None:
    topic, name = names("probe")
    client, inbox = connected(broker.port, name, topic)
    deadline = time.monotonic() + 5
    while client.wayback.returned < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    way_back = client.snapshot()["way_back"]
    client.stop()
    assert way_back["probes_returned"] >= 3
    assert 0 < way_back["margin_ms"] < 100
    assert not way_back["broker_nagle_suspected"]  # the test broker sets set_tcp_nodelay
    assert inbox.messages == []


COALESCE_MS = 50.0


@pytest.mark.integration
def test_a_fast_stream_is_read_in_batches_and_a_lone_message_is_not_held(
        broker: Broker) -> None:
    topic, name = names("coalesce")
    inbox = Inbox()
    cfg = MqttConfig(port=broker.port, coalesce_ms=COALESCE_MS)
    client = MqttClient(cfg, name, f"edged/{name}/status", [topic], inbox)
    client.start()
    assert client.connected.wait(10)
    time.sleep(0.2)
    probe = Probe(broker.port)
    try:
        start = time.monotonic()
        for i in range(3000):  # 10,000 a second for 0.3 s
            while time.monotonic() < start + i / 10_000:
                time.sleep(0.0001)
            probe.publish(topic, str(i).encode(), qos=0)
        assert inbox.wait_for(3000) == [str(i).encode() for i in range(3000)]
        # Read as they come, the stream takes 2-3 messages a read here; gathered, over 10.
        assert client.snapshot()["packets_per_read"] > 6
        time.sleep(0.5)  # the stream has stopped: the socket's mark falls back
        sent = time.monotonic()
        probe.publish(topic, b"lone", qos=0)
        assert inbox.wait_for(3001)[-1] == b"lone"
        assert time.monotonic() - sent < 0.025  # not held for the 50 ms window
    finally:
        probe.close()
        client.stop()
