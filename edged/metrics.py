"""Prometheus metrics, read from ``Stats`` at scrape time (no second set of counters).

Opt-in: served only when ``metrics.port`` is set, bound to 127.0.0.1 unless configured.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from edged.errors import ConfigError
from edged.stats import BUCKETS_MS, Idle, Live, Stats


class StatsCollector(Collector):
    def __init__(self, stats: Stats, live: Live | None = None) -> None:
        self._stats = stats
        self._live = live or Idle()

    def collect(self) -> Iterator[Metric]:
        labels = ["route", "model"]
        received = CounterMetricFamily(
            "edged_requests_received", "Messages received", labels=labels)
        succeeded = CounterMetricFamily(
            "edged_requests_succeeded", "Results published on time", labels=labels)
        late = CounterMetricFamily(
            "edged_requests_late", "Results published late (on_late: publish)", labels=labels)
        superseded = CounterMetricFamily(
            "edged_requests_superseded", "Messages replaced by a newer one from the same "
            "source before they ran (queue: latest)", labels=labels)
        failed = CounterMetricFamily(
            "edged_requests_failed", "Messages that got no result, by reason",
            labels=[*labels, "reason"])
        depth = GaugeMetricFamily("edged_queue_depth", "Messages waiting", labels=labels)
        on_time = GaugeMetricFamily(
            "edged_on_time_ratio", "On-time results / messages judged for time", labels=labels)
        stage = HistogramMetricFamily(
            "edged_stage_duration_seconds", "Time per pipeline stage",
            labels=[*labels, "stage"])
        for route, r in self._stats.export().items():
            key = [route, r.model]
            received.add_metric(key, r.received)
            succeeded.add_metric(key, r.succeeded)
            late.add_metric(key, r.late)
            superseded.add_metric(key, r.superseded)
            for reason, count in r.failed.items():
                failed.add_metric([*key, reason], count)
            depth.add_metric(key, self._live.queue_depth(route))
            rate = r.on_time_rate()
            if rate is not None:
                on_time.add_metric(key, rate)
            for name, h in r.stages.items():
                stage.add_metric([*key, name], _buckets(h.counts), h.sum_ms / 1000.0)
        yield from (received, succeeded, late, superseded, failed, depth, on_time, stage)
        yield from self._workers()
        yield from self._doors()

    def _doors(self) -> Iterator[Metric]:
        """A second door's own events (the Frigate door: handshakes, results, zeros by
        reason) and its connected peers and requests in flight."""
        events = CounterMetricFamily(
            "edged_door_events", "What a door beside MQTT answered, by event",
            labels=["door", "event"])
        peers = GaugeMetricFamily("edged_door_peers", "Peers that made a handshake",
                                  labels=["door"])
        pending = GaugeMetricFamily("edged_door_pending", "Requests in flight",
                                    labels=["door"])
        for door, snapshot in self._stats.doors().items():
            for event, count in sorted((snapshot.get("counts") or {}).items()):
                events.add_metric([door, event], float(count))
            peers.add_metric([door], float(snapshot.get("detectors", 0)))
            pending.add_metric([door], float(snapshot.get("pending", 0)))
        yield from (events, peers, pending)

    def _workers(self) -> Iterator[Metric]:
        labels = ["model", "worker", "backend"]
        on_fallback = GaugeMetricFamily(
            "edged_worker_on_fallback", "1 while a worker serves from its CPU fallback",
            labels=labels)
        events = CounterMetricFamily(
            "edged_fallback_events", "Times a worker moved to its fallback", labels=labels)
        invokes = CounterMetricFamily("edged_invokes", "Invokes run by a worker", labels=labels)
        for model, info in self._live.describe_models().items():
            for w in info.get("workers", []):
                key = [model, str(w.get("name")), str(w.get("backend"))]
                on_fallback.add_metric(key, 1.0 if w.get("on_fallback") else 0.0)
                events.add_metric(key, float(w.get("fallback_events", 0)))
                invokes.add_metric(key, float(w.get("invokes", 0)))
        yield from (on_fallback, events, invokes)


def _buckets(counts: list[int]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip([*BUCKETS_MS, float("inf")], counts, strict=True):
        running += count
        out.append(("+Inf" if bound == float("inf") else repr(bound / 1000.0), running))
    return out


def serve(stats: Stats, live: Live, host: str, port: int) -> Any:
    """Start the HTTP endpoint in a daemon thread; returns (server, thread)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats, live))
    try:
        return start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError("metrics", [f"cannot serve metrics on {host}:{port}: "
                                      f"{exc.strerror or exc}"]) from exc
