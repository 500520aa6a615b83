"""Translation between the wire and edged: inbound messages, connect failures and refusals
in words an operator can act on."""

from __future__ import annotations

import ssl

from edged.mqtt.packets import Publish
from edged.types import Inbound

REFUSAL_HINTS = {
    "Not authorized": "the broker's ACL or authentication refuses this client",
    "Bad user name or password": "check mqtt.username and the password",
}


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



def inbound(msg: Publish, now: float, wall: float) -> Inbound:
    return Inbound(topic=msg.topic, payload=msg.payload, qos=msg.qos, received_wall=wall,
                   received_mono=now, response_topic=msg.response_topic or None,
                   correlation_data=msg.correlation_data, user_properties=msg.user_properties,
                   expiry_interval_s=msg.expiry_interval_s)
