"""What a broker announces when it accepts edged, and what edged does about each part (pure).

MQTT 5 puts the broker's limits in the CONNACK's properties (3.2.2.3); an absent property
means the default (no limit, or "available"). MQTT 3.1.1 announces nothing, so its CONNACK
reads as every default; what a 3.1.1 broker refuses it refuses by closing the connection,
which ``outgoing.Outgoing`` handles (probation). The daemon applies ``Announced`` on every
connect (``Outgoing.attach``); ``edged check --broker`` prints ``findings``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edged.mqtt.packets import ConnAck

NO_LIMIT = 268_435_460  # over the largest packet MQTT can encode (MAX_REMAINING + header)


@dataclass(frozen=True)
class Announced:
    version: str
    """"5" or "3.1.1": the protocol the broker accepted."""
    session_present: bool
    maximum_qos: int = 2
    retain_available: bool = True
    maximum_packet_size: int | None = None
    receive_maximum: int = 65535
    server_keep_alive: int | None = None
    topic_alias_maximum: int = 0
    wildcard_available: bool = True
    shared_available: bool = True
    subscription_ids_available: bool = True
    assigned_client_id: str | None = None
    server_reference: str | None = None

    @classmethod
    def of(cls, connack: ConnAck, version: str) -> Announced:
        if version != "5":  # 3.1.1: no properties; only Session Present (3.2.2.2)
            return cls(version, connack.session_present)
        return cls(version, connack.session_present, connack.maximum_qos,
                   connack.retain_available, connack.maximum_packet_size,
                   connack.receive_maximum, connack.server_keep_alive,
                   connack.topic_alias_maximum, connack.wildcard_available,
                   connack.shared_available, connack.subscription_ids_available,
                   connack.assigned_client_id, connack.server_reference)

    def keepalive(self, configured: int) -> int:
        """The keep-alive to keep: the broker's when it sent one (MQTT-3.2.2-21). A Server
        Keep Alive of 0 switches pings off."""
        return configured if self.server_keep_alive is None else self.server_keep_alive

    def packet_limit(self) -> int:
        """The largest packet edged may send (MQTT-3.2.2-15)."""
        return NO_LIMIT if self.maximum_packet_size is None else self.maximum_packet_size

    def snapshot(self) -> dict[str, Any]:
        return {"protocol": self.version, "session_present": self.session_present,
                "maximum_qos": self.maximum_qos, "retain_available": self.retain_available,
                "maximum_packet_size": self.maximum_packet_size,
                "receive_maximum": self.receive_maximum,
                "server_keep_alive": self.server_keep_alive,
                "wildcard_subscriptions": self.wildcard_available,
                "shared_subscriptions": self.shared_available}


@dataclass(frozen=True)
class Finding:
    """One announced property, what edged does about it, and whether a route cannot work."""

    name: str
    value: str
    action: str
    fatal: bool = False
    warning: bool = False

    def line(self) -> str:
        tag = "error  " if self.fatal else "warning" if self.warning else "broker "
        return f"{tag}  {self.name}: {self.value}; {self.action}"


def findings(announced: Announced, *, keepalive_s: int, publish_qos: Mapping[str, int],
             filters: Sequence[str], retained_topics: bool = True) -> list[Finding]:
    """What edged does with each property the broker announced, for ``edged check``.
    ``publish_qos`` maps each route to its QoS; ``filters`` are the routes' subscriptions."""
    a = announced
    out = [Finding("protocol", f"MQTT {a.version}",
                   "MQTT 3.1.1 announces no limits: what the broker refuses it refuses by "
                   "closing the connection, which edged survives (a publish that closes it "
                   "again and again is set aside and reported)" if a.version != "5" else
                   "limits below are read from the CONNACK (MQTT 5 3.2.2.3)")]
    over = sorted(name for name, qos in publish_qos.items() if qos > a.maximum_qos)
    out.append(Finding(
        "Maximum QoS", str(a.maximum_qos),
        f"routes {', '.join(over)} publish at QoS {a.maximum_qos} instead "
        "(MQTT-3.2.2-11)" if over else "every route's publish_qos is within it",
        warning=bool(over)))
    out.append(Finding(
        "Retain Available", "yes" if a.retain_available else "no",
        "the status and discovery messages are retained" if a.retain_available else
        "nothing is published retained (MQTT-3.2.2-14): the will is not retained, and "
        "`online` and discovery are published again every keep-alive instead",
        warning=not a.retain_available and retained_topics))
    out.append(Finding(
        "Maximum Packet Size",
        "no limit" if a.maximum_packet_size is None else f"{a.maximum_packet_size} bytes",
        "a larger result is not sent: its requester and the errors topic get a "
        "`too_large` error instead (MQTT-3.2.2-15)" if a.maximum_packet_size is not None
        else "results of any size can be sent"))
    out.append(Finding("Receive Maximum", str(a.receive_maximum),
                       "QoS 1 and 2 publishes in flight are kept within it (MQTT-3.3.4-7)"))
    keep = a.keepalive(keepalive_s)
    out.append(Finding(
        "Server Keep Alive", "not sent" if a.server_keep_alive is None
        else f"{a.server_keep_alive} s",
        f"edged pings after {keep} s of silence" if keep else "edged does not ping "
        "(keep-alive 0)" + (" (MQTT-3.2.2-21)" if a.server_keep_alive is not None else "")))
    wild = [f for f in filters if "+" in f or "#" in f]
    out.append(Finding(
        "Wildcard Subscription Available", "yes" if a.wildcard_available else "no",
        f"routes subscribe to {', '.join(wild)}: the broker would refuse them"
        if wild and not a.wildcard_available else "no route needs what it lacks",
        fatal=bool(wild) and not a.wildcard_available))
    shared = [f for f in filters if f.startswith("$share/")]
    out.append(Finding(
        "Shared Subscription Available", "yes" if a.shared_available else "no",
        f"routes subscribe to {', '.join(shared)}: the broker would refuse them"
        if shared and not a.shared_available else "no route needs what it lacks",
        fatal=bool(shared) and not a.shared_available))
    out.append(Finding("Topic Alias Maximum", str(a.topic_alias_maximum),
                       "edged sends no topic aliases (MQTT-3.2.2-18 kept whatever the value)"))
    return out
