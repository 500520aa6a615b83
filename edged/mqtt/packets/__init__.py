"""A sans-I/O MQTT 3.1.1 and 5 packet codec for the client side: bytes in, frozen values out.

Pure: no sockets, no threads, no paho. The socket loop feeds whatever ``recv`` returned to a
``Decoder`` and writes what the ``encode_*`` functions return. Anything a server must not
send raises ``MalformedPacket``; the caller then closes the connection (MQTT 5 section 4.13).
"""

from edged.mqtt.packets.decode import Decoder
from edged.mqtt.packets.encode import (
    encode_ack,
    encode_connect,
    encode_disconnect,
    encode_publish,
    encode_subscribe,
    encode_unsubscribe,
)
from edged.mqtt.packets.reasons import RETAIN_NOT_SUPPORTED, is_failure, reason_text
from edged.mqtt.packets.values import (
    AUTH,
    CONNACK,
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    UNSUBACK,
    Ack,
    ConnAck,
    Disconnect,
    MalformedPacket,
    Packet,
    PingResp,
    Publish,
    SubAck,
)

__all__ = [
    "AUTH", "CONNACK", "DISCONNECT", "PINGREQ", "PINGRESP", "PUBACK", "PUBCOMP", "PUBLISH",
    "PUBREC", "PUBREL", "RETAIN_NOT_SUPPORTED", "SUBACK", "UNSUBACK", "Ack", "ConnAck",
    "Decoder", "Disconnect",
    "MalformedPacket", "Packet", "PingResp", "Publish", "SubAck", "encode_ack",
    "encode_connect", "encode_disconnect", "encode_publish", "encode_subscribe",
    "encode_unsubscribe", "is_failure", "reason_text",
]
