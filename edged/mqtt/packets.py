"""A sans-I/O MQTT 3.1.1 and 5 packet codec for the client side: bytes in, frozen values out.

Pure: no sockets, no threads, no paho. The socket loop feeds whatever ``recv`` returned to a
``Decoder`` and writes what the ``encode_*`` functions return. Anything a server must not
send raises ``MalformedPacket``; the caller then closes the connection (MQTT 5 section 4.13).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

__all__ = [
    "AUTH", "CONNACK", "DISCONNECT", "PINGREQ", "PINGRESP", "PUBACK", "PUBCOMP", "PUBLISH",
    "PUBREC", "PUBREL", "SUBACK", "UNSUBACK", "Ack", "ConnAck", "Decoder", "Disconnect",
    "MalformedPacket", "Packet", "PingResp", "Publish", "SubAck", "encode_ack",
    "encode_connect", "encode_disconnect", "encode_publish", "encode_subscribe",
    "encode_unsubscribe", "is_failure", "reason_text",
]


class MalformedPacket(ValueError):
    """The peer broke the protocol: the connection must be closed."""


CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ_TYPE, PINGRESP, DISCONNECT, AUTH = (
    8, 9, 10, 11, 12, 13, 14, 15)
MAX_REMAINING = 268_435_455
PINGREQ: bytes = b"\xc0\x00"


@dataclass(frozen=True, slots=True)
class Publish:
    """An application message from the server."""

    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    dup: bool = False
    mid: int = 0
    response_topic: str | None = None
    correlation_data: bytes | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    expiry_interval_s: int | None = None
    topic_alias: int | None = None
    """Range-checked (1..65535) only: the topic is "" when an alias stands in for it."""


@dataclass(frozen=True, slots=True)
class ConnAck:
    """The server's answer to CONNECT; 3.1.1 return codes are mapped to MQTT 5 reasons."""

    session_present: bool
    reason: int
    receive_maximum: int = 65535
    maximum_qos: int = 2
    retain_available: bool = True
    maximum_packet_size: int | None = None
    assigned_client_id: str | None = None
    server_keep_alive: int | None = None
    reason_string: str | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    """PUBACK, PUBREC, PUBREL or PUBCOMP (``kind``)."""

    kind: int
    mid: int
    reason: int = 0
    reason_string: str | None = None


@dataclass(frozen=True, slots=True)
class SubAck:
    """SUBACK or UNSUBACK (``kind``); a 3.1.1 UNSUBACK has no reasons."""

    kind: int
    mid: int
    reasons: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PingResp:
    """PINGRESP."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """A DISCONNECT from the server (MQTT 5 only)."""

    reason: int = 0
    reason_string: str | None = None


Packet = Union[Publish, ConnAck, Ack, SubAck, PingResp, Disconnect]

# Reason codes, their names (paho's wording, which is the spec's) and the packets that may carry
# them (MQTT 5 section 2.4). The decoder refuses a code its packet may not carry.
_REASONS: dict[int, tuple[tuple[str, tuple[int, ...]], ...]] = {
    0x00: (("Success", (CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, AUTH)),
           ("Normal disconnection", (DISCONNECT,)), ("Granted QoS 0", (SUBACK,))),
    0x01: (("Granted QoS 1", (SUBACK,)),),
    0x02: (("Granted QoS 2", (SUBACK,)),),
    0x04: (("Disconnect with will message", (DISCONNECT,)),),
    0x10: (("No matching subscribers", (PUBACK, PUBREC)),),
    0x11: (("No subscription found", (UNSUBACK,)),),
    0x18: (("Continue authentication", (AUTH,)),),
    0x19: (("Re-authenticate", (AUTH,)),),
    0x80: (("Unspecified error", (CONNACK, PUBACK, PUBREC, SUBACK, UNSUBACK, DISCONNECT)),),
    0x81: (("Malformed packet", (CONNACK, DISCONNECT)),),
    0x82: (("Protocol error", (CONNACK, DISCONNECT)),),
    0x83: (("Implementation specific error",
            (CONNACK, PUBACK, PUBREC, SUBACK, UNSUBACK, DISCONNECT)),),
    0x84: (("Unsupported protocol version", (CONNACK,)),),
    0x85: (("Client identifier not valid", (CONNACK,)),),
    0x86: (("Bad user name or password", (CONNACK,)),),
    0x87: (("Not authorized", (CONNACK, PUBACK, PUBREC, SUBACK, UNSUBACK, DISCONNECT)),),
    0x88: (("Server unavailable", (CONNACK,)),),
    0x89: (("Server busy", (CONNACK, DISCONNECT)),),
    0x8A: (("Banned", (CONNACK,)),),
    0x8B: (("Server shutting down", (DISCONNECT,)),),
    0x8C: (("Bad authentication method", (CONNACK, DISCONNECT)),),
    0x8D: (("Keep alive timeout", (DISCONNECT,)),),
    0x8E: (("Session taken over", (DISCONNECT,)),),
    0x8F: (("Topic filter invalid", (SUBACK, UNSUBACK, DISCONNECT)),),
    0x90: (("Topic name invalid", (CONNACK, PUBACK, PUBREC, DISCONNECT)),),
    0x91: (("Packet identifier in use", (PUBACK, PUBREC, SUBACK, UNSUBACK)),),
    0x92: (("Packet identifier not found", (PUBREL, PUBCOMP)),),
    0x93: (("Receive maximum exceeded", (DISCONNECT,)),),
    0x94: (("Topic alias invalid", (DISCONNECT,)),),
    0x95: (("Packet too large", (CONNACK, DISCONNECT)),),
    0x96: (("Message rate too high", (DISCONNECT,)),),
    0x97: (("Quota exceeded", (CONNACK, PUBACK, PUBREC, SUBACK, DISCONNECT)),),
    0x98: (("Administrative action", (DISCONNECT,)),),
    0x99: (("Payload format invalid", (CONNACK, PUBACK, PUBREC, DISCONNECT)),),
    0x9A: (("Retain not supported", (CONNACK, DISCONNECT)),),
    0x9B: (("QoS not supported", (CONNACK, DISCONNECT)),),
    0x9C: (("Use another server", (CONNACK, DISCONNECT)),),
    0x9D: (("Server moved", (CONNACK, DISCONNECT)),),
    0x9E: (("Shared subscription not supported", (SUBACK, DISCONNECT)),),
    0x9F: (("Connection rate exceeded", (CONNACK, DISCONNECT)),),
    0xA0: (("Maximum connect time", (DISCONNECT,)),),
    0xA1: (("Subscription identifiers not supported", (SUBACK, DISCONNECT)),),
    0xA2: (("Wildcard subscription not supported", (SUBACK, DISCONNECT)),),
}
_VALID = {kind: frozenset(code for code, names in _REASONS.items()
                          for _, kinds in names if kind in kinds) for kind in range(16)}
_V3_CONNACK = (0, 0x84, 0x85, 0x88, 0x86, 0x87)
_V3_SUBACK = frozenset((0, 1, 2, 0x80))


def reason_text(reason: int, packet: int) -> str:
    """The name of a reason code as carried by ``packet`` (e.g. 135 -> "Not authorized")."""
    names = _REASONS.get(reason, ())
    for name, kinds in names:
        if packet in kinds:
            return name
    return names[0][0] if names else f"Unknown reason code 0x{reason:02x}"


def is_failure(reason: int) -> bool:
    """Reason codes from 0x80 up report a failure."""
    return reason >= 0x80


# Property identifiers and their wire types (MQTT 5 section 2.2.2.2).
_BYTE, _U16, _U32, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROP_KIND = {0x01: _BYTE, 0x02: _U32, 0x03: _UTF8, 0x08: _UTF8, 0x09: _BINARY, 0x0B: _VARINT,
              0x11: _U32, 0x12: _UTF8, 0x13: _U16, 0x15: _UTF8, 0x16: _BINARY, 0x17: _BYTE,
              0x18: _U32, 0x19: _BYTE, 0x1A: _UTF8, 0x1C: _UTF8, 0x1F: _UTF8, 0x21: _U16,
              0x22: _U16, 0x23: _U16, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _U32,
              0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE}
_MULTI = frozenset((0x0B, 0x26))  # subscription identifier (PUBLISH), user property
# Properties with a value of 0 that is a protocol error, and the ones that are booleans.
_NONZERO = frozenset((0x0B, 0x21, 0x23, 0x27))
_FLAG = frozenset((0x01, 0x24, 0x25, 0x28, 0x29, 0x2A))
_ALLOWED = {
    PUBLISH: frozenset((0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26)),
    CONNACK: frozenset((0x11, 0x12, 0x13, 0x15, 0x16, 0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x24,
                        0x25, 0x26, 0x27, 0x28, 0x29, 0x2A)),
    DISCONNECT: frozenset((0x1C, 0x1F, 0x26)),  # a server must not send Session Expiry
    **{kind: frozenset((0x1F, 0x26)) for kind in (PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK,
                                                    UNSUBACK)},
}
_NEVER_SENT_TO_CLIENT = {CONNECT: "CONNECT", SUBSCRIBE: "SUBSCRIBE",
                         UNSUBSCRIBE: "UNSUBSCRIBE", PINGREQ_TYPE: "PINGREQ",
                         AUTH: "AUTH (enhanced authentication is not used)", 0: "reserved type 0"}


def _utf8(buf: memoryview, start: int, end: int) -> str:
    try:
        text = str(buf[start:end], "utf-8")
    except UnicodeDecodeError as exc:  # also refuses UTF-16 surrogates, as MQTT requires
        raise MalformedPacket(f"invalid UTF-8 in a string: {exc.reason}") from None
    if "\x00" in text:
        raise MalformedPacket("U+0000 in a string")
    return text


def _field(buf: memoryview, pos: int, end: int) -> int:
    """The end of the two-byte-length-prefixed field at ``pos``."""
    if pos + 2 > end:
        raise MalformedPacket("truncated length field")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise MalformedPacket("field runs past the end of its packet")
    return stop


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    """A Variable Byte Integer at ``pos`` -> (value, next position)."""
    value = shift = 0
    for i in range(pos, min(pos + 4, end)):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and i > pos:
                raise MalformedPacket("variable byte integer not in its shortest form")
            return value, i + 1
        shift += 7
    raise MalformedPacket("truncated or over-long variable byte integer")


def _properties(buf: memoryview, pos: int, end: int, kind: int) -> tuple[dict[int, Any], int]:
    """The property block at ``pos`` -> ({identifier: value}, position after it)."""
    length, pos = _varint(buf, pos, end)
    stop = pos + length
    if stop > end:
        raise MalformedPacket("properties run past the end of the packet")
    allowed = _ALLOWED[kind]
    props: dict[int, Any] = {}
    while pos < stop:
        ident = buf[pos]
        pos += 1
        if ident not in allowed:
            raise MalformedPacket(f"property 0x{ident:02x} is not allowed in packet type {kind}")
        wire = _PROP_KIND[ident]
        value: Any
        if wire in (_BYTE, _U16, _U32):
            width = 1 if wire == _BYTE else 2 if wire == _U16 else 4
            if pos + width > stop:
                raise MalformedPacket("truncated property")
            value = int.from_bytes(buf[pos:pos + width], "big")
            pos += width
        elif wire == _VARINT:
            value, pos = _varint(buf, pos, stop)
        elif wire == _BINARY:
            field_end = _field(buf, pos, stop)
            value, pos = bytes(buf[pos + 2:field_end]), field_end
        else:
            field_end = _field(buf, pos, stop)
            value, pos = _utf8(buf, pos + 2, field_end), field_end
            if wire == _PAIR:
                field_end = _field(buf, pos, stop)
                value, pos = (value, _utf8(buf, pos + 2, field_end)), field_end
        if (ident in _NONZERO and not value) or (ident in _FLAG and value > 1):
            raise MalformedPacket(f"property 0x{ident:02x} has the invalid value {value}")
        if ident in _MULTI:
            props.setdefault(ident, []).append(value)
        elif ident in props:
            raise MalformedPacket(f"property 0x{ident:02x} appears twice")
        else:
            props[ident] = value
    return props, stop


_PublishProperties = tuple[int, "str | None", "bytes | None", "int | None", "int | None",
                           tuple[tuple[str, str], ...]]


def _publish_properties(buf: memoryview, pos: int, end: int) -> _PublishProperties:
    """A PUBLISH's properties -> (position after them, response topic, correlation data,
    expiry, topic alias, user properties). A request's usual few are read inline; anything
    else (or anything wrong) goes through ``_properties`` for the full checks."""
    start, length = pos, buf[pos]
    if length < 0x80:
        pos += 1
    else:
        length, pos = _varint(buf, pos, end)
    stop = pos + length
    response_topic = correlation = expiry = None
    user: list[tuple[str, str]] = []
    while pos < stop <= end:
        ident = buf[pos]
        if ident == 0x09 and correlation is None:
            field_end = _field(buf, pos + 1, stop)
            correlation, pos = bytes(buf[pos + 3:field_end]), field_end
        elif ident == 0x08 and response_topic is None:
            field_end = _field(buf, pos + 1, stop)
            response_topic, pos = _utf8(buf, pos + 3, field_end), field_end
        elif ident == 0x26:
            key_end = _field(buf, pos + 1, stop)
            field_end = _field(buf, key_end, stop)
            user.append((_utf8(buf, pos + 3, key_end), _utf8(buf, key_end + 2, field_end)))
            pos = field_end
        elif ident == 0x02 and expiry is None and pos + 5 <= stop:
            expiry, pos = int.from_bytes(buf[pos + 1:pos + 5], "big"), pos + 5
        else:
            break
    else:
        if pos == stop:
            return stop, response_topic, correlation, expiry, None, tuple(user)
    props, pos = _properties(buf, start, end, PUBLISH)
    return (pos, props.get(0x08), props.get(0x09), props.get(0x02), props.get(0x23),
            tuple(props.get(0x26, ())))


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
            if pos + 1 < n and buf[pos + 1] < 0x80:  # a one-byte remaining length, inline
                fixed, size = 2, buf[pos + 1] + 2
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
        topic_end = _field(buf, pos, end)
        topic = _utf8(buf, pos + 2, topic_end)
        if "+" in topic or "#" in topic:
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
                pos, response_topic, correlation, expiry, alias, user = _publish_properties(
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
        props, pos = _properties(pkt, pos + 1, end, kind)
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
        props, pos = _properties(pkt, pos + 2, end, CONNACK)
        if pos != end:
            raise MalformedPacket("trailing bytes in CONNACK")
        return ConnAck(bool(flags), code, props.get(0x21, 65535), props.get(0x24, 2),
                       bool(props.get(0x25, 1)), props.get(0x27), props.get(0x12),
                       props.get(0x13), props.get(0x1F))

    def _suback(self, kind: int, mid: int, pkt: memoryview, pos: int, end: int) -> SubAck:
        if self._v5:
            _, pos = _properties(pkt, pos, end, kind)
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


# --- encoders -------------------------------------------------------------------------------

_ONE = tuple(bytes((i,)) for i in range(256))  # one-byte values, built once
_NO_PROPERTIES = b"\x00"


def _length(n: int) -> bytes:
    """A Variable Byte Integer."""
    if n < 128:
        return _ONE[n]
    if n > MAX_REMAINING:
        raise ValueError(f"packet too large: remaining length {n}")
    out = bytearray()
    while n:
        n, digit = divmod(n, 128)
        out.append(digit | 0x80 if n else digit)
    return bytes(out)


def _str16(text: str | bytes, what: str) -> bytes:
    raw = text.encode() if isinstance(text, str) else bytes(text)
    if len(raw) > 65535:
        raise ValueError(f"{what} is over 65535 bytes")
    if isinstance(text, str) and "\x00" in text:
        raise ValueError(f"{what} contains U+0000")
    return len(raw).to_bytes(2, "big") + raw


def _topic_name(topic: str) -> bytes:
    if not topic or "+" in topic or "#" in topic:
        raise ValueError(f"invalid topic name {topic!r}: empty or with a wildcard")
    return _str16(topic, "topic")


def _mid(mid: int) -> bytes:
    if not 0 < mid <= 65535:
        raise ValueError(f"packet identifier {mid} not in 1..65535")
    return mid.to_bytes(2, "big")


def _packet(first: int, *body: bytes | bytearray | memoryview) -> bytes:
    size = sum(len(b) for b in body)
    return b"".join((_ONE[first], _length(size), *body))


def _props_block(body: bytes) -> bytes:
    return _length(len(body)) + body if body else _NO_PROPERTIES


def encode_publish(topic: str, payload: bytes | bytearray | memoryview, *, v5: bool, qos: int = 0,
                   mid: int = 0, retain: bool = False, dup: bool = False,
                   correlation_data: bytes | None = None,
                   user_properties: Sequence[tuple[str, str]] = (),
                   response_topic: str | None = None,
                   expiry_interval_s: int | None = None) -> bytes:
    """A PUBLISH packet. ``mid`` is required (1..65535) for QoS 1 and 2, ignored at QoS 0."""
    if qos not in (0, 1, 2):
        raise ValueError(f"invalid QoS {qos}")
    if dup and not qos:
        raise ValueError("DUP must not be set at QoS 0")
    parts: list[bytes | bytearray | memoryview] = [_topic_name(topic)]
    if qos:
        parts.append(_mid(mid))
    if v5:
        props: list[bytes] = []  # in identifier order, as paho and mosquitto write them
        if expiry_interval_s is not None:
            if not 0 <= expiry_interval_s <= 0xFFFFFFFF:
                raise ValueError(f"expiry interval {expiry_interval_s} out of range")
            props += (b"\x02", expiry_interval_s.to_bytes(4, "big"))
        if response_topic is not None:
            props += (b"\x08", _topic_name(response_topic))
        if correlation_data is not None:
            props += (b"\x09", _str16(correlation_data, "correlation data"))
        for key, value in user_properties:
            props += (b"\x26", _str16(key, "user property"), _str16(value, "user property"))
        parts.append(_props_block(b"".join(props)))
    parts.append(payload)
    return _packet(0x30 | dup << 3 | qos << 1 | retain, *parts)


def encode_ack(kind: int, mid: int, *, v5: bool, reason: int = 0) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP; MQTT 5 omits a reason of 0."""
    if kind not in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        raise ValueError(f"packet type {kind} is not an acknowledgement")
    first = _ONE[kind << 4 | (2 if kind == PUBREL else 0)]
    if not reason:
        return first + b"\x02" + _mid(mid)
    if not v5 or reason not in _VALID[kind]:
        raise ValueError(f"reason code {reason} cannot be sent in packet type {kind}")
    return first + b"\x03" + _mid(mid) + _ONE[reason]


def _filter(text: str) -> bytes:
    levels = text.split("/")
    for i, level in enumerate(levels):
        if ("#" in level and (level != "#" or i != len(levels) - 1)) or (
                "+" in level and level != "+"):
            raise ValueError(f"invalid topic filter {text!r}")
    if not text:
        raise ValueError("empty topic filter")
    return _str16(text, "topic filter")


def encode_subscribe(mid: int, filters: Sequence[str], qos: int, *, v5: bool) -> bytes:
    """SUBSCRIBE to each filter at ``qos`` (MQTT 5 options: no local, retain handling 0)."""
    if not filters or qos not in (0, 1, 2):
        raise ValueError("SUBSCRIBE needs at least one filter and a QoS of 0, 1 or 2")
    option = _ONE[qos]
    body = [_mid(mid)] + ([_NO_PROPERTIES] if v5 else [])
    for text in filters:
        body += (_filter(text), option)
    return _packet(0x82, *body)


def encode_unsubscribe(mid: int, filters: Sequence[str], *, v5: bool) -> bytes:
    """UNSUBSCRIBE from each filter."""
    if not filters:
        raise ValueError("UNSUBSCRIBE needs at least one filter")
    body = [_mid(mid)] + ([_NO_PROPERTIES] if v5 else [])
    body += (_filter(text) for text in filters)
    return _packet(0xA2, *body)


def encode_disconnect(*, v5: bool, reason: int = 0, session_expiry_s: int | None = None) -> bytes:
    """DISCONNECT; on MQTT 5 with a reason and the Session Expiry Interval when given."""
    if not v5:
        if reason or session_expiry_s is not None:
            raise ValueError("MQTT 3.1.1 DISCONNECT carries no reason and no properties")
        return b"\xe0\x00"
    if reason not in _VALID[DISCONNECT]:
        raise ValueError(f"reason code {reason} cannot be sent in DISCONNECT")
    if session_expiry_s is None:
        return b"\xe0\x00" if not reason else b"\xe0\x01" + _ONE[reason]
    if not 0 <= session_expiry_s <= 0xFFFFFFFF:
        raise ValueError(f"session expiry {session_expiry_s} out of range")
    expiry = b"\x11" + session_expiry_s.to_bytes(4, "big")
    return _packet(0xE0, _ONE[reason], _props_block(expiry))


def encode_connect(client_id: str, *, v5: bool, keepalive: int, clean_start: bool,
                   session_expiry_s: int = 0, receive_maximum: int | None = None,
                   username: str | None = None, password: bytes | None = None,
                   will_topic: str | None = None, will_payload: bytes = b"",
                   will_qos: int = 0, will_retain: bool = False) -> bytes:
    """CONNECT. On 3.1.1, ``clean_start`` is Clean Session; on MQTT 5 the Session Expiry
    Interval (when not 0) and Receive Maximum (when given) go in its properties."""
    if not 0 <= keepalive <= 65535:
        raise ValueError(f"keepalive {keepalive} not in 0..65535")
    if not v5 and not client_id and not clean_start:
        raise ValueError("MQTT 3.1.1: an empty client id needs a clean session")
    if not v5 and password is not None and username is None:
        raise ValueError("MQTT 3.1.1: a password needs a user name")
    if will_qos not in (0, 1, 2) or (will_topic is None and (will_qos or will_retain)):
        raise ValueError("will QoS/retain without a valid will")
    flags = (0x02 if clean_start else 0) | (0x80 if username is not None else 0) | (
        0x40 if password is not None else 0)
    body = [b"\x00\x04MQTT", b"\x05" if v5 else b"\x04", b"", keepalive.to_bytes(2, "big")]
    if v5:
        props = b""
        if session_expiry_s:
            if not 0 < session_expiry_s <= 0xFFFFFFFF:
                raise ValueError(f"session expiry {session_expiry_s} out of range")
            props += b"\x11" + session_expiry_s.to_bytes(4, "big")
        if receive_maximum is not None:
            if not 0 < receive_maximum <= 65535:
                raise ValueError(f"receive maximum {receive_maximum} not in 1..65535")
            props += b"\x21" + receive_maximum.to_bytes(2, "big")
        body.append(_props_block(props))
    body.append(_str16(client_id, "client id"))
    if will_topic is not None:
        flags |= 0x04 | will_qos << 3 | (0x20 if will_retain else 0)
        body += ([_NO_PROPERTIES] if v5 else []) + [
            _topic_name(will_topic), _str16(will_payload, "will payload")]
    if username is not None:
        body.append(_str16(username, "user name"))
    if password is not None:
        body.append(_str16(password, "password"))
    body[2] = _ONE[flags]
    return _packet(0x10, *body)
