"""``edged check``'s look at the broker: connect as edged would, and time a few bursts of the
same probes the daemon sends, so a broker that delays small messages (Nagle's algorithm) is
named before a restart, not found in the latency figures after it."""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from dataclasses import dataclass

from edged.auth import Material
from edged.config import MqttConfig
from edged.mqtt import packets, wire
from edged.mqtt.client import CONNECT_TIMEOUT_S
from edged.mqtt.link import Link, LinkClosed
from edged.mqtt.packets import Packet, Publish, SubAck
from edged.mqtt.wayback import BURST, WayBack


@dataclass(frozen=True)
class BrokerReport:
    reachable: bool
    detail: str
    wayback: WayBack | None = None

    def lines(self) -> list[str]:
        if not self.reachable:
            return [f"warning  broker: {self.detail}; edged would keep retrying"]
        assert self.wayback is not None
        snap = self.wayback.snapshot()
        out = [f"broker   {self.detail}; way back through it p50 {snap['round_trip_ms_p50']} ms, "
               f"slowest {snap['round_trip_ms_max']} ms ({snap['probes_returned']} of "
               f"{snap['probes_sent']} probes)"]
        if self.wayback.nagle_suspected:
            out.append("warning  the broker delays small messages (Nagle's algorithm): answers "
                       "would reach their senders tens of ms late; set `set_tcp_nodelay true` "
                       "in mosquitto.conf")
        return out


def probe_broker(config: MqttConfig, material: Material, client_id: str, topic: str,
                 bursts: int = 8, gap_s: float = 0.05) -> BrokerReport:
    """Connect with a clean session of its own (the running daemon's is left alone), send
    ``bursts`` bursts of probes to ``topic`` and time their return."""
    v5 = config.protocol == "5"
    connect = packets.encode_connect(
        client_id, v5=v5, keepalive=config.keepalive_s, clean_start=True,
        username=config.username,
        password=material.password.encode() if material.password else None)
    timeout = min(CONNECT_TIMEOUT_S, float(config.keepalive_s))
    try:
        link, connack = Link.open(config.host, config.port, connect, v5=v5,
                                  keepalive_s=config.keepalive_s, tls=material.tls,
                                  timeout=timeout)
    except (OSError, ValueError) as exc:
        return BrokerReport(False, wire.describe_connect_error(exc))
    if packets.is_failure(connack.reason):
        text = packets.reason_text(connack.reason, packets.CONNACK)
        link.close()
        return BrokerReport(False, f"refused the connection: {text}")
    wayback = WayBack(interval_s=0.0)
    try:
        link.send(packets.encode_subscribe(1, [topic], 0, v5=v5))
        _wait(link, lambda p: isinstance(p, SubAck), 1, timeout, wayback)
        for _ in range(bursts):
            now = time.monotonic()
            link.send(b"".join(packets.encode_publish(topic, payload, v5=v5)
                               for payload in wayback.burst(now)))
            _wait(link, lambda p: isinstance(p, Publish), BURST, 1.0, wayback)
            time.sleep(gap_s)
        link.send(packets.encode_disconnect(v5=v5))
        link.flush()
    except LinkClosed as exc:
        return BrokerReport(False, f"the connection failed: {exc}")
    finally:
        link.close()
    return BrokerReport(True, f"{config.host}:{config.port} answered", wayback)


def _wait(link: Link, wanted: Callable[[Packet], bool], count: int, timeout: float,
          wayback: WayBack) -> None:
    end = time.monotonic() + timeout
    seen = 0
    while seen < count and time.monotonic() < end:
        link.flush()
        select.select([link.sock], [], [], max(0.0, end - time.monotonic()))
        for packet in link.read():
            if isinstance(packet, Publish):
                wayback.returned_probe(packet.payload, time.monotonic())
            if wanted(packet):
                seen += 1
