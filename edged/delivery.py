"""Bookkeeping for the MQTT transport (pure): which publishes the broker has not yet
acknowledged, what it refused, and the connection's state changes (logged once each)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import structlog

from edged.types import Outbound

log = structlog.get_logger("edged.mqtt")
MAX_REPORTED_TOPICS = 1000


@dataclass(frozen=True)
class Pending:
    """A QoS 1/2 publish sent and not yet acknowledged: the message, the QoS it went at, the
    outbox entry it delivers (None: published directly) and the packet as written, which
    goes out again (with DUP) when the broker keeps the session (MQTT-4.4.0-1)."""

    message: Outbound
    qos: int
    entry_id: int | None = None
    """The outbox entry it delivers, acknowledged to the outbox on PUBACK."""
    data: bytes = b""

    @property
    def topic(self) -> str:
        return self.message.topic


class Tracker:
    """QoS 1/2 publishes awaiting their acknowledgement, by packet identifier, in the order
    they were sent. A record is made before the packet is written, so an acknowledgement
    always finds it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, Pending] = {}
        self._entries = 0  # records that deliver an outbox entry

    def sent(self, mid: int, record: Pending) -> None:
        with self._lock:
            old = self._pending.get(mid)
            self._entries += (record.entry_id is not None) - (
                old is not None and old.entry_id is not None)
            self._pending[mid] = record

    def acked(self, mid: int) -> Pending | None:
        """The record of ``mid``, now forgotten; None for an id edged did not send."""
        with self._lock:
            record = self._pending.pop(mid, None)
            if record is not None and record.entry_id is not None:
                self._entries -= 1
            return record

    def has(self, mid: int) -> bool:
        return mid in self._pending

    def outstanding(self) -> int:
        return len(self._pending)

    def in_flight_entries(self) -> int:
        return self._entries

    def records(self) -> list[tuple[int, Pending]]:
        """Every record, oldest first (a copy)."""
        with self._lock:
            return list(self._pending.items())

    def take_records(self) -> list[tuple[int, Pending]]:
        """Forget every record and return them, oldest first (a lost connection)."""
        with self._lock:
            records = list(self._pending.items())
            self._pending.clear()
            self._entries = 0
        return records

    def take_all(self) -> tuple[list[Outbound], list[int]]:
        """Forget every record: the direct messages (for the outbox) and the outbox entries
        (to offer again), at shutdown."""
        return split([record for _, record in self.take_records()])


def split(records: list[Pending]) -> tuple[list[Outbound], list[int]]:
    """The direct messages, and the outbox entries, of ``records``."""
    return ([r.message for r in records if r.entry_id is None],
            [r.entry_id for r in records if r.entry_id is not None])


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
