"""edged.mqtt.packets against an independent reference: paho-mqtt 2.x's own packet builders
(captured from a paho Client) and its decoders, plus golden bytes written from the MQTT specs."""

from __future__ import annotations

import contextlib
import itertools
import re
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet as paho_packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edged.mqtt import packets as mp
from edged.mqtt.packets import (
    Ack,
    ConnAck,
    Decoder,
    Disconnect,
    MalformedPacket,
    PingResp,
    Publish,
    SubAck,
)

FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- paho as the reference --------------------------------------------------------------------

class _FakeSocket:
    def close(self) -> None:
        pass


class CapturingClient(paho.Client):
    """A paho Client whose packet builders write into ``sent`` instead of a socket."""

    def __init__(self, v5: bool, client_id: str = "", clean_session: bool | None = None) -> None:
        super().__init__(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
                         clean_session=None if v5 else clean_session)
        self.sent: list[bytes] = []
        self._sock = _FakeSocket()  # type: ignore[assignment]  # _send_publish wants a socket

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: Any = None) -> MQTTErrorCode:
        self.sent.append(bytes(packet))
        return MQTTErrorCode.MQTT_ERR_SUCCESS


def paho_publish(v5: bool, topic: str, payload: bytes, qos: int, mid: int, retain: bool,
                 dup: bool, props: Properties | None) -> bytes:
    client = CapturingClient(v5)
    client._send_publish(mid, topic.encode(), payload, qos, retain, dup, None, props)
    return client.sent[0]


def split(packet: bytes) -> tuple[int, bytes]:
    """(first byte, body after the fixed header) of one whole packet."""
    i = 1
    while packet[i] & 0x80:
        i += 1
    return packet[0], packet[i + 1:]


def paho_decode_publish(packet: bytes, v5: bool) -> paho_packet.PublishPacket:
    header, body = split(packet)
    version = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
    return paho_packet.decode_publish(header, body, version)


def publish_props(response_topic: str | None, correlation: bytes | None, expiry: int | None,
                  user: list[tuple[str, str]]) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    if expiry is not None:
        props.MessageExpiryInterval = expiry
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation is not None:
        props.CorrelationData = correlation
    if user:
        props.UserProperty = user
    return props


def one(data: bytes, v5: bool) -> mp.Packet:
    packets = Decoder(v5).feed(data)
    assert len(packets) == 1
    return packets[0]


# --- strategies -------------------------------------------------------------------------------

# Strings both codecs accept: no surrogates, no U+0000, and no U+FEFF (which paho refuses).
_chars = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\ufeff")
strings = st.text(_chars, max_size=40)
topics = st.text(st.characters(blacklist_categories=["Cs"],
                               blacklist_characters="\x00\ufeff+#"), min_size=1, max_size=60)
payloads = st.binary(max_size=600)
mids = st.integers(1, 65535)
user_props = st.lists(st.tuples(strings, strings), max_size=4)
maybe_expiry = st.none() | st.integers(0, 2**32 - 1)


@st.composite
def paho_publishes(draw: st.DrawFn, v5: bool) -> tuple[bytes, dict[str, Any]]:
    """A well-formed PUBLISH built by paho, and the fields it was built from."""
    qos = draw(st.integers(0, 2))
    fields: dict[str, Any] = dict(
        topic=draw(topics), payload=draw(payloads), qos=qos, retain=draw(st.booleans()),
        dup=draw(st.booleans()) if qos else False, mid=draw(mids) if qos else 0)
    props = None
    if v5:
        fields.update(response_topic=draw(st.none() | topics),
                      correlation_data=draw(st.none() | st.binary(max_size=40)),
                      user_properties=tuple(draw(user_props)),
                      expiry_interval_s=draw(maybe_expiry),
                      topic_alias=draw(st.none() | st.integers(1, 65535)))
        props = publish_props(fields["response_topic"], fields["correlation_data"],
                              fields["expiry_interval_s"], list(fields["user_properties"]))
        if fields["topic_alias"] is not None:
            props.TopicAlias = fields["topic_alias"]
        # Properties edged ignores must still be parsed past.
        if draw(st.booleans()):
            props.ContentType = draw(strings)
            props.PayloadFormatIndicator = draw(st.integers(0, 1))
            props.SubscriptionIdentifier = draw(st.lists(st.integers(1, 268_435_455),
                                                         min_size=1, max_size=3))
    packet = paho_publish(v5, fields["topic"], fields["payload"], qos, fields["mid"],
                          fields["retain"], fields["dup"], props)
    return packet, fields


def assert_same_as_paho(ours: Publish, theirs: paho_packet.PublishPacket) -> None:
    assert ours.topic == theirs.topic.decode()
    assert ours.payload == bytes(theirs.payload)
    assert (ours.qos, ours.retain, ours.dup, ours.mid) == (
        theirs.qos, theirs.retain, theirs.dup, theirs.mid)
    props = theirs.properties
    if props is None:
        assert (ours.response_topic, ours.correlation_data, ours.user_properties,
                ours.expiry_interval_s, ours.topic_alias) == (None, None, (), None, None)
        return
    assert ours.response_topic == getattr(props, "ResponseTopic", None)
    assert ours.correlation_data == getattr(props, "CorrelationData", None)
    assert ours.expiry_interval_s == getattr(props, "MessageExpiryInterval", None)
    assert ours.topic_alias == getattr(props, "TopicAlias", None)
    assert list(ours.user_properties) == list(getattr(props, "UserProperty", []))


# --- PUBLISH against paho ---------------------------------------------------------------------

@FAST
@given(st.booleans().flatmap(lambda v5: st.tuples(st.just(v5), paho_publishes(v5))))
def test_publish_built_by_paho_decodes_as_paho_decodes_it(
        case: tuple[bool, tuple[bytes, dict[str, Any]]]) -> None:
    v5, (packet, fields) = case
    ours = one(packet, v5)
    assert isinstance(ours, Publish)
    assert_same_as_paho(ours, paho_decode_publish(packet, v5))
    for name, value in fields.items():  # and the values it was built from
        assert getattr(ours, name) == value


@FAST
@given(v5=st.booleans(), topic=topics, payload=payloads, qos=st.integers(0, 2), mid=mids,
       retain=st.booleans(), dup=st.booleans(), response_topic=st.none() | topics,
       correlation=st.none() | st.binary(max_size=40), user=user_props, expiry=maybe_expiry)
def test_encode_publish_is_read_by_paho_and_matches_its_bytes(
        v5: bool, topic: str, payload: bytes, qos: int, mid: int, retain: bool, dup: bool,
        response_topic: str | None, correlation: bytes | None, user: list[tuple[str, str]],
        expiry: int | None) -> None:
    dup = dup and qos > 0
    mid = mid if qos else 0
    extra: dict[str, Any] = {}
    props = None
    if v5:
        extra = dict(response_topic=response_topic, correlation_data=correlation,
                     user_properties=user, expiry_interval_s=expiry)
        props = publish_props(response_topic, correlation, expiry, user)
    ours = mp.encode_publish(topic, payload, v5=v5, qos=qos, mid=mid, retain=retain, dup=dup,
                             **extra)
    theirs = paho_decode_publish(ours, v5)
    assert theirs.topic.decode() == topic and bytes(theirs.payload) == payload
    assert (theirs.qos, theirs.mid, theirs.retain, theirs.dup) == (qos, mid, retain, dup)
    if v5:
        assert theirs.properties is not None
        assert getattr(theirs.properties, "ResponseTopic", None) == response_topic
        assert getattr(theirs.properties, "CorrelationData", None) == correlation
        assert getattr(theirs.properties, "MessageExpiryInterval", None) == expiry
        assert getattr(theirs.properties, "UserProperty", []) == user
    assert ours == paho_publish(v5, topic, payload, qos, mid, retain, dup, props)


def test_encode_publish_takes_bytearray_and_memoryview_payloads() -> None:
    data = bytearray(b"x" * 300)
    for payload in (data, memoryview(data)):
        out = one(mp.encode_publish("t", payload, v5=True, correlation_data=b"c"), True)
        assert isinstance(out, Publish) and out.payload == bytes(data)


def test_large_publish_in_64k_chunks_is_held_without_rescanning() -> None:
    payload = bytes(range(256)) * 600  # 150 KB
    packet = mp.encode_publish("cam/1", payload, v5=True, qos=1, mid=9,
                               correlation_data=b"id-1", user_properties=[("deadline", "1")])
    for kind in (bytes, bytearray, memoryview):
        decoder, out = Decoder(True), []
        for i in range(0, len(packet), 65536):
            out += decoder.feed(kind(packet[i:i + 65536]))
            assert decoder.buffered == (0 if out else min(i + 65536, len(packet)))
        assert len(out) == 1 and isinstance(out[0], Publish)
        assert out[0].payload == payload and out[0].correlation_data == b"id-1"
        assert out[0].user_properties == (("deadline", "1"),) and out[0].mid == 9


@FAST
@given(cut=st.integers(1, 200), v5=st.booleans())
def test_large_publish_split_inside_its_variable_header(cut: int, v5: bool) -> None:
    payload = b"p" * 5000
    packet = mp.encode_publish("a/" + "t" * 100, payload, v5=v5, qos=2, mid=3,
                               response_topic="r" * 50 if v5 else None)
    decoder = Decoder(v5)
    out = decoder.feed(packet[:cut]) + decoder.feed(packet[cut:])
    assert len(out) == 1 and isinstance(out[0], Publish) and out[0].payload == payload


def test_publish_with_topic_alias_and_long_property_block() -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.TopicAlias = 3
    props.ResponseTopic = "r/" + "x" * 200  # a property block over 127 bytes
    props.CorrelationData = b"\x00\xff"
    packet = paho_publish(True, "", b"body", 1, 4, False, False, props)
    out = one(packet, True)
    assert isinstance(out, Publish)
    assert (out.topic, out.topic_alias, out.response_topic, out.correlation_data) == (
        "", 3, "r/" + "x" * 200, b"\x00\xff")
    assert_same_as_paho(out, paho_decode_publish(packet, True))


# --- chunking ---------------------------------------------------------------------------------

_GOLDEN_V5 = [b"\x20\x03\x00\x00\x00", b"\x90\x04\x00\x01\x00\x01", b"\x40\x02\x00\x07",
              b"\x50\x04\x00\x08\x10\x00", b"\xd0\x00", b"\xb0\x04\x00\x02\x00\x11",
              b"\x62\x02\x00\x05", b"\xe0\x01\x8b"]
_GOLDEN_V3 = [b"\x20\x02\x00\x00", b"\x90\x03\x00\x01\x01", b"\x40\x02\x00\x07",
              b"\xd0\x00", b"\xb0\x02\x00\x02", b"\x70\x02\x00\x05"]


@st.composite
def streams(draw: st.DrawFn) -> tuple[bool, list[bytes]]:
    v5 = draw(st.booleans())
    golden = st.sampled_from(_GOLDEN_V5 if v5 else _GOLDEN_V3)
    publish = paho_publishes(v5).map(lambda case: case[0])
    return v5, draw(st.lists(publish | golden, min_size=1, max_size=8))


@FAST
@given(stream=streams(), cuts=st.lists(st.integers(0, 10_000), max_size=12),
       kind=st.sampled_from([bytes, bytearray, memoryview]))
def test_any_chunking_gives_the_same_packets(
        stream: tuple[bool, list[bytes]], cuts: list[int], kind: Any) -> None:
    v5, packets = stream
    data = b"".join(packets)
    expected = [one(p, v5) for p in packets]
    assert Decoder(v5).feed(data) == expected
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    decoder, got = Decoder(v5), []
    for a, b in itertools.pairwise(bounds):
        got += decoder.feed(kind(data[a:b]))
    assert got == expected and decoder.buffered == 0


def test_byte_by_byte_and_buffered() -> None:
    data = b"".join(_GOLDEN_V5) + mp.encode_publish("x", b"y" * 200, v5=True, qos=1, mid=1)
    decoder, got = Decoder(True), []
    for i in range(len(data)):
        got += decoder.feed(data[i:i + 1])
        assert decoder.buffered <= i + 1
    assert len(got) == len(_GOLDEN_V5) + 1 and decoder.buffered == 0
    assert decoder.feed(b"\x30\x85") == [] and decoder.buffered == 2
    assert decoder.feed(b"") == [] and decoder.buffered == 2


# --- hostile input ----------------------------------------------------------------------------

@FAST
@given(v5=st.booleans(), data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300)))
def test_garbage_raises_only_malformed_packet(v5: bool, data: bytes, cuts: list[int]) -> None:
    decoder = Decoder(v5, max_packet_size=1000)
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    with contextlib.suppress(MalformedPacket):
        for a, b in itertools.pairwise(bounds):
            for packet in decoder.feed(data[a:b]):
                assert isinstance(packet, (Publish, ConnAck, Ack, SubAck, PingResp, Disconnect))


@FAST
@given(stream=streams(), index=st.integers(0, 10_000), value=st.integers(0, 255))
def test_corrupted_streams_raise_only_malformed_packet(
        stream: tuple[bool, list[bytes]], index: int, value: int) -> None:
    v5, packets = stream
    data = bytearray(b"".join(packets))
    data[index % len(data)] = value
    with contextlib.suppress(MalformedPacket):
        Decoder(v5).feed(data)


@FAST
@given(stream=streams(), data=st.data())
def test_truncated_fields_raise_malformed_packet(stream: tuple[bool, list[bytes]],
                                                 data: st.DataObject) -> None:
    """A packet whose remaining length says it ends before its fixed fields do."""
    v5, packets = stream
    first, body = split(packets[0])
    if first >> 4 == mp.PUBLISH:
        qos = (first >> 1) & 3
        fixed = 2 + ((body[0] << 8) | body[1]) + (2 if qos else 0) + (1 if v5 else 0)
        keep = data.draw(st.integers(0, fixed - 1))
    elif first >> 4 in (mp.PINGRESP, mp.DISCONNECT):
        return  # these have no fixed fields: any shorter body is still valid
    else:
        keep = data.draw(st.integers(0, min(len(body) - 1, 1)))
    with pytest.raises(MalformedPacket):
        Decoder(v5).feed(bytes((first, keep)) + body[:keep])


_MALFORMED: list[tuple[bool, bytes, str]] = [
    (True, b"\x10\x00", "CONNECT"), (True, b"\x82\x00", "SUBSCRIBE"),
    (True, b"\xa2\x00", "UNSUBSCRIBE"), (True, b"\xc0\x00", "PINGREQ"),
    (True, b"\xf0\x00", "AUTH"), (True, b"\x00\x00", "reserved"),
    (False, b"\xe0\x00", "DISCONNECT in MQTT 3.1.1"),
    (True, b"\x41\x02\x00\x01", "bad flags"), (True, b"\x60\x02\x00\x01", "bad flags"),
    (True, b"\xd1\x00", "bad flags"), (True, b"\x21\x03\x00\x00\x00", "bad flags"),
    (True, b"\x36\x06\x00\x01a\x00\x01\x00", "QoS 3"),
    (True, b"\x38\x04\x00\x01a\x00", "DUP set at QoS 0"),
    (False, b"\x30\x04\x00\x02\xc3\x28", "invalid UTF-8"),
    (False, b"\x30\x05\x00\x03\xed\xa0\x80", "invalid UTF-8"),  # an encoded surrogate
    (False, b"\x30\x04\x00\x02a\x00", "U+0000"),
    (False, b"\x30\x05\x00\x03a/+", "wildcard"), (False, b"\x30\x03\x00\x01#", "wildcard"),
    (False, b"\x30\x02\x00\x00", "empty topic"),
    (True, b"\x30\x03\x00\x00\x00", "empty topic and no topic alias"),
    (True, b"\x30\x09\x00\x01a\x05\x11\x00\x00\x00\x01", "not allowed"),  # session expiry
    (True, b"\x30\x0e\x00\x01a\x0a\x02\x00\x00\x00\x01\x02\x00\x00\x00\x02", "twice"),
    (True, b"\x30\x07\x00\x01a\x03\x23\x00\x00", "invalid value"),  # topic alias 0
    (True, b"\x30\x06\x00\x01a\x02\x01\x02", "invalid value"),  # payload format 2
    (True, b"\x30\x05\x00\x01a\x01\x01", "truncated property"),
    (True, b"\x30\x04\x00\x01a\x05", "past the end"),
    (True, b"\x30\x03\x00\x01a", "before its properties"),
    (True, b"\x32\x04\x00\x01a\x00", "truncated in its packet identifier"),
    (True, b"\x32\x06\x00\x01a\x00\x00\x00", "packet identifier 0"),
    (True, b"\x40\x02\x00\x00", "packet identifier 0"),
    (True, b"\x40\x05\x00\x01\x00\x00\x00", "trailing bytes"),
    (True, b"\x40\x03\x00\x01\x11", "reason code 0x11 is invalid"),
    (True, b"\x40\x04\x00\x01\x00\x02", "past the end"),
    (True, b"\x40\x06\x00\x01\x00\x02\x1f\x00", "truncated length field"),
    (True, b"\x40\x08\x00\x01\x00\x04\x1f\x00\x01\xff", "invalid UTF-8"),
    (False, b"\x40\x03\x00\x01\x00", "wrong size"),
    (False, b"\x20\x03\x00\x00\x00", "wrong size"),
    (False, b"\x20\x02\x02\x00", "reserved flags"),
    (False, b"\x20\x02\x01\x05", "session present"),
    (False, b"\x20\x02\x00\x06", "unknown return code"),
    (True, b"\x20\x02\x00\x00", "truncated"),
    (True, b"\x20\x06\x00\x00\x03\x21\x00\x00", "invalid value"),  # receive maximum 0
    (True, b"\x20\x05\x00\x00\x02\x24\x02", "invalid value"),  # maximum QoS 2
    (True, b"\x20\x05\x00\x00\x02\x23\x00", "not allowed"),  # topic alias in CONNACK
    (True, b"\x20\x08\x00\x00\x05\x27\x00\x00\x00\x00", "invalid value"),
    (True, b"\x20\x04\x00\x00\x00\x00", "trailing bytes"),
    (True, b"\x20\x03\x00\x05\x00", "reason 0x05"),
    (True, b"\x90\x03\x00\x01\x00", "without reason codes"),
    (True, b"\x90\x04\x00\x01\x00\x03", "invalid reason codes"),
    (False, b"\x90\x03\x00\x01\x03", "invalid reason codes"),
    (False, b"\xb0\x03\x00\x01\x00", "wrong size"),
    (True, b"\xd0\x01\x00", "PINGRESP with a body"),
    (True, b"\xe0\x01\x05", "invalid in packet type 14"),
    (True, b"\xe0\x07\x00\x05\x11\x00\x00\x00\x01", "not allowed"),  # session expiry
    (True, b"\x30\xff\xff\xff\xff\x01", "longer than 4 bytes"),
    (True, b"\x30\x80\x00", "shortest form"),
    (True, b"\x30\x09\x00\x01a\x05\x0b\x80\x80\x80\x00", "shortest form"),
]


@pytest.mark.parametrize(("v5", "data", "message"), _MALFORMED)
def test_protocol_violations_raise_malformed_packet(v5: bool, data: bytes, message: str) -> None:
    with pytest.raises(MalformedPacket, match=re.escape(message)):
        Decoder(v5).feed(data)
    decoder = Decoder(v5)  # the same, byte by byte
    with pytest.raises(MalformedPacket, match=re.escape(message)):
        for i in range(len(data)):
            decoder.feed(data[i:i + 1])


def test_duplicated_single_valued_property() -> None:
    props = b"\x08\x00\x01r\x08\x00\x01s"
    data = b"\x30" + bytes((3 + 1 + len(props),)) + b"\x00\x01a" + bytes((len(props),)) + props
    with pytest.raises(MalformedPacket, match="twice"):
        Decoder(True).feed(data)


def test_packet_over_max_size_is_refused_from_its_header() -> None:
    decoder = Decoder(True, max_packet_size=1000)
    with pytest.raises(MalformedPacket, match="over the maximum"):
        decoder.feed(b"\x30\xe9\x07")  # 1001 bytes announced, none of its body sent yet
    assert Decoder(True, max_packet_size=1003).feed(
        mp.encode_publish("t", bytes(994), v5=True))[0] is not None
    with pytest.raises(MalformedPacket, match="over the maximum"):
        Decoder(True, max_packet_size=10).feed(b"\x30\x09")


# --- golden packets from the specs ------------------------------------------------------------

@pytest.mark.parametrize(("code", "reason"), [(0, 0), (1, 132), (2, 133), (3, 136), (4, 134),
                                             (5, 135)])
def test_connack_v311_return_codes_are_mapped(code: int, reason: int) -> None:
    assert one(bytes((0x20, 2, 0, code)), False) == ConnAck(False, reason)
    assert mp.reason_text(reason, mp.CONNACK) == ReasonCode(
        PacketTypes.CONNACK, identifier=reason).getName()


def test_connack_golden() -> None:
    assert one(b"\x20\x02\x01\x00", False) == ConnAck(True, 0)
    assert one(b"\x20\x03\x01\x00\x00", True) == ConnAck(True, 0)
    assert one(b"\x20\x02\x00\x01", True) == ConnAck(False, 132)  # a 3.1.1-only broker
    props = (b"\x21\x00\x14" b"\x24\x01" b"\x25\x00" b"\x27\x00\x01\x00\x00"
             b"\x12\x00\x03abc" b"\x13\x00\x1e" b"\x1f\x00\x02ok" b"\x22\x00\x0a"
             b"\x26\x00\x01k\x00\x01v" b"\x2a\x01")
    data = b"\x20" + bytes((3 + len(props),)) + b"\x00\x00" + bytes((len(props),)) + props
    assert one(data, True) == ConnAck(False, 0, receive_maximum=20, maximum_qos=1,
                                      retain_available=False, maximum_packet_size=65536,
                                      assigned_client_id="abc", server_keep_alive=30,
                                      reason_string="ok", topic_alias_maximum=10)
    header, body = split(data)
    theirs = paho_packet.decode_connack(header, body, MQTTProtocolVersion.MQTTv5)
    assert theirs.properties is not None
    assert getattr(theirs.properties, "ReceiveMaximum", None) == 20
    assert one(b"\x20\x03\x00\x87\x00", True) == ConnAck(False, 135)


def test_suback_unsuback_golden() -> None:
    assert one(b"\x90\x05\x00\x0a\x00\x01\x80", False) == SubAck(mp.SUBACK, 10, (0, 1, 0x80))
    assert one(b"\x90\x06\x00\x0a\x00\x02\x87\x91", True) == SubAck(mp.SUBACK, 10,
                                                                    (2, 0x87, 0x91))
    assert one(b"\xb0\x02\x00\x0b", False) == SubAck(mp.UNSUBACK, 11, ())
    assert one(b"\xb0\x05\x00\x0b\x00\x00\x11", True) == SubAck(mp.UNSUBACK, 11, (0, 0x11))


def test_pub_acks_golden() -> None:
    assert one(b"\x40\x02\x00\x07", True) == Ack(mp.PUBACK, 7)  # v5: reason and props omitted
    assert one(b"\x40\x02\x00\x07", False) == Ack(mp.PUBACK, 7)
    assert one(b"\x40\x03\x00\x07\x10", True) == Ack(mp.PUBACK, 7, 0x10)
    assert one(b"\x50\x04\x00\x07\x97\x00", True) == Ack(mp.PUBREC, 7, 0x97)
    assert one(b"\x40\x09\x00\x07\x87\x05\x1f\x00\x02no", True) == Ack(
        mp.PUBACK, 7, 0x87, "no")
    assert one(b"\x62\x03\x00\x07\x92", True) == Ack(mp.PUBREL, 7, 0x92)
    assert one(b"\x70\x02\x00\x07", False) == Ack(mp.PUBCOMP, 7)


def test_pingresp_and_disconnect_golden() -> None:
    assert one(b"\xd0\x00", False) == PingResp()
    assert one(b"\xe0\x00", True) == Disconnect(0)
    assert one(b"\xe0\x01\x8e", True) == Disconnect(0x8E)
    assert one(b"\xe0\x02\x8b\x00", True) == Disconnect(0x8B)
    assert one(b"\xe0\x0a\x9c\x08\x1c\x00\x01h\x1f\x00\x01x", True) == Disconnect(0x9C, "x")


# --- encoders against paho's bytes ------------------------------------------------------------

@FAST
@given(v5=st.booleans(), client_id=strings, keepalive=st.integers(0, 65535),
       clean=st.booleans(), expiry=st.integers(0, 2**32 - 1),
       receive_max=st.none() | st.integers(1, 65535), username=st.none() | strings,
       password=st.none() | st.binary(max_size=30), will=st.none() | topics,
       will_payload=st.binary(max_size=50), will_qos=st.integers(0, 2),
       will_retain=st.booleans())
def test_connect_matches_paho(v5: bool, client_id: str, keepalive: int, clean: bool,
                              expiry: int, receive_max: int | None, username: str | None,
                              password: bytes | None, will: str | None, will_payload: bytes,
                              will_qos: int, will_retain: bool) -> None:
    # paho sends a password only with a user name (MQTT 5 allows one alone: tested below).
    username = "u" if password is not None and username is None else username
    if not v5:
        clean = clean or not client_id
    client = CapturingClient(v5, client_id, None if v5 else clean)
    client._clean_start = clean
    client._username = None if username is None else username.encode()
    client._password = password
    if will is not None:
        client.will_set(will, will_payload, will_qos, will_retain)
    else:
        will_qos, will_retain = 0, False
    if v5:
        props = Properties(PacketTypes.CONNECT)
        if expiry:
            props.SessionExpiryInterval = expiry
        if receive_max is not None:
            props.ReceiveMaximum = receive_max
        client._connect_properties = props
    client._send_connect(keepalive)
    ours = mp.encode_connect(client_id, v5=v5, keepalive=keepalive, clean_start=clean,
                             session_expiry_s=expiry if v5 else 0,
                             receive_maximum=receive_max if v5 else None,
                             username=username, password=password, will_topic=will,
                             will_payload=will_payload, will_qos=will_qos,
                             will_retain=will_retain)
    assert ours == client.sent[0]


def test_connect_v5_password_without_user_name() -> None:
    """MQTT 5 section 3.1.2.9 allows it; the spec's layout, by hand."""
    assert mp.encode_connect("c", v5=True, keepalive=60, clean_start=True,
                             password=b"pw") == (
        b"\x10\x12\x00\x04MQTT\x05\x42\x00\x3c\x00\x00\x01c\x00\x02pw")


_filters = st.lists(st.sampled_from(["a/b", "a/+/c", "#", "+", "s/#", "$share/g/x/#", "é/ü"])
                    | topics, min_size=1, max_size=5)


@FAST
@given(v5=st.booleans(), mid=mids, filters=_filters, qos=st.integers(0, 2))
def test_subscribe_and_unsubscribe_match_paho(v5: bool, mid: int, filters: list[str],
                                              qos: int) -> None:
    client = CapturingClient(v5)
    client._last_mid = mid - 1
    option: Any = SubscribeOptions(qos=qos) if v5 else qos
    client._send_subscribe(False, [(f.encode(), option) for f in filters])
    client._last_mid = mid - 1
    client._send_unsubscribe(False, [f.encode() for f in filters])
    assert mp.encode_subscribe(mid, filters, qos, v5=v5) == client.sent[0]
    assert mp.encode_unsubscribe(mid, filters, v5=v5) == client.sent[1]


@pytest.mark.parametrize(("reason", "expiry"), [(0, None), (4, None), (0x80, None), (0, 0),
                                                (4, 3600), (0x8B, 2**32 - 1)])
def test_disconnect_matches_paho(reason: int, expiry: int | None) -> None:
    client = CapturingClient(True)
    props = None
    if expiry is not None:
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = expiry
    code = ReasonCode(PacketTypes.DISCONNECT, identifier=reason) if reason or props else None
    client._send_disconnect(code, props)
    assert mp.encode_disconnect(v5=True, reason=reason, session_expiry_s=expiry) == client.sent[0]
    v3 = CapturingClient(False)
    v3._send_disconnect()
    assert mp.encode_disconnect(v5=False) == v3.sent[0] == b"\xe0\x00"


@pytest.mark.parametrize("kind", [mp.PUBACK, mp.PUBREC, mp.PUBREL, mp.PUBCOMP])
def test_acks_match_paho_and_carry_reasons(kind: int) -> None:
    client = CapturingClient(True)
    client._send_command_with_mid(kind << 4 | (2 if kind == mp.PUBREL else 0), 513, False)
    for v5 in (True, False):
        assert mp.encode_ack(kind, 513, v5=v5) == client.sent[0]
    reason = 0x92 if kind in (mp.PUBREL, mp.PUBCOMP) else 0x10
    assert one(mp.encode_ack(kind, 513, v5=True, reason=reason), True) == Ack(kind, 513, reason)
    with pytest.raises(ValueError):
        mp.encode_ack(kind, 513, v5=False, reason=reason)


def test_pingreq() -> None:
    client = CapturingClient(False)
    client._send_simple_command(paho.PINGREQ)
    assert client.sent[0] == mp.PINGREQ


@pytest.mark.parametrize(("call", "message"), [
    (lambda: mp.encode_publish("a/+", b"", v5=False), "wildcard"),
    (lambda: mp.encode_publish("a/#", b"", v5=True), "wildcard"),
    (lambda: mp.encode_publish("", b"", v5=False), "empty"),
    (lambda: mp.encode_publish("t", b"", v5=False, qos=1), "packet identifier 0"),
    (lambda: mp.encode_publish("t", b"", v5=False, qos=2, mid=65536), "packet identifier"),
    (lambda: mp.encode_publish("t", b"", v5=False, qos=3, mid=1), "QoS"),
    (lambda: mp.encode_publish("t", b"", v5=False, dup=True), "DUP"),
    (lambda: mp.encode_publish("t" * 65536, b"", v5=False), "65535"),
    (lambda: mp.encode_publish("t", b"", v5=True, response_topic="r/#"), "wildcard"),
    (lambda: mp.encode_publish("t", b"", v5=True, correlation_data=bytes(65536)), "65535"),
    (lambda: mp.encode_publish("t", b"", v5=True, user_properties=[("k\x00", "v")]), "U+0000"),
    (lambda: mp.encode_publish("t", b"", v5=True, expiry_interval_s=-1), "range"),
    (lambda: mp.encode_publish("t", bytes(268_435_456), v5=False), "too large"),
    (lambda: mp.encode_ack(mp.PUBACK, 0, v5=True), "packet identifier"),
    (lambda: mp.encode_ack(mp.SUBACK, 1, v5=True), "not an acknowledgement"),
    (lambda: mp.encode_subscribe(1, [], 0, v5=True), "at least one"),
    (lambda: mp.encode_subscribe(1, ["a/#/b"], 0, v5=True), "invalid topic filter"),
    (lambda: mp.encode_subscribe(1, ["a+"], 0, v5=True), "invalid topic filter"),
    (lambda: mp.encode_subscribe(1, [""], 0, v5=True), "empty topic filter"),
    (lambda: mp.encode_unsubscribe(0, ["a"], v5=True), "packet identifier"),
    (lambda: mp.encode_disconnect(v5=False, reason=4), "3.1.1"),
    (lambda: mp.encode_disconnect(v5=True, reason=0x87 + 100), "cannot be sent"),
    (lambda: mp.encode_connect("", v5=False, keepalive=1, clean_start=False), "empty client"),
    (lambda: mp.encode_connect("c", v5=False, keepalive=1, clean_start=True,
                               password=b"p"), "password"),
    (lambda: mp.encode_connect("c", v5=True, keepalive=70000, clean_start=True), "keepalive"),
    (lambda: mp.encode_connect("c", v5=True, keepalive=1, clean_start=True,
                               receive_maximum=0), "receive maximum"),
    (lambda: mp.encode_connect("c", v5=True, keepalive=1, clean_start=True,
                               will_topic="w/+"), "wildcard"),
])
def test_encoders_refuse_what_the_spec_forbids(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


# --- reason codes -----------------------------------------------------------------------------

def test_reason_text_uses_pahos_names_and_is_failure() -> None:
    checked = 0
    for code, names in ReasonCode.names.items():
        for name, kinds in names.items():
            for kind in kinds:
                assert mp.reason_text(code, int(kind)) == name
                checked += 1
        assert mp.is_failure(code) == (code >= 0x80)
    assert checked > 80
    assert mp.reason_text(135, mp.CONNACK) == "Not authorized"
    assert mp.reason_text(134, mp.CONNACK) == "Bad user name or password"
    assert mp.reason_text(0x92, mp.PUBREL) == "Packet identifier not found"
    assert mp.reason_text(0xFE, mp.PUBACK) == "Unknown reason code 0xfe"
