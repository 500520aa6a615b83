"""edged against brokers that no one here wrote (tests/support/brokers.py), each started on
free loopback ports and stopped after: the real daemon, the bundled digits model, and paho
2.x peers speaking the protocol the broker has. A case is one broker.

For each: what the broker is (protocol versions, QoS, retain, shared subscriptions, sessions
kept across a restart) is observed with paho alone and must be what the fixture says, since
docs/brokers.md is written from it; then edged connects, says ``online``, answers at every
QoS the broker has, leaves ``offline`` as its will when killed with -9, comes back after a
restart of the broker, and loses nothing where the broker keeps sessions.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.mqtt import packets
from tests.support.brokers import BROKERS, MqttBroker
from tests.support.daemon import Edged, digits_config
from tests.support.ledger import frame

pytestmark = pytest.mark.integration

STATUS = "edged/test-box/status"
RESULTS = "edged/test-box/interop/#"
PER_QOS = 20  # requests per QoS level in a case
WAIT_S = 60.0  # generous: two busy cores, brokers in Erlang, Python and Node


@dataclass(frozen=True)
class Case:
    broker: str
    protocol: str
    """The peers' protocol, and the version edged ends up speaking there."""
    setting: str | None = None
    """edged's ``mqtt.protocol``; None: left out, so the default (``auto``: MQTT 5, then
    3.1.1 when the broker refuses 5) finds the version."""


CASES = [
    Case("mosquitto", "5", "5"),
    Case("mosquitto", "3.1.1", "3.1.1"),
    Case("mosquitto", "5"),
    Case("mosquitto-persistent", "5"),
    Case("mosquitto-max-qos-1", "5"),
    # The 3.1.1-only brokers, with edged's default protocol: it falls back from 5.
    Case("nats", "3.1.1"),
    Case("rabbitmq", "3.1.1"),
    Case("aedes", "3.1.1"),
    # amqtt 0.12.1 reads a level-5 CONNECT as 3.1.1, waits for a will topic that is not
    # there and drops the connection after 10 s without a CONNACK: `auto` takes no CONNACK
    # for a refusal of 5 too.
    Case("amqtt", "3.1.1"),
]


OBSERVED = sorted(BROKERS)
"""Every broker the fixtures offer, including the variants that the client work of issue 19
is about (``retain_available false`` refuses edged's retained will today; ``max_keepalive``
below edged's keep-alive; ``max_packet_size``): those are observed with paho only here."""


def case_id(case: Case) -> str:
    return f"{case.broker}-{case.setting or 'auto'}"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Callable[[str], MqttBroker]]:
    """Each broker started once for the module (on first use) and stopped at its end."""
    started: dict[str, MqttBroker] = {}

    def get(name: str) -> MqttBroker:
        if name not in started:
            broker = BROKERS[name](tmp_path_factory.mktemp(name))
            broker.start()
            started[name] = broker
        broker = started[name]
        if not broker.running:  # a test that failed half-way through a restart
            broker.start()
        return broker

    yield get
    for broker in started.values():
        broker.stop()


@pytest.fixture(params=CASES, ids=case_id)
def case(request: pytest.FixtureRequest, running: Callable[[str], MqttBroker]
         ) -> tuple[Case, MqttBroker]:
    spec: Case = request.param
    return spec, running(spec.broker)


# ---------------------------------------------------------------------------- paho peers


@dataclass
class Got:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    at: float = field(default_factory=time.monotonic)


class Peer:
    """A paho 2.x client that reconnects by itself and (re)subscribes on every connect
    where the broker kept no session; it keeps every message it gets."""

    def __init__(self, broker: MqttBroker, protocol: str, *, client_id: str | None = None,
                 persistent: bool = False, subscriptions: tuple[tuple[str, int], ...] = ()
                 ) -> None:
        self.v5 = protocol == "5"
        self.subscriptions = subscriptions
        self.got: list[Got] = []
        self.connects = 0
        self.subacks = 0
        self.cond = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"peer-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if self.v5 else not persistent)
        self.client.reconnect_delay_set(0.1, 1)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        props = None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 600 if persistent else 0
        kwargs: dict[str, Any] = {"properties": props, "clean_start": not persistent} \
            if self.v5 else {}
        self.client.connect(broker.host, broker.port, keepalive=30, **kwargs)
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.loop_start()
        self.wait(lambda: self.connects >= 1 and self.subacks >= len(subscriptions),
                  "connected and subscribed")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            return
        if not flags.session_present:
            for topic, qos in self.subscriptions:
                client.subscribe(topic, qos=qos)
        with self.cond:
            self.connects += 1
            self.cond.notify_all()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        with self.cond:
            self.subacks += 1
            self.cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.got.append(Got(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))
            self.cond.notify_all()

    def wait(self, done: Any, what: str, timeout: float = WAIT_S) -> None:
        with self.cond:
            if not self.cond.wait_for(done, timeout):
                raise AssertionError(f"not {what} within {timeout} s")

    def messages(self, topic: str | None = None, since: float = 0.0) -> list[Got]:
        with self.cond:
            return [g for g in self.got if (topic is None or g.topic == topic)
                    and g.at >= since]

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False
                ) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def got_marker(self, topic: str, timeout: float = WAIT_S) -> None:
        """Wait for a message on ``topic``, sent after what the test looks for: what the
        broker was going to deliver before it has been delivered by then."""
        self.wait(lambda: any(g.topic == topic for g in self.got), f"sent {topic}", timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connack(broker: MqttBroker, v5: bool) -> packets.ConnAck | None:
    """The broker's CONNACK to a CONNECT at this protocol level (edged's own codec, asking
    for a keep-alive of 300 s), if it accepts it; None when it refuses (another reason code,
    or the socket closed)."""
    connect = packets.encode_connect(f"level-{uuid.uuid4().hex[:8]}", v5=v5, keepalive=300,
                                     clean_start=True)
    decoder = packets.Decoder(v5)
    with socket.create_connection((broker.host, broker.port), timeout=10) as sock:
        sock.sendall(connect)
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                for packet in decoder.feed(chunk):
                    if isinstance(packet, packets.ConnAck):
                        return packet if packet.reason == 0 else None
        except (ConnectionResetError, TimeoutError, packets.MalformedPacket):
            return None  # a 3.1.1 broker's answer to a level-5 CONNECT may not parse as 5


# ---------------------------------------------------------- what the broker is, by paho


@pytest.mark.parametrize("name", OBSERVED)
def test_the_broker_is_what_its_fixture_says(
        name: str, running: Callable[[str], MqttBroker]) -> None:
    broker = running(name)
    assert connack(broker, v5=False) is not None, "every broker here speaks 3.1.1"
    announced = connack(broker, v5=True)
    assert (announced is not None) == ("5" in broker.versions)
    if announced is not None:  # MQTT 5 3.2.2.3: what a client must honour
        assert announced.maximum_qos == broker.max_qos, announced
        assert announced.retain_available == broker.retain, announced
        assert announced.server_keep_alive == broker.server_keep_alive, announced
        assert announced.maximum_packet_size == broker.max_packet_size, announced
    top = max(broker.versions)  # "5" > "3.1.1"
    base = f"observe/{uuid.uuid4().hex[:6]}"

    # Delivery at every QoS it has, and the QoS it delivers at.
    sub = Peer(broker, top, subscriptions=((f"{base}/q/#", broker.max_qos),))
    pub = Peer(broker, top)
    for qos in range(broker.max_qos + 1):
        pub.publish(f"{base}/q/{qos}", b"x", qos)
    sub.wait(lambda: len(sub.messages()) >= broker.max_qos + 1, "delivered at every QoS")
    delivered = {int(g.topic.rsplit("/", 1)[1]): g.qos for g in sub.messages()}
    for qos, at in delivered.items():
        assert at == (broker.max_qos if broker.name == "amqtt" else qos), delivered
    # amqtt 0.12 delivers at the subscription's QoS, not the lower of the two (MQTT-3.8.4-6).

    # Retained messages reach a later subscriber, where the broker keeps them: before a
    # marker published after it subscribed. (The retained message has a publisher of its
    # own: a broker without retain may cut off a client that sends one.)
    keeper = Peer(broker, top)
    with contextlib.suppress(RuntimeError, ValueError):  # cut off: no PUBACK
        keeper.publish(f"{base}/retained", b"kept", 1, retain=True).wait_for_publish(10)
    keeper.close()
    late = Peer(broker, top, subscriptions=((f"{base}/retained", 1), (f"{base}/marker", 1)))
    pub.publish(f"{base}/marker", b"", 1)
    late.got_marker(f"{base}/marker")
    kept = [g for g in late.messages() if g.retain]
    assert bool(kept) == broker.retain, late.messages()

    # Shared subscriptions: each message to one member of the group, all of them before
    # the marker that follows them from the same publisher.
    group = [Peer(broker, top, subscriptions=((f"$share/g/{base}/shared", 1),
                                              (f"{base}/marker", 1)))
             for _ in range(2)]
    for i in range(10):
        pub.publish(f"{base}/shared", str(i).encode(), 1)
    pub.publish(f"{base}/marker", b"", 1)
    for peer in group:
        peer.got_marker(f"{base}/marker")
    # (amqtt 0.12 also hands the retained message above to these filters, which do not
    # match it: only the shared topic is counted.)
    total = sum(len(p.messages(f"{base}/shared")) for p in group)
    assert total in (0, 10, 20), total  # nothing (a literal filter), shared, or copied
    assert (total == 10) == broker.shared_subscriptions, total
    for peer in (sub, pub, late, *group):
        peer.close()


# -------------------------------------------------------------------------- edged there


def interop_config(broker: MqttBroker, spec: Case, **mqtt_settings: Any) -> dict[str, Any]:
    """The digits model on one route per QoS level the broker has, each answering at its
    own QoS on its own topic (requests ``interop/qN/INDEX/frame``)."""
    config = digits_config(broker.port)
    if spec.setting is None:
        del config["mqtt"]["protocol"]
    else:
        config["mqtt"]["protocol"] = spec.setting
    config["mqtt"].update({
        "subscribe_qos": broker.max_qos,
        "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
        **mqtt_settings,
    })
    config["routes"] = [
        {"name": f"q{qos}", "subscribe": f"interop/q{qos}/+/frame", "model": "digits",
         "input": {"format": "raw"}, "publish": f"edged/{{device_id}}/interop/q{qos}",
         "publish_qos": qos, "deadline_ms": 30_000, "queue_size": 256}
        for qos in range(broker.max_qos + 1)]
    return config


def answered(listener: Peer, qos: int) -> set[str]:
    """The request topics edged answered on the QoS ``qos`` route."""
    import json

    return {json.loads(g.payload)["topic"]
            for g in listener.messages(f"edged/test-box/interop/q{qos}")}


def send(requester: Peer, qos: int, indexes: range, payload: bytes) -> set[str]:
    topics = {f"interop/q{qos}/{i}/frame" for i in indexes}
    for topic in sorted(topics):
        requester.publish(topic, payload, qos)
        time.sleep(0.005)
    return topics


def wait_status(listener: Peer, edged: Edged, status: bytes, since: float) -> None:
    end = time.monotonic() + WAIT_S
    while time.monotonic() < end:
        if any(g.payload == status for g in listener.messages(STATUS, since)):
            time.sleep(0.3)  # edged subscribes before it says online: the SUBACK lands
            return
        assert status == b"offline" or (edged.proc is not None
                                        and edged.proc.poll() is None), edged.log()[-3000:]
        time.sleep(0.1)
    raise AssertionError(f"edged never said {status!r}:\n{edged.log()[-3000:]}")


def wait_answers(listener: Peer, qos: int, expected: set[str], edged: Edged) -> None:
    end = time.monotonic() + WAIT_S
    while time.monotonic() < end and not expected <= answered(listener, qos):
        time.sleep(0.1)
    missing = expected - answered(listener, qos)
    assert not missing, (f"QoS {qos}: {len(missing)} of {len(expected)} unanswered"
                         f"\n{edged.log()[-3000:]}")


def test_edged_online_answers_at_every_qos_and_leaves_its_will(
    case: tuple[Case, MqttBroker], tmp_path: Path, daemons: list[Edged]
) -> None:
    spec, broker = case
    listener = Peer(broker, spec.protocol, subscriptions=(
        (STATUS, 1), (RESULTS, broker.max_qos)))
    requester = Peer(broker, spec.protocol)
    edged = Edged(tmp_path, interop_config(broker, spec))
    daemons.append(edged)
    t0 = time.monotonic()
    edged.start()
    try:
        wait_status(listener, edged, b"online", t0)
        # The version it found (auto) or was told, in its "connected" log line.
        assert f'"protocol": "{spec.protocol}"' in edged.log(), edged.log()[-3000:]
        if broker.retain:  # availability is retained: a newcomer learns it at once
            newcomer = Peer(broker, spec.protocol, subscriptions=((STATUS, 1),))
            newcomer.wait(lambda: any(g.retain and g.payload == b"online"
                                      for g in newcomer.messages(STATUS)), "told online")
            newcomer.close()
        payload = frame()
        for qos in range(broker.max_qos + 1):
            expected = send(requester, qos, range(PER_QOS), payload)
            wait_answers(listener, qos, expected, edged)
            at = {g.qos for g in listener.messages(f"edged/test-box/interop/q{qos}")}
            assert at == ({broker.max_qos} if broker.name == "amqtt" else {qos}), at
        t1 = time.monotonic()
        edged.stop(signal.SIGKILL)
        wait_status(listener, edged, b"offline", t1)
    finally:
        listener.close()
        requester.close()


def test_edged_comes_back_after_a_broker_restart_and_loses_nothing_kept(
    case: tuple[Case, MqttBroker], tmp_path: Path, daemons: list[Edged]
) -> None:
    spec, broker = case
    tag = uuid.uuid4().hex[:6]
    qos = 1
    persistent = broker.persists_sessions
    listener = Peer(broker, spec.protocol, client_id=f"listener-{tag}", persistent=persistent,
                    subscriptions=((STATUS, 1), (RESULTS, 1)))
    requester = Peer(broker, spec.protocol, client_id=f"requester-{tag}",
                     persistent=persistent)
    config = interop_config(broker, spec, client_id=f"edged-{tag}",
                            session_expiry_s=600 if persistent else 0)
    edged = Edged(tmp_path, config)
    daemons.append(edged)
    payload = frame()
    t0 = time.monotonic()
    edged.start()
    try:
        wait_status(listener, edged, b"online", t0)
        before = send(requester, qos, range(0, PER_QOS), payload)
        wait_answers(listener, qos, before, edged)

        t1 = time.monotonic()
        broker.restart()
        wait_status(listener, edged, b"online", t1)  # edged reconnected and said so
        after = send(requester, qos, range(PER_QOS, 2 * PER_QOS), payload)
        wait_answers(listener, qos, after, edged)

        if persistent:
            # edged away, its input queued in its session; then the broker restarts (a
            # clean stop: it saves); then edged comes back and gets every one of them.
            assert edged.stop() == 0
            t2 = time.monotonic()
            kept = send(requester, qos, range(2 * PER_QOS, 3 * PER_QOS), payload)
            time.sleep(1.0)  # the requester's PUBACKs
            broker.restart()
            again = Edged(tmp_path, config)
            daemons.append(again)
            again.start()
            wait_status(listener, again, b"online", t2)
            wait_answers(listener, qos, kept, again)
            assert again.stop() == 0
        else:
            assert edged.stop() == 0
    finally:
        listener.close()
        requester.close()
