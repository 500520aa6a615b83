"""Bookkeeping for the MQTT adapter, free of paho: which publishes the broker has not yet
acknowledged, what it refused, and the connection's state changes (logged once each)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from edged.types import Outbound

log = structlog.get_logger("edged.mqtt")
MAX_REPORTED_TOPICS = 1000
STALE_QOS0_S = 30.0
EARLY_ACK_S = 5.0
MAX_EARLY = 1000  # topics whose refusal is logged; a bound against topic floods


@dataclass(frozen=True)
class Pending:
    """A publish handed to paho: its topic, and where it came from."""

    topic: str
    qos: int
    entry_id: int | None = None
    """The outbox entry it delivers, acknowledged to the outbox on PUBACK."""
    message: Outbound | None = None
    """A QoS 1 message published directly: put in the outbox if edged stops before PUBACK."""
    sent_at: float = field(default_factory=time.monotonic, compare=False)
    """When it was handed to paho (monotonic s), for the outbound lag."""


class Tracker:
    """Publishes awaiting their PUBACK, by message id.

    paho may report the acknowledgement (or, for QoS 0, the write) on its own thread before
    ``sent`` has recorded the id: such early ids are remembered and matched in ``sent``.
    """

    LAG_SMOOTHING = 0.2

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, Pending] = {}
        # mid -> when its acknowledgement came before its record. Only a moment's race
        # makes a real one; an id left here (an untracked publish) must not match a later
        # publish once the 16-bit ids wrap, so entries expire.
        self._early: dict[int, float] = {}
        self._clock = clock
        self._lag = 0.0

    def sent(self, mid: int, record: Pending) -> bool:
        """Record a publish; True if its acknowledgement already arrived."""
        with self._lock:
            early = self._early.pop(mid, None)
            if early is not None and self._clock() - early < EARLY_ACK_S:
                return True
            self._pending[mid] = record
            return False

    def acked(self, mid: int) -> Pending | None:
        with self._lock:
            record = self._pending.pop(mid, None)
            if record is None:
                now = self._clock()
                if len(self._early) > MAX_EARLY:
                    self._early = {m: t for m, t in self._early.items()
                                   if now - t < EARLY_ACK_S}
                self._early[mid] = now
            else:
                lag = self._clock() - record.sent_at
                self._lag += self.LAG_SMOOTHING * (lag - self._lag)
            return record

    def lag(self) -> float:
        """How long a publish handed to paho now takes to leave (s): the larger of the
        recent completions (smoothed) and the age of the oldest one still waiting, which
        reacts at once when the outbound side stalls. A result that edged finishes in time
        but that then waits here reaches its sender late all the same."""
        with self._lock:
            now = self._clock()
            # Insertion order is send order: the first pending entry is the oldest. A QoS 0
            # record whose write was reported before it was recorded (and then lost with
            # the connection) would never complete: past a horizon it is garbage.
            while self._pending:
                mid, oldest = next(iter(self._pending.items()))
                if oldest.qos > 0 or now - oldest.sent_at < STALE_QOS0_S:
                    return max(self._lag, now - oldest.sent_at)
                del self._pending[mid]
            return self._lag

    def connection_lost(self) -> None:
        """QoS 0 messages not yet written are gone; paho resends QoS 1 ones itself, and
        their lag counts afresh from the reconnect, not from before the outage."""
        with self._lock:
            self._pending = {m: replace(p, sent_at=self._clock())
                             for m, p in self._pending.items() if p.qos > 0}
            self._early.clear()
            self._lag = 0.0

    def outstanding(self) -> int:
        with self._lock:
            return sum(1 for p in self._pending.values() if p.qos > 0)

    def in_flight_entries(self) -> int:
        with self._lock:
            return sum(1 for p in self._pending.values() if p.entry_id is not None)

    def take_unacked(self) -> list[Outbound]:
        """Direct QoS 1 messages still unacknowledged (for the outbox, at shutdown)."""
        with self._lock:
            out = [p.message for p in self._pending.values() if p.message is not None]
            self._pending.clear()
            return out


class Refusals:
    """Publishes and subscriptions the broker refused (MQTT 5 reason codes, e.g. an ACL's
    "Not authorized"): counted per topic, logged once per topic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.publish: Counter[str] = Counter()
        self.subscribe: Counter[str] = Counter()

    def refused(self, kind: str, topic: str, reason: str) -> None:
        counter = self.publish if kind == "publish" else self.subscribe
        with self._lock:
            first = topic not in counter
            if first and len(counter) >= MAX_REPORTED_TOPICS:
                topic, first = "(other topics)", "(other topics)" not in counter
            counter[topic] += 1
        if first:
            log.error(f"broker refused a {kind}; check the broker's ACL for this client",
                      topic=topic[:200], reason=reason)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"publish_refused": sum(self.publish.values()),
                    "subscribe_refused": sum(self.subscribe.values()),
                    "refused_topics": sorted(self.publish)[:20]}


class ConnectionState:
    """The connection's state; each change is logged once, not once per attempt."""

    def __init__(self) -> None:
        self.state = "connecting"
        self.detail = ""
        self.attempts = 0

    def change(self, state: str, detail: str = "", **fields: Any) -> None:
        if (state, detail) == (self.state, self.detail):
            return
        self.state, self.detail = state, detail
        if state == "connected":
            log.info("connected", **fields)
        elif state in ("stopped", "connecting"):
            log.info(state, **fields)
        else:
            log.warning(f"broker {state}; retrying with backoff", detail=detail, **fields)

    def summary(self) -> str:
        return f"{self.state} ({self.detail})" if self.detail else self.state
