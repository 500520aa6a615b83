"""The small protocol the rest of edged needs from the MQTT side. ``edged.mqtt.MqttClient``
is the real one; tests of the server, reload and shutdown use a fake with the same methods."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from edged.types import Outbound


class Transport(Protocol):
    def publish(self, message: Outbound) -> None:
        """Send or queue ``message``; never blocks."""

    def reply_time(self, margin_ms: float | None) -> float:
        """How long (s) an answer needs after it is ready to reach its sender: what waits
        before it inside edged, then a route's fixed reply margin or, with none, the way
        back through the broker as edged's probes measure it. Read for every message."""


class BrokerSide(Transport, Protocol):
    """What the server drives: the connection's lifecycle, subscriptions and reports."""

    loop_beat: float
    """When the transport's thread last showed it is alive (monotonic s)."""

    on_undeliverable: Callable[[Outbound, str, str], None]
    """Told of a message the broker will never take: the message, a reason (``too_large``,
    ``refused``) and why, in a sentence."""

    def start(self) -> None: ...

    def stop(self, timeout: float) -> None:
        """Deliver what waits for up to ``timeout`` s, say ``stopped``, disconnect."""

    def hold_input(self) -> bool:
        """Leave QoS 1 input unacknowledged from now on, for the next session."""

    def call_in_loop(self, fn: Callable[[], None], timeout: float = 10.0) -> bool:
        """Run ``fn`` between two messages; True once it ran."""

    def set_subscriptions(self, filters: Sequence[str]) -> None: ...

    def summary(self) -> str:
        """The connection's state in a few words."""

    def snapshot(self) -> dict[str, Any]:
        """Plain data for the stats topic: state, outbox, refusals, the way back."""


class Fork:
    """The sink's transport when a second door is open: answers whose topic names a side
    door (its Response Topic) go to it, everything else to the main transport, whose way
    back the pipeline's admission reads."""

    def __init__(self, main: Transport, sides: dict[str, Transport]) -> None:
        self._main = main
        self._sides = sides

    def publish(self, message: Outbound) -> None:
        side = self._sides.get(message.topic)
        (side or self._main).publish(message)

    def reply_time(self, margin_ms: float | None) -> float:
        return self._main.reply_time(margin_ms)
