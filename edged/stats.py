"""What happened to every message, per route: counters, stage-time histograms, recent
latencies. Safe to update from any thread; read as plain dicts (the stats topic) or as
Prometheus families (edged.metrics)."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edged.results import Timings

STAGES = ("queue", "preprocess", "invoke", "postprocess", "total")
# Upper bounds in ms, from sub-millisecond invokes to multi-second deadlines.
BUCKETS_MS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0,
              1000.0, 2500.0, 5000.0)
RECENT = 2048  # recent totals kept for percentiles
FOLD_AT = 512  # results' stage times kept as they came, then added to the histograms at once


@dataclass
class Histogram:
    """Cumulative-style histogram over ``BUCKETS_MS`` (the last slot is +Inf)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_MS) + 1))
    sum_ms: float = 0.0
    count: int = 0

    def add(self, ms: Any) -> None:
        """Count ``ms``: one value or an array of them."""
        values = np.asarray(ms, dtype=np.float64).reshape(-1)
        slots = np.bincount(np.searchsorted(BUCKETS_MS, values, side="left"),
                            minlength=len(self.counts))
        self.counts = [c + int(n) for c, n in zip(self.counts, slots, strict=True)]
        self.sum_ms += float(values.sum())
        self.count += values.size


@dataclass
class RouteStats:
    model: str
    received: int = 0
    succeeded: int = 0
    late: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    stages: dict[str, Histogram] = field(default_factory=lambda: {s: Histogram() for s in STAGES})
    recent_total: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    unfolded: list[tuple[float, ...]] = field(default_factory=list)
    """Stage times of results not yet in ``stages``, in STAGES' order: a message appends a
    row, and the histograms take them in one pass (``fold``)."""
    superseded: int = 0
    """Replaced by a newer message from the same source before running (queue: latest)."""
    windows: int | None = None
    """Model inputs made from windows of readings or samples; None on other routes, whose
    inputs are their messages."""

    def fold(self) -> None:
        if self.unfolded:
            rows = np.array(self.unfolded, dtype=np.float64)
            self.unfolded = []
            for column, histogram in zip(rows.T, self.stages.values(), strict=True):
                histogram.add(column)

    def on_time_rate(self) -> float | None:
        """Answered on time / everything that got an answer or was refused for time."""
        timed = self.succeeded + self.late + sum(
            self.failed.get(r, 0) for r in ("deadline", "expired", "queue_full")
        )
        return round(self.succeeded / timed, 4) if timed else None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[rank], 3)


class Live(Protocol):
    """What only the running pipeline knows, read when a snapshot is taken."""

    def queue_depth(self, route: str) -> int: ...

    def describe_models(self) -> dict[str, Any]: ...

    def streams(self, route: str) -> dict[str, Any] | None:
        """A route's audio streams and streaming stages (topics, restarts), if it has any."""


class Idle:
    """No pipeline: nothing queued, no models."""

    def queue_depth(self, route: str) -> int:
        return 0

    def describe_models(self) -> dict[str, Any]:
        return {}

    def streams(self, route: str) -> dict[str, Any] | None:
        return None


class Stats:
    """Per-route counters, merged at read time with the pipeline's live values."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, RouteStats] = {}
        self._unrouted = 0
        self._started = time.monotonic()  # created as the server is: edged's uptime
        self._doors: dict[str, Callable[[], dict[str, Any]]] = {}

    def add_door(self, name: str, snapshot: Callable[[], dict[str, Any]]) -> None:
        """A second way in (the Frigate door): its own snapshot, ``{"counts": {...},
        ...}``, goes into the stats body under ``name`` and into the metrics."""
        self._doors[name] = snapshot

    def doors(self) -> dict[str, dict[str, Any]]:
        return {name: snapshot() for name, snapshot in self._doors.items()}

    def add_route(self, route: str, model: str, windowed: bool = False) -> None:
        """Count for ``route`` (again, after a reload: its counters go on, its model may
        have changed). A route a reload removed keeps its counters, as counters do. A
        ``windowed`` route's model inputs are windows of its readings: counted apart."""
        with self._lock:
            stats = self._route(route)
            stats.model = model
            if windowed and stats.windows is None:
                stats.windows = 0

    def _route(self, route: str) -> RouteStats:
        # Called with the lock held. Answers for a route a reload just removed still come
        # in from its retiring workers: count them rather than fail.
        stats = self._routes.get(route)
        if stats is None:
            stats = self._routes[route] = RouteStats("")
        return stats

    def unrouted(self) -> None:
        """A message that matched no route."""
        with self._lock:
            self._unrouted += 1

    def received(self, route: str) -> None:
        with self._lock:
            (self._routes.get(route) or self._route(route)).received += 1

    def answered(self, route: str, timings: Timings, late: bool = False) -> None:
        """A result was published (``late`` when the route publishes late results)."""
        with self._lock:
            stats = self._routes.get(route) or self._route(route)
            if late:
                stats.late += 1
            else:
                stats.succeeded += 1
            stats.unfolded.append((timings.queue, timings.preprocess, timings.invoke,
                                   timings.postprocess, timings.total))
            stats.recent_total.append(timings.total)
            if len(stats.unfolded) >= FOLD_AT:
                stats.fold()

    def failed(self, route: str, reason: str) -> None:
        with self._lock:
            self._route(route).failed[reason] += 1

    def superseded(self, route: str) -> None:
        with self._lock:
            self._route(route).superseded += 1

    def windows(self, route: str, count: int) -> None:
        """``count`` model inputs made from windows of a route's readings."""
        with self._lock:
            stats = self._route(route)
            stats.windows = (stats.windows or 0) + count

    def totals(self) -> dict[str, int]:
        with self._lock:
            routes = self._routes.values()
            return {
                "received": sum(r.received for r in routes),
                "succeeded": sum(r.succeeded for r in routes),
                "late": sum(r.late for r in routes),
                "failed": sum(sum(r.failed.values()) for r in routes),
                "superseded": sum(r.superseded for r in routes),
                "unrouted": self._unrouted,
            }

    def export(self) -> dict[str, RouteStats]:
        """A deep-enough copy of every route's stats, for a consistent read."""
        with self._lock:
            for r in self._routes.values():
                r.fold()
            return {
                name: RouteStats(
                    r.model, r.received, r.succeeded, r.late, Counter(r.failed),
                    {s: Histogram(list(h.counts), h.sum_ms, h.count) for s, h in r.stages.items()},
                    deque(r.recent_total, maxlen=RECENT), superseded=r.superseded,
                    windows=r.windows,
                )
                for name, r in self._routes.items()
            }

    def snapshot(self, live: Live | None = None) -> dict[str, Any]:
        """The JSON body of the stats topic."""
        live = live or Idle()
        routes = {}
        for name, r in self.export().items():
            recent = list(r.recent_total)
            routes[name] = {
                "model": r.model,
                "received": r.received,
                "succeeded": r.succeeded,
                "late": r.late,
                "failed": dict(r.failed),
                "superseded": r.superseded,
                "queue_depth": live.queue_depth(name),
                "on_time_rate": r.on_time_rate(),
                "timings_ms": {
                    s: {"count": h.count, "mean": round(h.sum_ms / h.count, 3) if h.count else None}
                    for s, h in r.stages.items()
                },
                "total_ms": {"p50": percentile(recent, 0.5), "p90": percentile(recent, 0.9),
                             "p99": percentile(recent, 0.99)},
            }
            if r.windows is not None:  # received counts readings; windows, model inputs
                routes[name]["windows"] = r.windows
            streams = live.streams(name)
            if streams is not None:
                routes[name]["streams"] = streams
        return {"uptime_s": round(time.monotonic() - self._started, 1),
                "totals": self.totals(), "routes": routes,
                "models": live.describe_models(), **self.doors()}
