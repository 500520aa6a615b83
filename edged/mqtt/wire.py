"""Translation between paho and edged: inbound messages, socket options, refusals in words.

Part of the MQTT adapter: paho's types stop in this package.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time

import paho.mqtt.client as paho

from edged.types import Inbound

REFUSAL_HINTS = {
    "Not authorized": "the broker's ACL or authentication refuses this client",
    "Bad user name or password": "check mqtt.username and the password",
}


def no_delay(client: paho.Client) -> None:
    """Turn off Nagle's algorithm: answers are small and must not wait for the next ACK."""
    sock = client.socket()
    if sock is not None and hasattr(sock, "setsockopt"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def describe_connect_error(exc: BaseException) -> str:
    """A connect failure in words an operator can act on."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS: the broker's certificate is not trusted ({exc.verify_message}); "
                "check mqtt.tls.ca_file and the broker's name")
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running on that port?)"
    return f"{type(exc).__name__}: {exc}"



def inbound(msg: paho.MQTTMessage, topic: str, now: float) -> Inbound:
    props = getattr(msg, "properties", None)
    response_topic = correlation = expiry = None
    user: tuple[tuple[str, str], ...] = ()
    if props is not None:
        response_topic = getattr(props, "ResponseTopic", None) or None
        correlation = getattr(props, "CorrelationData", None)
        expiry = getattr(props, "MessageExpiryInterval", None)
        user = tuple((str(k), str(v)) for k, v in getattr(props, "UserProperty", ()))
    return Inbound(topic=topic, payload=bytes(msg.payload), qos=msg.qos,
                   received_wall=time.time(), received_mono=now,
                   response_topic=response_topic, correlation_data=correlation,
                   user_properties=user, expiry_interval_s=expiry)
