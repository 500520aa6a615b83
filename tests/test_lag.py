"""The outbound-lag tracker, with a fake clock."""

from __future__ import annotations

import pytest

from edged.lag import OutboundLag


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_traffic_no_lag() -> None:
    assert OutboundLag(Clock()).seconds() == 0.0


def test_the_oldest_waiting_message_sets_the_lag_at_once() -> None:
    clock = Clock()
    lag = OutboundLag(clock)
    lag.sent(1)
    clock.now += 0.5
    lag.sent(2)
    assert lag.seconds() == pytest.approx(0.5)
    lag.done(1)
    assert lag.seconds() == pytest.approx(0.1)  # smoothed: 0.2 * 0.5; message 2 just sent


def test_completed_lag_is_smoothed() -> None:
    clock = Clock()
    lag = OutboundLag(clock, smoothing=0.5)
    for mid in range(3):
        lag.sent(mid)
        clock.now += 0.010
        lag.done(mid)
    assert lag.seconds() == pytest.approx(0.010 * (1 - 0.5**3))
    assert lag.pending == 0


def test_unknown_completions_are_ignored_and_forget_clears() -> None:
    clock = Clock()
    lag = OutboundLag(clock)
    lag.done(42)
    lag.sent(1)
    clock.now += 3.0
    assert lag.seconds() == pytest.approx(3.0)
    lag.forget()
    assert lag.seconds() == 0.0 and lag.pending == 0
