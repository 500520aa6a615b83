"""edged's PUBLISH decoder and reply properties against paho's own: same packets, same bytes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.mqtt import fastpath

V5, V311 = MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311
text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\ufeff"),
               max_size=20)


def fields(packet: Any) -> dict[str, Any]:
    out: dict[str, Any] = packet._asdict()
    props = out.pop("properties")
    out["properties"] = None if props is None else props.json()
    out["payload"] = bytes(out["payload"])
    return out


@st.composite
def publish_packets(draw: st.DrawFn) -> tuple[int, bytes]:
    """A well-formed PUBLISH (after the fixed header) with any mix of PUBLISH properties,
    built with paho's own encoder."""
    qos = draw(st.integers(0, 2))
    header = 0x30 | draw(st.integers(0, 1)) << 3 | qos << 1 | draw(st.integers(0, 1))
    topic = draw(text.filter(bool)).encode()
    props = Properties(PacketTypes.PUBLISH)
    if draw(st.booleans()):
        props.ResponseTopic = draw(text)
    if draw(st.booleans()):
        props.CorrelationData = draw(st.binary(max_size=40))
    if draw(st.booleans()):
        props.MessageExpiryInterval = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        props.PayloadFormatIndicator = draw(st.integers(0, 1))
    if draw(st.booleans()):
        props.ContentType = draw(text)
    if draw(st.booleans()):
        props.TopicAlias = draw(st.integers(1, 65535))
    for sub_id in draw(st.lists(st.integers(1, 268_435_455), max_size=2)):
        props.SubscriptionIdentifier = sub_id
    for pair in draw(st.lists(st.tuples(text, text), max_size=3)):
        props.UserProperty = pair
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += draw(st.integers(1, 65535)).to_bytes(2, "big")
    body += props.pack() + draw(st.binary(max_size=300))
    return header, bytes(body)


@given(publish_packets())
@settings(max_examples=300)
def test_decodes_every_well_formed_publish_as_paho_does(packet: tuple[int, bytes]) -> None:
    header, body = packet
    ours = fastpath.decode_publish(header, bytearray(body), V5)
    assert fields(ours) == fields(fastpath.PAHO_DECODE_PUBLISH(header, bytearray(body), V5))


@given(st.integers(0, 15), st.binary(max_size=60), st.sampled_from([V5, V311]))
@settings(max_examples=500)
@example(0, b"\x00\x01a\x05\x01\x02", V5)  # Payload Format Indicator 2: out of range
@example(0, b"\x00\x01a\x03\x02\x00\x00", V5)  # Message Expiry cut short by Property Length
@example(0, b"\x00\x01a\x06\x03\x00\x02\xef\xbb\xbf", V5)  # U+FEFF in Content Type
@example(0, b"\x00\x01a\x04\x01\x00\x01\x00", V5)  # the same property twice
@example(0, b"\x00\x00", V311)  # an empty topic
def test_arbitrary_bytes_decode_as_paho_or_are_malformed(header: int, body: bytes,
                                                         protocol: MQTTProtocolVersion) -> None:
    """Whatever bytes arrive, edged's decoder either gives paho's result or raises paho's
    MalformedPacket; it is only stricter where paho reads a property past the Property
    Length into the payload."""
    header |= 0x30
    try:
        ours = fastpath.decode_publish(header, bytearray(body), protocol)
    except MalformedPacket:
        return
    assert fields(ours) == fields(fastpath.PAHO_DECODE_PUBLISH(header, bytearray(body),
                                                                 protocol))


@pytest.mark.parametrize("body", [
    b"\x00\x01a\x05\x01\x02",  # Payload Format Indicator 2
    b"\x00\x01a\x02\x23\x00",  # Topic Alias cut short
    b"\x00\x01a\x03\x21\x00\x01",  # Receive Maximum: not a PUBLISH property
    b"\x00\x01a\x04\x01\x00\x01\x00",  # Payload Format Indicator twice
    b"\x00\x05ab",  # topic longer than the packet
    b"\x00\x01a\x05\x03\x00\x02\xff\xfe",  # Content Type not UTF-8
    b"\x00\x01a\x08\x03\x00\x05a\x00b\x00\x00",  # a NUL in a string
    b"\x00\x01a\xff\xff\xff\xff\x01",  # a Property Length of five bytes
])
def test_malformed_packets_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedPacket):
        fastpath.decode_publish(0x30, bytearray(body), V5)


def test_the_payload_is_the_rest_of_the_packet_and_copied_once() -> None:
    frame = bytes(range(256)) * 600
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "replies/cam"
    props.CorrelationData = b"42"
    props.UserProperty = ("deadline", "1790000000000")
    body = bytearray(b"\x00\x06cam/in\x12\x34" + props.pack() + frame)
    packet = fastpath.decode_publish(0x32, body, V5)
    assert packet.payload == frame and type(packet.payload) is bytes
    assert packet.mid == 0x1234 and packet.qos == 1 and packet.topic == b"cam/in"
    assert packet.properties is not None
    assert packet.properties.json()["UserProperty"] == [("deadline", "1790000000000")]
    body[-1] ^= 0xFF  # paho reuses its read buffer: the payload must not alias it
    assert packet.payload == frame


@given(st.one_of(st.none(), st.binary(max_size=300)), st.lists(st.tuples(text, text),
                                                               max_size=3))
def test_reply_properties_pack_as_paho_packs_them(correlation: bytes | None,
                                                  user: list[tuple[str, str]]) -> None:
    expected = Properties(PacketTypes.PUBLISH)
    if correlation is not None:
        expected.CorrelationData = correlation
    if user:
        expected.UserProperty = list(user)
    ours = fastpath.reply_properties(correlation, user)
    assert ours.pack() == bytes(expected.pack())
    assert ours.json() == expected.json()


def test_reply_properties_with_more_set_pack_through_paho() -> None:
    ours = fastpath.reply_properties(b"7", [("a", "b")])
    ours.ContentType = "application/json"
    expected = Properties(PacketTypes.PUBLISH)
    expected.CorrelationData = b"7"
    expected.UserProperty = [("a", "b")]
    expected.ContentType = "application/json"
    assert ours.pack() == bytes(expected.pack())


def test_install_puts_the_decoder_where_paho_looks_for_it() -> None:
    import paho.mqtt._packet as paho_packet

    fastpath.install()
    assert paho_packet.decode_publish is fastpath.decode_publish


def test_buffered_socket_serves_small_reads_from_one_recv() -> None:
    import socket
    import threading

    left, right = socket.socketpair()
    try:
        left.sendall(b"\x30\x05hello" + b"\x30\x03abc")
        buffered = fastpath.BufferedSocket(right)
        assert buffered.recv(1) == b"\x30"
        assert buffered.pending() == 11  # the rest of both packets, read at once
        assert buffered.recv(1) == b"\x05"
        assert buffered.recv(5) == b"hello"
        assert buffered.recv(100) == b"\x30\x03abc"  # no more than is buffered
        assert buffered.pending() == 0
        right.setblocking(False)
        with pytest.raises(BlockingIOError):
            buffered.recv(1)
        right.setblocking(True)
        big = bytes(range(256)) * 1024
        sender = threading.Thread(target=left.sendall, args=(big,))
        sender.start()
        got = b""
        while len(got) < len(big):
            got += buffered.recv(len(big) - len(got))
        sender.join()
        assert got == big
        assert buffered.fileno() == right.fileno()  # everything else is the socket's
    finally:
        left.close()
        right.close()
