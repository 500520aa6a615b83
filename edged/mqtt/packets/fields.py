"""MQTT 5 properties and the length-prefixed fields they are made of (pure): the readers the
decoder uses, and the fast path for the few properties a request usually carries."""

from __future__ import annotations

from typing import Any

from edged.mqtt.packets.values import (
    CONNACK,
    DISCONNECT,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    UNSUBACK,
    MalformedPacket,
)

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


def utf8(buf: memoryview, start: int, end: int) -> str:
    try:
        text = str(buf[start:end], "utf-8")
    except UnicodeDecodeError as exc:  # also refuses UTF-16 surrogates, as MQTT requires
        raise MalformedPacket(f"invalid UTF-8 in a string: {exc.reason}") from None
    if "\x00" in text:
        raise MalformedPacket("U+0000 in a string")
    return text


def end_of_field(buf: memoryview, pos: int, end: int) -> int:
    """The end of the two-byte-length-prefixed field at ``pos``."""
    if pos + 2 > end:
        raise MalformedPacket("truncated length field")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise MalformedPacket("field runs past the end of its packet")
    return stop


def varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
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


def properties(buf: memoryview, pos: int, end: int, kind: int) -> tuple[dict[int, Any], int]:
    """The property block at ``pos`` -> ({identifier: value}, position after it)."""
    length, pos = varint(buf, pos, end)
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
            value, pos = varint(buf, pos, stop)
        elif wire == _BINARY:
            field_end = end_of_field(buf, pos, stop)
            value, pos = bytes(buf[pos + 2:field_end]), field_end
        else:
            field_end = end_of_field(buf, pos, stop)
            value, pos = utf8(buf, pos + 2, field_end), field_end
            if wire == _PAIR:
                field_end = end_of_field(buf, pos, stop)
                value, pos = (value, utf8(buf, pos + 2, field_end)), field_end
        if (ident in _NONZERO and not value) or (ident in _FLAG and value > 1):
            raise MalformedPacket(f"property 0x{ident:02x} has the invalid value {value}")
        if ident in _MULTI:
            props.setdefault(ident, []).append(value)
        elif ident in props:
            raise MalformedPacket(f"property 0x{ident:02x} appears twice")
        else:
            props[ident] = value
    return props, stop


PublishProperties = tuple[int, "str | None", "bytes | None", "int | None", "int | None",
                          tuple[tuple[str, str], ...]]


def publish_properties(buf: memoryview, pos: int, end: int) -> PublishProperties:
    """A PUBLISH's properties -> (position after them, response topic, correlation data,
    expiry, topic alias, user properties). A request's usual few are read inline, with the
    length checks of ``end_of_field`` and ``utf8`` written out (every request passes here);
    anything else, or anything wrong, goes through ``properties``, whose checks give the
    verdict."""
    start, length = pos, buf[pos]
    if length < 0x80:
        pos += 1
    else:
        length, pos = varint(buf, pos, end)
    stop = pos + length
    response_topic = correlation = expiry = None
    user: list[tuple[str, str]] = []
    try:
        while pos < stop <= end and pos + 3 <= stop:
            ident = buf[pos]
            field_end = pos + 3 + ((buf[pos + 1] << 8) | buf[pos + 2])  # a string's or bytes'
            if field_end > stop and ident != 0x02:
                break
            if ident == 0x09 and correlation is None:
                correlation, pos = bytes(buf[pos + 3:field_end]), field_end
            elif ident == 0x08 and response_topic is None:
                response_topic, pos = str(buf[pos + 3:field_end], "utf-8"), field_end
                if "\x00" in response_topic:
                    break
            elif ident == 0x26 and field_end + 2 <= stop:
                value_end = field_end + 2 + ((buf[field_end] << 8) | buf[field_end + 1])
                if value_end > stop:
                    break
                key = str(buf[pos + 3:field_end], "utf-8")
                value = str(buf[field_end + 2:value_end], "utf-8")
                if "\x00" in key or "\x00" in value:
                    break
                user.append((key, value))
                pos = value_end
            elif ident == 0x02 and expiry is None and pos + 5 <= stop:
                expiry, pos = int.from_bytes(buf[pos + 1:pos + 5], "big"), pos + 5
            else:
                break
        else:
            if pos == stop:
                return stop, response_topic, correlation, expiry, None, tuple(user)
    except UnicodeDecodeError:
        pass
    props, pos = properties(buf, start, end, PUBLISH)
    return (pos, props.get(0x08), props.get(0x09), props.get(0x02), props.get(0x23),
            tuple(props.get(0x26, ())))
