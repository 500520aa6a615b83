"""Small value types shared by the components. A leaf module: it imports nothing from edged.

The MQTT codec's packets never leave ``edged.mqtt``; the rest of the daemon sees these.
They are values, never changed once made, but not declared frozen: a frozen dataclass's
``__init__`` costs three times a plain one's, and several are made for every message.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Inbound:
    """One message received from the broker."""

    topic: str
    payload: bytes
    qos: int
    received_wall: float
    """Unix time (s) at receipt, for reports."""
    received_mono: float
    """``time.monotonic()`` at receipt, for deadline arithmetic."""
    response_topic: str | None = None
    correlation_data: bytes | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    expiry_interval_s: int | None = None


@dataclass(slots=True)
class Outbound:
    """One message to publish."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    correlation_data: bytes | None = None
    user_properties: tuple[tuple[str, str], ...] = field(default=())
