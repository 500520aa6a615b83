"""Where paho-mqtt's pure-Python code is too slow for a frame stream, edged's own, in paho's
terms: a PUBLISH decoder installed in place of paho's, PUBLISH properties for answers, and a
buffered socket for paho's client.

paho-mqtt 2.x decodes a PUBLISH by slicing ``bytes``: ``struct.unpack`` copies the rest of the
packet twice, and its MQTT 5 property parser strips what it reads with ``buffer =
buffer[n:]``, copying the whole payload again several times per property. A 150 KB camera
frame with a Response Topic, Correlation Data and one user property is copied about fifteen
times; and every ``Properties()`` rebuilds paho's property tables. At 4x overload of
MobileNetV2 frames that was about a third of edged's MQTT thread (py-spy, see
docs/benchmarks.md): 94 us per frame against 13 us here.

The decoder reads the packet through a ``memoryview``, parses the properties itself with
paho's tables read once, and copies the payload once. It returns paho's ``PublishPacket``
with the same fields and raises paho's ``MalformedPacket`` where paho would (stricter only
where paho reads a property past the Property Length); ``tests/test_fastpath.py`` checks it
against paho's own decoder and encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt._packet as paho_packet
import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

PAHO_DECODE_PUBLISH: Callable[..., Any] = paho_packet.decode_publish

# paho's tables, read once: Properties() rebuilds them (and its setattr searches them) for
# every packet.
_TABLES = Properties(PacketTypes.PUBLISH)
_BYTE, _INT2, _INT4, _VBI, _BINARY, _UTF8, _PAIR = range(7)  # the order of Properties.types
_NAME = {ident: name.replace(" ", "") for name, ident in _TABLES.names.items()}
_KIND = {ident: kind for ident, (kind, _packets) in _TABLES.properties.items()}
_IN_PUBLISH = {ident for ident, (_kind, packets) in _TABLES.properties.items()
               if PacketTypes.PUBLISH in packets}
_MULTIPLE = {11, 38}  # Subscription Identifier, User Property
_RANGE = {1: (0, 1), 11: (1, 268_435_455), 35: (1, 65_535)}  # checked as paho checks them


def _blank(cls: type[Properties], packet_type: int) -> Properties:
    """An empty ``cls`` for ``packet_type`` sharing paho's tables (paho never changes them)."""
    props = cls.__new__(cls)
    for attr in ("types", "names", "properties"):
        object.__setattr__(props, attr, getattr(_TABLES, attr))
    object.__setattr__(props, "packetType", packet_type)
    return props


def _vbi(view: memoryview, pos: int) -> tuple[int, int]:
    """A Variable Byte Integer at ``pos``: (value, bytes used)."""
    value, multiplier = 0, 1
    for used in range(1, 5):
        if pos + used > len(view):
            raise MalformedPacket("Not enough data to decode Variable Byte Integer")
        digit = view[pos + used - 1]
        value += (digit & 127) * multiplier
        if not digit & 128:
            return value, used
        multiplier *= 128
    raise MalformedPacket("Variable Byte Integer is more than four bytes long")


def _need(pos: int, size: int, end: int, what: str) -> None:
    if size < 0 or pos + size > end:
        raise MalformedPacket(f"PUBLISH too short for its {what}")


def _length_prefixed(view: memoryview, pos: int, end: int, what: str) -> tuple[bytes, int]:
    _need(pos, 2, end, what + " length")
    size = int.from_bytes(view[pos:pos + 2], "big")
    _need(pos + 2, size, end, what)
    return bytes(view[pos + 2:pos + 2 + size]), pos + 2 + size


def _text(data: bytes) -> str:
    # Strict UTF-8 decoding already refuses encoded surrogates (U+D800-DFFF).
    text = data.decode("utf-8")
    if "\x00" in text:
        raise MalformedPacket("[MQTT-1.5.4-2] Null found in UTF-8 data")
    if "\ufeff" in text:
        raise MalformedPacket("[MQTT-1.5.4-3] U+FEFF in UTF-8 data")
    return text


def _read_properties(view: memoryview, pos: int, end: int) -> Properties:
    """The PUBLISH properties in ``view[pos:end]``, checked as paho checks them."""
    props = _blank(Properties, PacketTypes.PUBLISH)
    values: dict[str, Any] = {}
    while pos < end:
        ident, used = _vbi(view, pos)
        pos += used
        if ident not in _IN_PUBLISH:
            raise MalformedPacket(f"property {ident} does not apply to PUBLISH")
        kind = _KIND[ident]
        value: Any
        if kind in (_BYTE, _INT2, _INT4):
            size = {_BYTE: 1, _INT2: 2, _INT4: 4}[kind]
            _need(pos, size, end, "property")
            value, pos = int.from_bytes(view[pos:pos + size], "big"), pos + size
        elif kind == _VBI:
            value, used = _vbi(view, pos)
            _need(pos, used, end, "property")
            pos += used
        elif kind == _BINARY:
            value, pos = _length_prefixed(view, pos, end, "binary property")
        elif kind == _UTF8:
            data, pos = _length_prefixed(view, pos, end, "string property")
            value = _text(data)
        else:  # a UTF-8 string pair
            key, pos = _length_prefixed(view, pos, end, "string pair")
            data, pos = _length_prefixed(view, pos, end, "string pair")
            value = (_text(key), _text(data))
        name = _NAME[ident]
        if ident in _RANGE and not _RANGE[ident][0] <= value <= _RANGE[ident][1]:
            raise MalformedPacket(f"{name} property value {value} is out of range")
        if ident in _MULTIPLE:
            values.setdefault(name, []).append(value)
        elif name in values:
            raise MalformedPacket(f"Property '{name}' must not exist more than once")
        else:
            values[name] = value
    for name, value in values.items():
        object.__setattr__(props, name, value)
    return props


@paho_packet.convert_exception
def decode_publish(header: int, packet: bytes | bytearray,
                   protocol: MQTTProtocolVersion) -> paho_packet.PublishPacket:
    """Decode a PUBLISH packet (everything after the fixed header), as paho's
    ``decode_publish`` does, copying the payload once."""
    view = memoryview(packet)
    end = len(view)
    qos = (header & 0x06) >> 1
    topic, pos = _length_prefixed(view, 0, end, "topic")
    if protocol != MQTTProtocolVersion.MQTTv5 and not topic:
        raise MalformedPacket("topic can't be empty in MQTTv3")
    mid = 0
    if qos > 0:
        _need(pos, 2, end, "packet identifier")
        mid = int.from_bytes(view[pos:pos + 2], "big")
        pos += 2
    properties = None
    if protocol == MQTTProtocolVersion.MQTTv5:
        props_len, used = _vbi(view, pos)
        _need(pos + used, props_len, end, "properties")
        properties = _read_properties(view, pos + used, pos + used + props_len)
        pos += used + props_len
    return paho_packet.PublishPacket(
        dup=bool(header & 0x08),
        qos=qos,
        retain=bool(header & 0x01),
        topic=topic,
        mid=mid,
        properties=properties,
        payload=bytes(view[pos:]),
    )


_OWN_ATTRS = {"types", "names", "properties", "packetType"}  # paho's, not properties


class _ReplyProperties(Properties):
    """PUBLISH properties that pack Correlation Data and User Properties without paho's
    per-call table searches; anything else set on them is packed by paho."""

    def pack(self) -> bytes:
        extra = {k for k in vars(self) if k not in _OWN_ATTRS}
        if not extra <= {"CorrelationData", "UserProperty"}:
            return bytes(super().pack())
        out = bytearray()
        correlation = vars(self).get("CorrelationData")
        if correlation is not None:
            out += b"\x09" + len(correlation).to_bytes(2, "big") + correlation
        for key, value in vars(self).get("UserProperty", ()):
            k, v = key.encode(), value.encode()
            out += b"\x26" + len(k).to_bytes(2, "big") + k + len(v).to_bytes(2, "big") + v
        return bytes(VariableByteIntegers.encode(len(out))) + bytes(out)



def reply_properties(correlation_data: bytes | None,
                     user_properties: Sequence[tuple[str, str]]) -> Properties:
    """PUBLISH properties for an answer, built and packed without paho's per-call cost;
    the same bytes as ``Properties(PacketTypes.PUBLISH)`` with these set would pack to."""
    props = _blank(_ReplyProperties, PacketTypes.PUBLISH)
    if correlation_data is not None:
        object.__setattr__(props, "CorrelationData", bytes(correlation_data))
    if user_properties:
        object.__setattr__(props, "UserProperty", [(str(k), str(v)) for k, v in user_properties])
    return props


READ_CHUNK = 65536


class BufferedSocket:
    """paho's socket, read in chunks. paho asks for an MQTT packet one byte at a time
    (the packet type, each byte of the remaining length) and then the rest: three or more
    recv() calls per small packet, each one giving up the GIL and waiting to get it back
    from busy workers. This reads up to ``READ_CHUNK`` bytes at once and serves paho's
    small reads from them; ``pending()`` tells paho's loop that buffered bytes are there
    to read (paho asks it of TLS sockets for the same reason). Everything else is the
    socket's own."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        if self._pos < len(self._buf):
            end = min(self._pos + size, len(self._buf))
            out = self._buf[self._pos:end]
            self._pos = end
            return out
        if size >= READ_CHUNK:
            return bytes(self._sock.recv(size))
        data = bytes(self._sock.recv(READ_CHUNK))
        if len(data) <= size:
            return data
        self._buf, self._pos = data, size
        return data[:size]

    def pending(self) -> int:
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._buf) - self._pos + int(inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class Client(paho.Client):
    """paho's client with a buffered socket (see :class:`BufferedSocket`)."""

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())


def install() -> None:
    """Make paho decode PUBLISH packets with :func:`decode_publish` (idempotent). paho's
    client looks the function up in its ``_packet`` module on every packet."""
    paho_packet.decode_publish = decode_publish  # type: ignore[assignment]
