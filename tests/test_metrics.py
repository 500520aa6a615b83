"""Stats and Prometheus metrics: unit-level exposition, and the real daemon's endpoints."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from edged.metrics import StatsCollector
from edged.results import Timings
from edged.stats import Idle, Live, Stats
from tests.support.broker import Broker, free_port
from tests.support.daemon import MODELS, Edged, digits_config
from tests.support.probe import Probe


class ThreeQueued(Idle):
    def queue_depth(self, route: str) -> int:
        return 3


def exposition(stats: Stats, live: Live | None = None) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats, live))
    return generate_latest(registry).decode()


def test_counters_histograms_and_on_time_rate_are_exposed() -> None:
    stats = Stats()
    stats.add_route("cam", "digits")
    for _ in range(3):
        stats.received("cam")
    stats.answered("cam", Timings(queue=0.2, preprocess=0.1, invoke=0.4, postprocess=0.1,
                                  total=0.8))
    stats.failed("cam", "deadline")
    stats.failed("cam", "bad_input")
    text = exposition(stats, ThreeQueued())
    assert 'edged_requests_received_total{model="digits",route="cam"} 3.0' in text
    assert 'edged_requests_succeeded_total{model="digits",route="cam"} 1.0' in text
    assert 'edged_requests_failed_total{model="digits",reason="deadline",route="cam"} 1.0' in text
    assert 'edged_queue_depth{model="digits",route="cam"} 3.0' in text
    # 1 on time out of 2 judged for time (bad input is not a timing outcome)
    assert 'edged_on_time_ratio{model="digits",route="cam"} 0.5' in text
    assert ('edged_stage_duration_seconds_bucket{le="0.001",model="digits",route="cam",'
            'stage="total"} 1.0') in text
    assert ('edged_stage_duration_seconds_bucket{le="0.0005",model="digits",route="cam",'
            'stage="total"} 0.0') in text


def test_a_doors_events_and_peers_are_exposed_and_in_the_snapshot() -> None:
    stats = Stats()
    stats.add_door("frigate", lambda: {"detectors": 2, "pending": 1,
                                       "counts": {"results": 5, "zeros_deadline": 2}})
    text = exposition(stats)
    assert 'edged_door_events_total{door="frigate",event="results"} 5.0' in text
    assert 'edged_door_events_total{door="frigate",event="zeros_deadline"} 2.0' in text
    assert 'edged_door_peers{door="frigate"} 2.0' in text
    assert 'edged_door_pending{door="frigate"} 1.0' in text
    assert stats.snapshot()["frigate"]["counts"]["results"] == 5


def test_snapshot_has_percentiles_and_failure_reasons() -> None:
    stats = Stats()
    stats.add_route("cam", "digits")
    for ms in (1.0, 2.0, 3.0, 4.0):
        stats.answered("cam", Timings(total=ms))
    stats.failed("cam", "queue_full")
    snap = stats.snapshot()
    route = snap["routes"]["cam"]
    assert route["total_ms"]["p50"] in (2.0, 3.0)
    assert route["total_ms"]["p99"] == 4.0
    assert route["failed"] == {"queue_full": 1}
    assert route["on_time_rate"] == pytest.approx(0.8)
    assert snap["totals"] == {"received": 0, "succeeded": 4, "late": 0, "failed": 1,
                              "superseded": 0, "unrouted": 0}


@pytest.mark.integration
def test_daemon_publishes_stats_and_serves_prometheus(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    port = free_port()
    config = digits_config(broker.port)
    config["stats_interval_s"] = 0.5
    config["metrics"] = {"port": port}
    probe.subscribe("edged/test-box/stats", "edged/test-box/predictions/cam")
    edged = Edged(tmp_path, config)
    daemons.append(edged)
    edged.start()
    probe.next(timeout=60, topic="edged/test-box/stats")  # edged is up
    image = np.load(MODELS / "digits_holdout.npz")["images"][0]
    for _ in range(5):
        probe.publish("sensors/a/frame", np.rint(image * 255).astype(np.uint8).tobytes())
    assert len(probe.collect(5, timeout=10, topic="edged/test-box/predictions/cam")) == 5
    end = time.monotonic() + 10
    route: dict[str, object] = {}
    while time.monotonic() < end and route.get("succeeded") != 5:
        route = probe.next(timeout=5, topic="edged/test-box/stats").json()["routes"]["cam"]
    assert route["succeeded"] == 5 and route["received"] == 5
    assert route["on_time_rate"] == 1.0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'edged_requests_succeeded_total{model="digits",route="cam"} 5.0' in text


def test_a_metrics_port_in_use_is_a_config_error() -> None:
    import socket

    from edged.errors import ConfigError
    from edged.metrics import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            serve(Stats(), Idle(), "127.0.0.1", port)
