"""``edged check``'s look at the broker: connect as edged would, and time a few bursts of the
same probes the daemon sends, so a broker that delays small messages (Nagle's algorithm) is
named before a restart, not found in the latency figures after it."""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from edged.auth import Material
from edged.config import MqttConfig
from edged.mqtt import packets
from edged.mqtt.announced import Announced, Finding, findings
from edged.mqtt.link import Link, LinkClosed
from edged.mqtt.negotiate import Negotiator, Refused, Unreachable
from edged.mqtt.packets import Packet, Publish, SubAck
from edged.mqtt.wayback import BURST, WayBack


@dataclass(frozen=True)
class BrokerReport:
    reachable: bool
    detail: str
    wayback: WayBack | None = None
    announced: Announced | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def fatal(self) -> bool:
        """A route cannot work on this broker."""
        return any(f.fatal for f in self.findings)

    def lines(self) -> list[str]:
        if not self.reachable:
            return [f"warning  broker: {self.detail}; edged would keep retrying"]
        assert self.wayback is not None
        snap = self.wayback.snapshot()
        out = [f"broker   {self.detail}; way back through it p50 {snap['round_trip_ms_p50']} ms, "
               f"slowest {snap['round_trip_ms_max']} ms ({snap['probes_returned']} of "
               f"{snap['probes_sent']} probes)"]
        out += [f.line() for f in self.findings]
        out.append(f"{'warning' if self.wayback.nagle_suspected else 'broker '}  Nagle "
                   f"suspected: {'yes' if self.wayback.nagle_suspected else 'no'}; " + (
                       "answers would reach their senders tens of ms late; set "
                       "`set_tcp_nodelay true` in mosquitto.conf"
                       if self.wayback.nagle_suspected else "small answers are not delayed"))
        return out


def probe_broker(config: MqttConfig, material: Material, client_id: str, topic: str,
                 bursts: int = 8, gap_s: float = 0.05,
                 publish_qos: Mapping[str, int] | None = None,
                 filters: Sequence[str] = ()) -> BrokerReport:
    """Connect with a clean session of its own (the running daemon's is left alone), report
    what the broker announced and what edged does about it, subscribe to the routes'
    ``filters`` (and unsubscribe) to see the broker take them, send ``bursts`` bursts of
    probes to ``topic`` and time their return."""
    negotiator = Negotiator(config.protocol)

    def connect(v5: bool) -> bytes:
        return packets.encode_connect(
            client_id, v5=v5, keepalive=config.keepalive_s, clean_start=True,
            username=config.username,
            password=material.password.encode() if material.password else None)

    try:
        link, connack = negotiator.open(config, material, connect)
    except Unreachable as exc:
        return BrokerReport(False, str(exc))
    except Refused as exc:
        return BrokerReport(False, f"refused the connection: {exc}")
    except ValueError as exc:
        return BrokerReport(False, f"a malformed CONNACK: {exc}")
    v5 = negotiator.v5
    announced = Announced.of(connack, negotiator.version)
    found = findings(announced, keepalive_s=config.keepalive_s,
                     publish_qos=publish_qos or {}, filters=filters)
    timeout = min(10.0, float(config.keepalive_s))
    wayback = WayBack(interval_s=0.0)
    try:
        link.send(packets.encode_subscribe(1, [topic], 0, v5=v5))
        _wait(link, lambda p: isinstance(p, SubAck), 1, timeout, wayback, topic)
        for _ in range(bursts):
            now = time.monotonic()
            link.send(b"".join(packets.encode_publish(topic, payload, v5=v5)
                               for payload in wayback.burst(now)))
            _wait(link, lambda p: isinstance(p, Publish) and p.topic == topic, BURST, 1.0,
                  wayback, topic)
            time.sleep(gap_s)
        # After the probes: the broker's answers to these would hold back the probes' own
        # (Nagle) and hide the delay the probes are there to see.
        found += _try_filters(link, list(dict.fromkeys(filters)), v5, timeout, wayback, topic)
        link.send(packets.encode_disconnect(v5=v5))
        link.flush()
    except LinkClosed as exc:
        return BrokerReport(False, f"the connection failed: {exc}", announced=announced,
                            findings=found)
    finally:
        link.close()
    return BrokerReport(True, f"{config.host}:{config.port} answered (MQTT "
                        f"{negotiator.version})", wayback, announced, found)


def _try_filters(link: Link, filters: list[str], v5: bool, timeout: float, wayback: WayBack,
                 topic: str) -> list[Finding]:
    """Subscribe to each route's filter and unsubscribe again: a filter the broker refuses
    (an ACL, or what it does not support) means that route cannot work."""
    if not filters:
        return []
    link.send(packets.encode_subscribe(2, filters, 0, v5=v5))
    acks = _wait(link, lambda p: isinstance(p, SubAck) and p.mid == 2, 1, timeout, wayback,
                 topic)
    link.send(packets.encode_unsubscribe(3, filters, v5=v5))
    if not acks:
        return [Finding("subscriptions", "no answer", "the broker did not answer the "
                        "routes' SUBSCRIBE", warning=True)]
    assert isinstance(acks[0], SubAck)
    refused = [(f, packets.reason_text(r, packets.SUBACK))
               for f, r in zip(filters, acks[0].reasons, strict=False) if packets.is_failure(r)]
    if not refused:
        return [Finding("subscriptions", "accepted", f"the routes' {len(filters)} "
                        "filter(s) can be subscribed")]
    return [Finding("subscription", f, f"refused ({why}): the route on it would receive "
                    "nothing; check the broker's ACL", fatal=True) for f, why in refused]


def _wait(link: Link, wanted: Callable[[Packet], bool], count: int, timeout: float,
          wayback: WayBack, topic: str) -> list[Packet]:
    """Read until ``count`` packets are ``wanted`` (or ``timeout``), timing the probes on
    ``topic`` that come meanwhile; the wanted packets."""
    end = time.monotonic() + timeout
    seen: list[Packet] = []
    while len(seen) < count and time.monotonic() < end:
        link.flush()
        select.select([link.sock], [], [], max(0.0, end - time.monotonic()))
        for packet in link.read():
            if isinstance(packet, Publish) and packet.topic == topic:
                wayback.returned_probe(packet.payload, time.monotonic())
            if wanted(packet):
                seen.append(packet)
    return seen
