"""MQTT 5 reason codes: their names and the packets that may carry them (pure)."""

from __future__ import annotations

from edged.mqtt.packets.values import (
    AUTH,
    CONNACK,
    DISCONNECT,
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
    SUBACK,
    UNSUBACK,
)

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
RETAIN_NOT_SUPPORTED = 0x9A  # CONNACK: a retained will from a broker without retain
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
