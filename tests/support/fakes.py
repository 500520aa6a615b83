"""A fake transport, for tests of the code above the MQTT side (responder, pipeline, server):
it keeps what would be published, and its lags are set by the test."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from edged.types import Inbound, Outbound


class FakeTransport:
    def __init__(self, send_lag_s: float = 0.0, way_back_s: float = 0.001) -> None:
        self.published: list[Outbound] = []
        self.send_lag_s = send_lag_s
        self.way_back_s = way_back_s

    @classmethod
    def into(cls, published: list[Outbound]) -> FakeTransport:
        """A fake that puts what it would publish into ``published``."""
        fake = cls()
        fake.published = published
        return fake

    def publish(self, message: Outbound) -> None:
        self.published.append(message)

    def reply_time(self, margin_ms: float | None) -> float:
        return self.send_lag_s + (self.way_back_s if margin_ms is None else margin_ms / 1000)


class FakeBroker(FakeTransport):
    """The server's side of it: messages are handed to edged with ``deliver``; calls run at
    once, as between two messages."""

    def __init__(self, on_message: Callable[[Inbound], None]) -> None:
        super().__init__()
        self.on_message = on_message
        self.loop_beat = 0.0
        self.started = self.stopped = self.holding = False
        self.subscriptions: list[str] = []
        self.on_undeliverable: Callable[[Outbound, str, str], None] = lambda m, r, t: None

    def deliver(self, message: Inbound) -> None:
        self.on_message(message)

    def start(self) -> None:
        self.started = True

    def stop(self, timeout: float) -> None:
        self.stopped = True

    def hold_input(self) -> bool:
        self.holding = True
        return True

    def call_in_loop(self, fn: Callable[[], None], timeout: float = 10.0) -> bool:
        fn()
        return True

    def set_subscriptions(self, filters: Sequence[str]) -> None:
        self.subscriptions = list(filters)


    def summary(self) -> str:
        return "connected (fake)"

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.summary(), "outbox": {"waiting": 0, "dropped_full": 0}}
