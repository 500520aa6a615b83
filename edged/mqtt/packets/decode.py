"""The incremental decoder: bytes in any chunking -> the packets a server may send (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edged.mqtt.packets.fields import end_of_field, properties, publish_properties, utf8
from edged.mqtt.packets.reasons import _V3_CONNACK, _V3_SUBACK, _VALID
from edged.mqtt.packets.values import (
    AUTH,
    CONNACK,
    CONNECT,
    DISCONNECT,
    MAX_REMAINING,
    PINGREQ_TYPE,
    PINGRESP,
    PUBLISH,
    PUBREL,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    Ack,
    ConnAck,
    Disconnect,
    MalformedPacket,
    Packet,
    PingResp,
    Publish,
    SubAck,
)

_NEVER_SENT_TO_CLIENT = {CONNECT: "CONNECT", SUBSCRIBE: "SUBSCRIBE",
                         UNSUBSCRIBE: "UNSUBSCRIBE", PINGREQ_TYPE: "PINGREQ",
                         AUTH: "AUTH (enhanced authentication is not used)", 0: "reserved type 0"}


class Decoder:
    """Incremental: bytes in any chunking -> complete packets, in order.

    A packet split across reads is held as references to the reads (copies of them when the
    caller's buffer is mutable, so feed ``bytes`` from ``recv`` for the one-copy path); its
    header is parsed once, and its payload is copied once, straight from those pieces, when
    the last piece arrives. After ``MalformedPacket`` the stream is lost: close the
    connection and start a new Decoder with the next one.
    """

    __slots__ = ("_have", "_max", "_need", "_parts", "_v5")

    def __init__(self, v5: bool, max_packet_size: int = MAX_REMAINING) -> None:
        self._v5 = v5
        self._max = max_packet_size
        self._parts: list[bytes | memoryview] = []  # pieces of the pending packet
        self._have = 0    # bytes in _parts
        self._need = 0    # size of the pending packet once its fixed header is known

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete packet."""
        return self._have

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """All packets completed by ``data``, in order; the remainder is kept."""
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        keep = type(data) is bytes  # an immutable read can be held without a copy
        out: list[Packet] = []
        if self._have:
            rest = self._resume(view, keep, out)
            if rest is None:
                return out
            view = rest
        self._scan(view, keep, out)
        return out

    def _header(self, buf: memoryview, pos: int, end: int) -> tuple[int, int]:
        """(packet size, fixed header size) at ``pos``; (0, 0) when the header is incomplete."""
        length = shift = 0
        for i in range(pos + 1, min(pos + 5, end)):
            byte = buf[i]
            length |= (byte & 0x7F) << shift
            if byte < 0x80:
                if byte == 0 and i > pos + 1:
                    raise MalformedPacket("remaining length not in its shortest form")
                fixed = i + 1 - pos
                return self._check(fixed + length), fixed
            shift += 7
        if end - pos >= 5:
            raise MalformedPacket("remaining length longer than 4 bytes")
        return 0, 0

    def _check(self, size: int) -> int:
        if size > self._max:
            raise MalformedPacket(f"packet of {size} bytes is over the maximum of {self._max}")
        return size

    def _scan(self, buf: memoryview, keep: bool, out: list[Packet]) -> None:
        pos, n = 0, len(buf)
        while pos < n:
            # A remaining length of one or two bytes (packets up to 16 KB), read inline.
            if pos + 1 < n and buf[pos + 1] < 0x80:
                fixed, size = 2, buf[pos + 1] + 2
                if size > self._max:
                    self._check(size)
            elif pos + 2 < n and 0 < buf[pos + 2] < 0x80:
                fixed, size = 3, ((buf[pos + 1] & 0x7F) | (buf[pos + 2] << 7)) + 3
                if size > self._max:
                    self._check(size)
            else:
                size, fixed = self._header(buf, pos, n)
            if not size or pos + size > n:
                self._parts.append(buf[pos:] if keep else bytes(buf[pos:]))
                self._have, self._need = n - pos, size
                return
            first = buf[pos]
            if first >> 4 == PUBLISH:
                out.append(self._publish(first, buf, pos + fixed, pos + size))
            else:
                out.append(self._decode(buf[pos:pos + size]))
            pos += size

    def _resume(self, buf: memoryview, keep: bool, out: list[Packet]) -> memoryview | None:
        """Continue the pending packet with ``buf``; what follows it, or None if still short."""
        if not self._need:  # the fixed header itself was split: at most 4 bytes are held
            stash = bytes(self._parts[0])
            head = stash + bytes(buf[:5])
            size, fixed = self._header(memoryview(head), 0, len(head))
            if not size:
                self._parts, self._have = [head], len(head)
                return None
            self._parts, self._have, self._need = [head[:fixed]], fixed, size
            buf = buf[fixed - len(stash):]
        missing = self._need - self._have
        if len(buf) < missing:
            self._parts.append(buf if keep else bytes(buf))
            self._have += len(buf)
            return None
        parts = self._parts
        parts.append(buf[:missing])
        self._parts, self._have, self._need = [], 0, 0
        out.append(self._assemble(parts))
        return buf[missing:]

    def _assemble(self, parts: list[bytes | memoryview]) -> Packet:
        first_part = memoryview(parts[0])
        first = first_part[0]
        if first >> 4 == PUBLISH:
            try:  # the variable header is usually all in the first piece: parse it there
                return self._publish(first, first_part, _fixed_len(first_part),
                                     len(first_part), parts[1:])
            except MalformedPacket:
                pass  # it was not: join the pieces and parse again, for the real verdict
        return self._decode(memoryview(b"".join(parts)))

    def _publish(self, first: int, buf: memoryview, pos: int, end: int,
                 rest: Sequence[bytes | memoryview] = ()) -> Publish:
        qos = (first >> 1) & 3
        if qos == 3:
            raise MalformedPacket("PUBLISH with QoS 3")
        dup = bool(first & 8)
        if dup and not qos:
            raise MalformedPacket("PUBLISH with DUP set at QoS 0")
        topic_end = end_of_field(buf, pos, end)
        try:
            topic = str(buf[pos + 2:topic_end], "utf-8")  # utf8, written out
        except UnicodeDecodeError:
            topic = utf8(buf, pos + 2, topic_end)  # raises, saying why
        if "+" in topic or "#" in topic or "\x00" in topic:
            if "\x00" in topic:
                raise MalformedPacket("U+0000 in a string")
            raise MalformedPacket(f"wildcard in the topic name {topic!r}")
        pos, mid = topic_end, 0
        if qos:
            if pos + 2 > end:
                raise MalformedPacket("PUBLISH truncated in its packet identifier")
            mid = (buf[pos] << 8) | buf[pos + 1]
            if not mid:
                raise MalformedPacket("PUBLISH with packet identifier 0")
            pos += 2
        response_topic = correlation = expiry = alias = None
        user: tuple[tuple[str, str], ...] = ()
        if self._v5:
            if pos >= end:
                raise MalformedPacket("PUBLISH truncated before its properties")
            if buf[pos] == 0:  # the common case: no properties
                pos += 1
            else:
                pos, response_topic, correlation, expiry, alias, user = publish_properties(
                    buf, pos, end)
            if not topic and alias is None:
                raise MalformedPacket("PUBLISH with an empty topic and no topic alias")
        elif not topic:
            raise MalformedPacket("PUBLISH with an empty topic")
        payload = bytes(buf[pos:end]) if not rest else b"".join((buf[pos:end], *rest))
        return Publish(topic, payload, qos, bool(first & 1), dup, mid, response_topic,
                       correlation, user, expiry, alias)

    def _decode(self, pkt: memoryview) -> Packet:
        """Any packet, whole in ``pkt``."""
        first = pkt[0]
        kind, pos, end = first >> 4, _fixed_len(pkt), len(pkt)
        if kind == PUBLISH:
            return self._publish(first, pkt, pos, end)
        if kind in _NEVER_SENT_TO_CLIENT or (kind == DISCONNECT and not self._v5):
            name = _NEVER_SENT_TO_CLIENT.get(kind, "DISCONNECT in MQTT 3.1.1")
            raise MalformedPacket(f"a server must not send {name}")
        if first & 0x0F != (2 if kind == PUBREL else 0):
            raise MalformedPacket(f"bad flags 0x{first & 0x0F:x} for packet type {kind}")
        if kind == CONNACK:
            return self._connack(pkt, pos, end)
        if kind == PINGRESP:
            if end != pos:
                raise MalformedPacket("PINGRESP with a body")
            return PingResp()
        if kind == DISCONNECT:
            reason, props = self._reason(pkt, pos, end, kind)
            return Disconnect(reason, props.get(0x1F))
        if end - pos < 2:
            raise MalformedPacket(f"packet type {kind} truncated in its packet identifier")
        mid = (pkt[pos] << 8) | pkt[pos + 1]
        if not mid:
            raise MalformedPacket(f"packet type {kind} with packet identifier 0")
        if kind in (SUBACK, UNSUBACK):
            return self._suback(kind, mid, pkt, pos + 2, end)
        if not self._v5 and end - pos != 2:
            raise MalformedPacket(f"packet type {kind} of the wrong size")
        reason, props = self._reason(pkt, pos + 2, end, kind)
        return Ack(kind, mid, reason, props.get(0x1F))

    def _reason(self, pkt: memoryview, pos: int, end: int, kind: int) -> tuple[int, dict[int, Any]]:
        """An MQTT 5 reason code and properties, both of which may be omitted."""
        if pos == end:
            return 0, {}
        reason = pkt[pos]
        if reason not in _VALID[kind]:
            raise MalformedPacket(f"reason code 0x{reason:02x} is invalid in packet type {kind}")
        if pos + 1 == end:
            return reason, {}
        props, pos = properties(pkt, pos + 1, end, kind)
        if pos != end:
            raise MalformedPacket(f"trailing bytes in packet type {kind}")
        return reason, props

    def _connack(self, pkt: memoryview, pos: int, end: int) -> ConnAck:
        if end - pos < 2 or (not self._v5 and end - pos != 2):
            raise MalformedPacket("CONNACK of the wrong size")
        flags, code = pkt[pos], pkt[pos + 1]
        if flags > 1:
            raise MalformedPacket("CONNACK with reserved flags set")
        if not self._v5 or (end - pos == 2 and code == 1):  # a 3.1.1 broker refusing MQTT 5
            if code >= len(_V3_CONNACK):
                raise MalformedPacket(f"CONNACK with the unknown return code {code}")
            code = _V3_CONNACK[code]
            if code and flags:
                raise MalformedPacket("refusing CONNACK with session present")
            return ConnAck(bool(flags), code)
        if code not in _VALID[CONNACK] or (code and flags):
            raise MalformedPacket(f"CONNACK with reason 0x{code:02x} and flags {flags}")
        props, pos = properties(pkt, pos + 2, end, CONNACK)
        if pos != end:
            raise MalformedPacket("trailing bytes in CONNACK")
        # MQTT 5 3.2.2.3: an absent property means the default (no limit, or "available").
        return ConnAck(bool(flags), code, props.get(0x21, 65535), props.get(0x24, 2),
                       bool(props.get(0x25, 1)), props.get(0x27), props.get(0x12),
                       props.get(0x13), props.get(0x1F), props.get(0x22, 0),
                       bool(props.get(0x28, 1)), bool(props.get(0x29, 1)),
                       bool(props.get(0x2A, 1)), props.get(0x1C), props.get(0x1A))

    def _suback(self, kind: int, mid: int, pkt: memoryview, pos: int, end: int) -> SubAck:
        if self._v5:
            _, pos = properties(pkt, pos, end, kind)
        elif kind == UNSUBACK:
            if pos != end:
                raise MalformedPacket("UNSUBACK of the wrong size")
            return SubAck(kind, mid, ())
        reasons = tuple(pkt[pos:end])
        if not reasons:
            raise MalformedPacket(f"packet type {kind} without reason codes")
        valid = _VALID[kind] if self._v5 else _V3_SUBACK
        if not valid.issuperset(reasons):
            raise MalformedPacket(f"invalid reason codes {reasons} in packet type {kind}")
        return SubAck(kind, mid, reasons)


def _fixed_len(pkt: memoryview) -> int:
    """Length of the fixed header of a packet whose header is known to be well formed."""
    i = 1
    while pkt[i] & 0x80:
        i += 1
    return i + 1
