"""What one session has been through: invoke times per backend, failures, fallback events
and the retry backoff. Written by the worker and its retry thread, read by stats."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

WINDOW = 512  # recent invoke times kept for percentiles
EVENTS = 16  # recent fallback and recovery events kept


@dataclass(frozen=True)
class FallbackEvent:
    time: float
    """Unix time (s)."""
    kind: str  # fallback | recovered
    source: str
    target: str
    reason: str


@dataclass
class _Timing:
    count: int = 0
    sum_ms: float = 0.0
    max_ms: float = 0.0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def snapshot(self) -> dict[str, Any]:
        ordered = sorted(self.recent)

        def pct(q: float) -> float | None:
            return round(ordered[round(q * (len(ordered) - 1))], 3) if ordered else None

        return {"count": self.count,
                "mean": round(self.sum_ms / self.count, 3) if self.count else None,
                "max": round(self.max_ms, 3), "p50": pct(0.5), "p99": pct(0.99)}


class SessionHealth:
    """Thread-safe counters of one session, and its retry backoff (doubling, capped)."""

    def __init__(self, retry_min_s: float, retry_max_s: float) -> None:
        self._lock = threading.Lock()
        self._min, self._max = retry_min_s, retry_max_s
        self.retry_delay_s = retry_min_s
        self.retry_at: float | None = None
        self.invoking_since: float | None = None
        self.failures = 0
        self.fallbacks = 0
        self.recoveries = 0
        self.retries_failed = 0
        self.last_retry_error: str | None = None
        self._timings: dict[str, _Timing] = {}
        self.events: deque[FallbackEvent] = deque(maxlen=EVENTS)

    def invoked(self, backend: str, ms: float) -> None:
        # Once per invoke: no new _Timing (and its deque) made just to be thrown away.
        with self._lock:
            timing = self._timings.get(backend)
            if timing is None:
                timing = self._timings[backend] = _Timing()
            timing.count += 1  # in place, not in a method of _Timing: once per invoke
            timing.sum_ms += ms
            if ms > timing.max_ms:
                timing.max_ms = ms
            timing.recent.append(ms)

    def failed(self) -> None:
        with self._lock:
            self.failures += 1

    def event(self, kind: str, source: str, target: str, reason: str) -> None:
        with self._lock:
            self.events.append(FallbackEvent(time.time(), kind, source, target, reason))
            if kind == "fallback":
                self.fallbacks += 1
            else:
                self.recoveries += 1

    def next_retry(self) -> float:
        """Seconds to wait before the next retry; the wait doubles after each one."""
        with self._lock:
            delay = self.retry_delay_s
            self.retry_at = time.monotonic() + delay
            self.retry_delay_s = min(self._max, delay * 2)
            return delay

    def retry_failed(self, reason: str) -> None:
        with self._lock:
            self.retries_failed += 1
            self.last_retry_error = reason

    def reset_backoff(self) -> None:
        with self._lock:
            self.retry_delay_s = self._min
            self.retry_at = None
            self.last_retry_error = None

    def retry_text(self) -> str:
        at = self.retry_at
        if at is None:
            return "retrying"
        return f"next retry in {max(0.0, at - time.monotonic()):.1f} s"

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            since, at = self.invoking_since, self.retry_at
            return {
                "invokes": sum(t.count for t in self._timings.values()),
                "invoke_ms": {name: t.snapshot() for name, t in self._timings.items()},
                "invoking_for_ms": round((now - since) * 1000, 1) if since else None,
                "failures": self.failures,
                "fallback_events": self.fallbacks,
                "recoveries": self.recoveries,
                "retries_failed": self.retries_failed,
                "next_retry_in_s": round(max(0.0, at - now), 1) if at else None,
                "last_retry_error": self.last_retry_error,
                "events": [asdict(e) for e in self.events],
            }
