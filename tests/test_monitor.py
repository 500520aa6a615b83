"""edged.monitor: the view behind ``edged status`` and ``edged top`` (pure, no broker)."""

from __future__ import annotations

import json
from typing import Any

from edged.monitor import BoxView, clock, interval_s, render, route_lines

STATUS, STATS = "edged/box/status", "edged/box/stats"


def snapshot(at: float, received: int, succeeded: int, failed: dict[str, int] | None = None,
             on_fallback: bool = False) -> dict[str, Any]:
    return {
        "device_id": "box", "time": at, "uptime_s": 3725.4,
        "totals": {"received": received, "succeeded": succeeded, "late": 1,
                   "failed": sum((failed or {}).values()), "unrouted": 2},
        "routes": {"cam": {"model": "digits", "received": received, "succeeded": succeeded,
                           "late": 1, "failed": failed or {}, "queue_depth": 4,
                           "on_time_rate": 0.9, "timings_ms": {},
                           "total_ms": {"p50": 1.234, "p90": 2.0, "p99": 9.876}}},
        "models": {"digits": {"service_time_ms": 0.5, "queued": 4, "workers": [
            {"name": "worker-digits-0", "backend": "cpu-fallback" if on_fallback else "edgetpu",
             "on_fallback": on_fallback, "fallback_events": 1 if on_fallback else 0,
             "invokes": 77, "failures": 3}]}},
        "mqtt": {"state": "connected", "protocol": "3.1.1", "dropped_offline_qos0": 5,
                 "undeliverable": {"too_large": 2},
                 "outbox": {"waiting": 6, "bytes": 700, "delivered": 8, "dropped_full": 9,
                            "spool": True}},
    }


def view_with(*snapshots: dict[str, Any], status: bytes = b"online") -> BoxView:
    view = BoxView("box", STATUS, STATS)
    assert view.take(STATUS, status)
    for snap in snapshots:
        assert view.take(STATS, json.dumps(snap).encode())
    return view


def test_rates_are_those_of_the_last_interval_by_the_daemons_clock() -> None:
    view = view_with(snapshot(100.0, 10, 8), snapshot(102.5, 110, 58), snapshot(105.0, 160, 58))
    assert interval_s(view) == 2.5
    (line,) = route_lines(view)
    assert line.in_rate == 20.0  # (160 - 110) / 2.5, not counted since the first snapshot
    assert line.ok_rate == 0.0
    assert (line.received, line.on_time, line.late, line.queue) == (160, 58, 1, 4)


def test_no_rates_across_a_restart_of_edged() -> None:
    before, after = snapshot(100.0, 500, 400), snapshot(101.0, 3, 2)
    after["uptime_s"] = 0.8
    (line,) = route_lines(view_with(before, after))
    assert line.in_rate is None and line.received == 3


def test_one_snapshot_has_no_rates_yet() -> None:
    view = view_with(snapshot(100.0, 10, 8))
    (line,) = route_lines(view)
    assert line.in_rate is None and line.ok_rate is None
    screen = render(view, now=101.0, every_s=30, with_rates=True)
    assert "rates after the next snapshot" in screen[1]
    assert screen[4].split()[8:10] == ["-", "-"]


def test_render_shows_state_uptime_refusals_workers_and_outbox() -> None:
    view = view_with(snapshot(100.0, 10, 8),
                     snapshot(101.0, 20, 15, {"deadline": 2, "queue_full": 1, "expired": 0},
                              on_fallback=True))
    screen = render(view, now=101.5, every_s=1, with_rates=True)
    assert screen[0] == "edged box: online, broker connected (MQTT 3.1.1), up 1:02:05"
    assert screen[1] == (f"stats of {clock(101.0)} (0.5 s ago, every 1 s); "
                         "rates over the last 1.0 s")
    assert screen[3].split() == ["ROUTE", "MODEL", "RECEIVED", "ON", "TIME", "LATE", "P50",
                                 "MS", "P99", "MS", "QUEUE", "IN/S", "OK/S", "REFUSED"]
    assert screen[4].split() == ["cam", "digits", "20", "15", "1", "1.23", "9.88", "4", "10.0",
                                 "7.0", "deadline", "2,", "queue_full", "1"]
    worker = next(line for line in screen if line.startswith("worker-digits-0"))
    assert worker.split() == ["worker-digits-0", "digits", "cpu-fallback", "yes", "(1",
                              "event)", "77", "3"]
    assert ("outbox 6 waiting (700 bytes, spooled to disk), 8 delivered, 9 dropped full; "
            "5 QoS 0 dropped while offline; 2 too_large") in screen
    assert screen[-1].startswith("unrouted 2")


def test_status_without_rates_leaves_the_rate_columns_out() -> None:
    screen = render(view_with(snapshot(100.0, 10, 8)), now=100.0, every_s=30,
                    with_rates=False)
    assert "IN/S" not in screen[3] and screen[3].endswith("QUEUE  REFUSED")


def test_a_box_without_stats_says_why() -> None:
    assert render(view_with(status=b"stopped"), 0, 30, True) == [
        "edged box: stopped", "no stats snapshot yet (the box is stopped)"]
    assert render(view_with(), 0, 0, True)[1] == (
        "no stats snapshot yet (stats_interval_s is 0: the box publishes none)")
    unknown = BoxView("box", STATUS, STATS)
    assert render(unknown, 0, 5, True)[:2] == [
        "edged box: unknown (no retained status)", "no stats snapshot yet (one comes every 5 s)"]


def test_junk_on_the_stats_topic_is_reported_not_shown() -> None:
    view = view_with(snapshot(100.0, 10, 8))
    assert not view.take(STATS, b"{not json")
    assert not view.take(STATS, b'{"routes": 3}')
    assert not view.take("edged/other/stats", json.dumps(snapshot(1, 1, 1)).encode())
    assert view.current is not None and view.current["time"] == 100.0
    screen = render(view, 100.0, 1, True)
    assert screen[-2:] == ["a stats message that is not JSON was ignored",
                           "a stats message without routes was ignored"]


def test_a_window_route_shows_readings_and_windows_and_superseded_apart() -> None:
    """384 messages of readings made 5 windows, all answered: not 379 lost. Frames replaced by newer
    ones (queue: latest) are their own figure, not a refusal."""
    snap = snapshot(100.0, 384, 5, {"queue_full": 1})
    snap["routes"]["cam"].update(windows=5, superseded=95)
    screen = render(view_with(snap), now=100.0, every_s=30, with_rates=False)
    assert screen[4].split() == ["cam", "digits", "384", "messages,", "5", "windows", "5", "1",
                                 "1.23", "9.88", "4", "queue_full", "1;", "superseded", "95"]
    plain = render(view_with(snapshot(100.0, 10, 8)), now=100.0, every_s=30, with_rates=False)
    assert plain[4].split()[2:4] == ["10", "8"]


def test_the_frigate_door_has_a_line_of_its_own() -> None:
    snap = snapshot(100.0, 10, 8)
    snap["frigate"] = {"endpoints": ["ipc:///run/edged/frigate.sock"], "detectors": 2,
                       "pending": 1, "served": {"ssd.tflite": "frigate-ssd.tflite"},
                       "counts": {"results": 40, "results_with_detections": 30,
                                  "zeros_deadline": 2, "zeros_bad_header": 1,
                                  "late_dropped": 1}}
    screen = render(view_with(snap), now=100.0, every_s=30, with_rates=False)
    assert ("frigate ipc:///run/edged/frigate.sock: 2 detector(s), 1 in flight; 40 results "
            "(30 with boxes), zeros bad_header 1, deadline 2; 1 late results dropped") in screen
    assert not any(line.startswith("frigate") for line in render(
        view_with(snapshot(100.0, 10, 8)), now=100.0, every_s=30, with_rates=False))
