"""The small protocol the rest of edged needs from the MQTT side. ``edged.mqtt.MqttClient``
is the real one; tests of the server, reload and shutdown use a fake with the same methods."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from edged.types import Outbound


class Transport(Protocol):
    def publish(self, message: Outbound) -> None:
        """Send or queue ``message``; never blocks."""

    def send_lag(self) -> float:
        """How long (s) a message published now waits inside edged before it is written."""

    def way_back(self) -> float:
        """How long (s) a message written now takes through the broker to its receiver."""


def reply_time(transport: Transport, margin_ms: float | None) -> float:
    """How long (s) an answer needs after it is ready to reach its sender: what waits before
    it in edged, and a route's fixed reply margin or, unset, the broker's way back."""
    way_back = transport.way_back() if margin_ms is None else margin_ms / 1000.0
    return transport.send_lag() + way_back


class BrokerSide(Transport, Protocol):
    """What the server drives: the connection's lifecycle, subscriptions and reports."""

    loop_beat: float
    """When the transport's thread last showed it is alive (monotonic s)."""

    def start(self) -> None: ...

    def stop(self, timeout: float) -> None:
        """Deliver what waits for up to ``timeout`` s, say ``stopped``, disconnect."""

    def hold_input(self) -> bool:
        """Leave QoS 1 input unacknowledged from now on, for the next session."""

    def call_in_loop(self, fn: Callable[[], None], timeout: float = 10.0) -> bool:
        """Run ``fn`` between two messages; True once it ran."""

    def set_subscriptions(self, filters: Sequence[str]) -> None: ...

    def set_announce(self, messages: Sequence[Outbound]) -> None:
        """Messages published (retained) on every connect, e.g. Home Assistant discovery."""

    def summary(self) -> str:
        """The connection's state in a few words."""

    def snapshot(self) -> dict[str, Any]:
        """Plain data for the stats topic: state, outbox, refusals, the way back."""
