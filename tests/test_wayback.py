"""The way back: round trips of edged's probes through the broker, and what they tell."""

from __future__ import annotations

import pytest

from edged.mqtt.wayback import BURST, WayBack


def returned(wayback: WayBack, payloads: list[bytes], now: float, trips: list[float]) -> None:
    for payload, trip in zip(payloads, trips, strict=True):
        wayback.returned_probe(payload, now + trip)


def test_the_margin_is_the_slowest_recent_round_trip() -> None:
    wayback = WayBack(interval_s=2.0, window=4, initial_s=0.005)
    assert wayback.margin_s() == 0.005  # nothing measured yet: the initial guess
    now = 100.0
    assert wayback.due(now)
    returned(wayback, wayback.burst(now), now, [0.0004, 0.0006, 0.0005])
    assert not wayback.due(now + 1.0) and wayback.due(now + 2.0)
    assert wayback.margin_s() == pytest.approx(0.0006)
    for i in range(2):  # the window forgets the older, slower trips
        t = now + 2.0 * (i + 1)
        returned(wayback, wayback.burst(t), t, [0.0002, 0.0002, 0.0002])
    assert wayback.margin_s() == pytest.approx(0.0002)
    assert not wayback.nagle_suspected


def test_later_probes_of_a_burst_held_back_look_like_nagle() -> None:
    wayback = WayBack()
    for i in range(3):
        now = 10.0 * (i + 1)
        # the broker writes the first at once and holds the others until it gets an ACK
        returned(wayback, wayback.burst(now), now, [0.0005, 0.040, 0.041])
    assert wayback.nagle_suspected
    assert wayback.margin_s() == pytest.approx(0.041)
    assert wayback.snapshot()["broker_nagle_suspected"] is True


def test_probes_that_never_return_are_noticed() -> None:
    wayback = WayBack(lost_after_s=10.0)
    wayback.burst(0.0)
    assert not wayback.lost(5.0)
    assert wayback.lost(11.0)
    assert wayback.margin_s() == wayback._initial_s


def test_a_foreign_payload_on_the_probe_topic_is_ignored() -> None:
    wayback = WayBack()
    wayback.returned_probe(b"hello", 1.0)
    assert wayback.returned == 0
    assert len(wayback.burst(0.0)) == BURST


def test_a_new_connection_starts_afresh() -> None:
    wayback = WayBack()
    returned(wayback, wayback.burst(0.0), 0.0, [0.030, 0.030, 0.030])
    wayback.connection_lost()
    assert wayback.due(0.1)
    assert wayback.margin_s() == wayback._initial_s
