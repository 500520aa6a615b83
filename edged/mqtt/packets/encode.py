"""The encoders of the packets a client sends (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from edged.mqtt.packets.reasons import _VALID
from edged.mqtt.packets.values import (
    DISCONNECT,
    MAX_REMAINING,
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
)

_ONE = tuple(bytes((i,)) for i in range(256))  # one-byte values, built once
_NO_PROPERTIES = b"\x00"


def _length(n: int) -> bytes:
    """A Variable Byte Integer."""
    if n < 128:
        return _ONE[n]
    if n < 16384:  # an answer's size
        return bytes((n & 0x7F | 0x80, n >> 7))
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


_TOPICS: dict[str, bytes] = {}  # encoded topic names: answers go to the same few again
MAX_TOPICS = 4096  # a flood of new reply topics only refills it


def _topic_name(topic: str) -> bytes:
    field = _TOPICS.get(topic)
    if field is None:
        if not topic or "+" in topic or "#" in topic:
            raise ValueError(f"invalid topic name {topic!r}: empty or with a wildcard")
        field = _str16(topic, "topic")
        if len(_TOPICS) >= MAX_TOPICS:
            _TOPICS.clear()
        _TOPICS[topic] = field
    return field


def _mid(mid: int) -> bytes:
    if not 0 < mid <= 65535:
        raise ValueError(f"packet identifier {mid} not in 1..65535")
    return mid.to_bytes(2, "big")


def _packet(first: int, *body: bytes | bytearray | memoryview) -> bytes:
    size = sum(len(b) for b in body)
    return b"".join((_ONE[first], _length(size), *body))


def _props_block(body: bytes) -> bytes:
    return _length(len(body)) + body if body else _NO_PROPERTIES


def _correlation_block(data: bytes) -> bytes:
    """The property block of an answer: its request's correlation data alone."""
    n = len(data)
    if n < 125:  # the block's length fits one byte
        return bytes((n + 3, 0x09, 0, n)) + data
    return _props_block(b"\x09" + _str16(data, "correlation data"))


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
    head = _topic_name(topic) + _mid(mid) if qos else _topic_name(topic)
    if v5:
        if expiry_interval_s is None and response_topic is None and not user_properties:
            # An event, or an answer with its request's correlation data: the common cases.
            head += (_NO_PROPERTIES if correlation_data is None else
                     _correlation_block(correlation_data))
        else:
            head += _props_block(_publish_properties(
                correlation_data, user_properties, response_topic, expiry_interval_s))
    first = _ONE[0x30 | dup << 3 | qos << 1 | retain]
    return b"".join((first, _length(len(head) + len(payload)), head, payload))


def _publish_properties(correlation_data: bytes | None, user_properties: Sequence[tuple[str, str]],
                        response_topic: str | None, expiry_interval_s: int | None) -> bytes:
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
    return b"".join(props)


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
