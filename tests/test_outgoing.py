"""What edged sends across connections (edged/mqtt/outgoing.py): the broker's announced
limits (MQTT 5 3.2.2.3), the session's resends (MQTT-4.4.0-1, MQTT-3.3.1-1) and probation for
a publish that closes the connection. The link is a byte sink (pure logic: no socket), and
what edged wrote is read back with the codec."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from edged.config import OutboxConfig
from edged.delivery import Refusals
from edged.mqtt import packets
from edged.mqtt.announced import Announced
from edged.mqtt.link import Link
from edged.mqtt.outgoing import Outgoing
from edged.mqtt.packets import Ack, Decoder, Publish
from edged.outbox import Outbox
from edged.types import Outbound


class Wire:
    """Stands in for a Link: keeps what edged writes."""

    def __init__(self) -> None:
        self.out = bytearray()

    def send(self, data: bytes) -> None:
        self.out += data

    def wants_write(self) -> bool:
        return False

    def take(self) -> list[packets.Packet]:
        """What was written since the last take, decoded (PUBLISH and PUBREL read the same
        in either direction)."""
        data, self.out = bytes(self.out), bytearray()
        return Decoder(True).feed(data)


class Side:
    """An Outgoing with its hook's reports, connected through Wires."""

    def __init__(self, attempts: int = 3) -> None:
        self.out = Outgoing(True, Outbox(OutboxConfig()), Refusals(), attempts)
        self.reports: list[tuple[str, str, str]] = []
        self.out.on_undeliverable = lambda m, reason, text: self.reports.append(
            (m.topic, reason, text))
        self.wire = Wire()

    def connect(self, session_present: bool = True, **limits: object) -> Wire:
        self.wire = Wire()
        announced = Announced("5", session_present, **limits)  # type: ignore[arg-type]
        self.out.attach(cast(Link, self.wire), announced)
        self.out.flush_outbox()
        return self.wire

    def ack(self, packet: Publish) -> None:
        kind = packets.PUBACK if packet.qos == 1 else packets.PUBREC
        self.out.on_ack(cast(Link, self.wire), Ack(kind, packet.mid))
        self.out.flush_outbox()


def publishes(sent: list[packets.Packet]) -> list[Publish]:
    return [p for p in sent if isinstance(p, Publish)]


def test_session_present_resends_with_the_original_ids_dup_set_and_pubrel_again() -> None:
    side = Side()
    wire = side.connect()
    for i in range(3):
        side.out.publish(Outbound("r", f"m{i}".encode(), qos=1))
    side.out.publish(Outbound("r", b"q2", qos=2))
    first = publishes(wire.take())
    assert [p.dup for p in first] == [False] * 4
    side.ack(first[3])  # PUBREC: the QoS 2 publish is past it, PUBREL written
    (pubrel,) = wire.take()
    assert isinstance(pubrel, Ack) and pubrel.kind == packets.PUBREL
    side.out.detach(closed_by_broker=False)

    wire = side.connect(session_present=True)
    again = wire.take()
    # MQTT-4.4.0-1: PUBREL again for the QoS 2 message, the unacknowledged publishes again
    # with their original packet identifiers; MQTT-3.3.1-1: DUP set on each.
    assert isinstance(again[0], Ack) and (again[0].kind, again[0].mid) == (packets.PUBREL,
                                                                          first[3].mid)
    resent = publishes(again)
    assert [(p.mid, p.payload, p.dup) for p in resent] == [
        (p.mid, p.payload, True) for p in first[:3]]
    assert side.out.resent == 3


def test_session_gone_sends_them_again_as_new_messages() -> None:
    side = Side()
    wire = side.connect()
    side.out.publish(Outbound("r", b"a", qos=1))
    side.out.publish(Outbound("r", b"b", qos=2))
    first = publishes(wire.take())
    side.ack(first[1])  # past PUBREC; the broker then loses the session before PUBREL
    wire.take()
    side.out.detach(closed_by_broker=False)
    wire = side.connect(session_present=False)
    again = publishes(wire.take())
    # At least once: both again, as new publishes (DUP clear), nothing as PUBREL.
    assert sorted(p.payload for p in again) == [b"a", b"b"]
    assert not any(p.dup for p in again)
    for p in again:
        side.ack(p)
    assert not side.reports


def test_publishes_within_the_broker_maximum_qos() -> None:
    side = Side()
    wire = side.connect(maximum_qos=1)
    side.out.publish(Outbound("r", b"x", qos=2))
    side.out.publish(Outbound("r", b"y", qos=1))
    sent = publishes(wire.take())
    assert [p.qos for p in sent] == [1, 1]  # MQTT-3.2.2-11
    assert side.out.downgraded == 1
    wire = side.connect(maximum_qos=0)
    side.out.publish(Outbound("r", b"z", qos=1))
    assert [p.qos for p in publishes(wire.take())] == [0]


def test_nothing_is_retained_where_the_broker_keeps_no_retained_messages() -> None:
    side = Side()
    wire = side.connect(retain_available=False)
    side.out.publish(Outbound("status", b"online", qos=1, retain=True))
    (sent,) = publishes(wire.take())
    assert not sent.retain  # MQTT-3.2.2-14
    wire = side.connect(retain_available=True)
    side.out.publish(Outbound("status", b"online", qos=1, retain=True))
    (sent,) = publishes(wire.take())
    assert sent.retain


def test_a_message_over_the_maximum_packet_size_is_reported_not_sent() -> None:
    side = Side()
    wire = side.connect(maximum_packet_size=200)
    side.out.publish(Outbound("big", b"x" * 300, qos=1, correlation_data=b"c"))
    side.out.publish(Outbound("small", b"x" * 100, qos=1))
    sent = publishes(wire.take())
    assert [p.topic for p in sent] == ["small"]  # MQTT-3.2.2-15
    assert len(side.reports) == 1 and side.reports[0][:2] == ("big", "too_large")
    assert "Maximum Packet Size is 200 bytes" in side.reports[0][2]
    assert side.out.undeliverable["too_large"] == 1
    assert len(side.out.outbox) == 0


def test_a_refusal_by_reason_code_is_reported() -> None:
    side = Side()
    wire = side.connect()
    side.out.publish(Outbound("acl/denied", b"x", qos=1))
    (sent,) = publishes(wire.take())
    side.out.on_ack(cast(Link, wire), Ack(packets.PUBACK, sent.mid, 0x87))
    assert side.reports == [("acl/denied", "refused", "the broker refused it: Not authorized")]
    assert side.out.all_delivered()


def test_probation_sends_what_was_in_flight_one_at_a_time_and_nothing_new() -> None:
    side = Side()
    wire = side.connect()
    for i in range(3):
        side.out.publish(Outbound("r", f"m{i}".encode(), qos=1))
    assert len(publishes(wire.take())) == 3
    side.out.detach(closed_by_broker=True)  # the broker closed it: which one, unknown
    wire = side.connect()
    assert side.out.on_probation
    side.out.publish(Outbound("r", b"new", qos=1))  # waits: nothing new during probation
    for i in range(3):
        (one,) = publishes(wire.take())
        assert one.payload == f"m{i}".encode() and one.dup
        side.ack(one)
    assert not side.out.on_probation
    (new,) = publishes(wire.take())
    assert new.payload == b"new"


def run_against_a_broker_that_closes_on(side: Side, refused: Callable[[Publish], bool],
                                        connections: int) -> int:
    """Connect up to ``connections`` times to a broker that closes the connection on a
    ``refused`` publish and acknowledges everything else; the connections it took until
    nothing was in flight."""
    for n in range(1, connections + 1):
        wire = side.connect()
        while sent := publishes(wire.take()):
            if any(refused(p) for p in sent):
                side.out.detach(closed_by_broker=True)
                break
            for p in sent:
                side.ack(p)
        if side.out.all_delivered():
            return n
    raise AssertionError(f"still not delivered after {connections} connections")


def test_a_publish_that_closes_the_connection_is_set_aside_after_its_attempts() -> None:
    side = Side(attempts=3)
    side.connect()
    side.out.publish(Outbound("r", b"before", qos=1))
    side.out.publish(Outbound("r", b"p!", qos=1))
    side.out.publish(Outbound("r", b"after", qos=1, correlation_data=b"c"))
    side.out.detach(closed_by_broker=True)  # on its first sending: three in flight
    taken = run_against_a_broker_that_closes_on(side, lambda p: p.payload == b"p!", 10)
    # One connection to tell "before" apart, then three blamed on "p!" alone, then the rest.
    assert taken <= 1 + 3 + 1
    assert [(topic, reason) for topic, reason, _ in side.reports] == [("r", "refused")]
    assert side.out.undeliverable["refused"] == 1
    assert not side.out.on_probation


def test_a_broker_that_closes_on_qos2_gets_qos1_from_then_on() -> None:
    side = Side(attempts=2)
    wire = side.connect()
    side.out.publish(Outbound("r", b"p", qos=2))
    assert [p.qos for p in publishes(wire.take())] == [2]
    side.out.detach(closed_by_broker=True)
    run_against_a_broker_that_closes_on(side, lambda p: p.qos == 2, 10)
    assert not side.reports  # not set aside: sent anew at QoS 1, and taken
    wire = side.connect()
    side.out.publish(Outbound("r", b"later", qos=2))
    assert [p.qos for p in publishes(wire.take())] == [1]
    assert side.out.snapshot()["qos2_refused_by_broker"] is True
