"""Opening a connection: which protocol version to speak, and what went wrong in words that
name the fix. Shared by the daemon's client, ``edged check`` and ``edged status``/``top``.

``mqtt.protocol: auto`` (the default) says MQTT 5 first and MQTT 3.1.1 when the broker
refuses 5, which brokers do in four ways: CONNACK reason 0x84 "Unsupported Protocol
Version" (MQTT 5 3.1.2.2), the 3.1.1 return code 1 "unacceptable protocol level" (NATS; MQTT
3.1.1 3.1.2.2 and 3.2.2.3), closing the connection right after CONNECT (RabbitMQ before
3.13), or no CONNACK at all (amqtt 0.12). The version that worked is kept for the next
connections of the process.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from edged.auth import Material
from edged.config import MqttConfig
from edged.mqtt import packets, wire
from edged.mqtt.link import AfterConnect, Link
from edged.mqtt.packets import ConnAck

log = structlog.get_logger("edged.mqtt")
CONNECT_TIMEOUT_S = 10.0
UNSUPPORTED_VERSION = 0x84


class Unreachable(Exception):
    """TCP or TLS failed: the broker was not reached."""


class Refused(Exception):
    """The broker was reached and did not accept edged."""

    def __init__(self, text: str, reason: int | None = None) -> None:
        super().__init__(text)
        self.reason = reason


@dataclass
class Negotiator:
    """The version to speak, learned across the attempts of one process."""

    protocol: str
    """As configured: "auto", "5" or "3.1.1"."""
    version: str = ""

    def __post_init__(self) -> None:
        self.version = self.version or ("3.1.1" if self.protocol == "3.1.1" else "5")

    @property
    def v5(self) -> bool:
        return self.version == "5"

    def open(self, config: MqttConfig, material: Material,
             make_connect: Callable[[bool], bytes]) -> tuple[Link, ConnAck]:
        """Connect and have the CONNACK accept edged, falling back from MQTT 5 to 3.1.1
        under ``auto``. ``make_connect(v5)`` gives the CONNECT packet. Raises Unreachable,
        Refused or packets.MalformedPacket."""
        while True:
            try:
                return self._attempt(config, material, make_connect)
            except Refused as exc:
                if not (self.protocol == "auto" and self.v5 and _refuses_v5(exc)):
                    raise
                log.warning("the broker does not take MQTT 5: speaking MQTT 3.1.1 (set "
                            "mqtt.protocol: \"3.1.1\" to say so)", detail=str(exc))
                self.version = "3.1.1"

    def _attempt(self, config: MqttConfig, material: Material,
                 make_connect: Callable[[bool], bytes]) -> tuple[Link, ConnAck]:
        timeout = min(CONNECT_TIMEOUT_S, float(config.keepalive_s))
        try:
            link, connack = Link.open(config.host, config.port, make_connect(self.v5),
                                      v5=self.v5, keepalive_s=config.keepalive_s,
                                      tls=material.tls, timeout=timeout)
        except AfterConnect as exc:
            raise Refused(self._explain(str(exc), exc.closed)) from exc
        except (OSError, ssl.SSLError) as exc:
            raise Unreachable(wire.describe_connect_error(exc)) from exc
        if packets.is_failure(connack.reason):
            link.close()
            text = packets.reason_text(connack.reason, packets.CONNACK)
            hint = wire.REFUSAL_HINTS.get(text, "")
            raise Refused(self._explain(f"{text}: {hint}" if hint else text,
                                        connack.reason == UNSUPPORTED_VERSION), connack.reason)
        return link, connack

    def _explain(self, text: str, version_suspect: bool) -> str:
        """The refusal, with the setting to change when the version is the likely cause."""
        if version_suspect and self.v5 and self.protocol == "5":
            return (f"{text}; the broker may not speak MQTT 5: set mqtt.protocol: \"3.1.1\" "
                    "(or \"auto\")")
        return text


def _refuses_v5(exc: Refused) -> bool:
    """A refusal that means "not MQTT 5": reason 0x84 (or 3.1.1's return code 1, which the
    decoder maps to it), the connection closed right after CONNECT, or no CONNACK at all
    (amqtt 0.12 reads a level-5 CONNECT as 3.1.1, waits for a will that never comes, and
    drops the connection after its own 10 s without a word)."""
    if isinstance(exc.__cause__, AfterConnect):
        return True
    return exc.reason == UNSUPPORTED_VERSION
