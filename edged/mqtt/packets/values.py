"""The packets' values and type codes (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


class MalformedPacket(ValueError):
    """The peer broke the protocol: the connection must be closed."""


CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ_TYPE, PINGRESP, DISCONNECT, AUTH = (
    8, 9, 10, 11, 12, 13, 14, 15)
MAX_REMAINING = 268_435_455
PINGREQ: bytes = b"\xc0\x00"


@dataclass(slots=True)
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
    topic_alias_maximum: int = 0
    wildcard_available: bool = True
    subscription_ids_available: bool = True
    shared_available: bool = True
    server_reference: str | None = None
    response_information: str | None = None


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
