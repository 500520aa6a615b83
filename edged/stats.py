"""Counters and timings per route, safe to update from any thread; snapshots as plain dicts."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from edged.results import Timings

STAGES = ("queue", "preprocess", "invoke", "postprocess", "total")
WINDOW = 2048  # recent totals kept for percentiles


@dataclass
class _Stage:
    count: int = 0
    sum_ms: float = 0.0
    max_ms: float = 0.0

    def add(self, ms: float) -> None:
        self.count += 1
        self.sum_ms += ms
        self.max_ms = max(self.max_ms, ms)


@dataclass
class _RouteStats:
    model: str
    received: int = 0
    succeeded: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    stages: dict[str, _Stage] = field(default_factory=lambda: {s: _Stage() for s in STAGES})
    recent_total: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[rank], 3)


class Stats:
    """What happened to every message, per route."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, _RouteStats] = {}

    def add_route(self, route: str, model: str) -> None:
        with self._lock:
            self._routes.setdefault(route, _RouteStats(model))

    def received(self, route: str) -> None:
        with self._lock:
            self._routes[route].received += 1

    def succeeded(self, route: str, timings: Timings) -> None:
        with self._lock:
            stats = self._routes[route]
            stats.succeeded += 1
            for stage in STAGES:
                stats.stages[stage].add(getattr(timings, stage))
            stats.recent_total.append(timings.total)

    def failed(self, route: str, reason: str) -> None:
        with self._lock:
            self._routes[route].failed[reason] += 1

    def totals(self) -> dict[str, int]:
        """Across routes: received, succeeded, failed."""
        with self._lock:
            return {
                "received": sum(r.received for r in self._routes.values()),
                "succeeded": sum(r.succeeded for r in self._routes.values()),
                "failed": sum(sum(r.failed.values()) for r in self._routes.values()),
            }

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {name: self._route_snapshot(r) for name, r in self._routes.items()}

    @staticmethod
    def _route_snapshot(r: _RouteStats) -> dict[str, Any]:
        answered = r.succeeded + r.failed.get("deadline", 0) + r.failed.get("expired", 0)
        recent = list(r.recent_total)
        return {
            "model": r.model,
            "received": r.received,
            "succeeded": r.succeeded,
            "failed": dict(r.failed),
            "on_time_rate": round(r.succeeded / answered, 4) if answered else None,
            "timings_ms": {
                s: {
                    "count": st.count,
                    "mean": round(st.sum_ms / st.count, 3) if st.count else None,
                    "max": round(st.max_ms, 3),
                }
                for s, st in r.stages.items()
            },
            "total_ms_p50": _percentile(recent, 0.5),
            "total_ms_p99": _percentile(recent, 0.99),
        }
