"""Read coalescing: the socket's low-water mark follows the arrival rate, so a lone message
is read as it comes and a fast stream is read a few messages per wake-up."""

from __future__ import annotations

from edged.mqtt.coalesce import INTERVAL_S, MAX_BYTES, Coalescer


def feed(c: Coalescer, start: float, rate: float, size: int, seconds: float) -> float:
    """Messages at ``rate`` of ``size`` bytes, one pass each, for ``seconds``; the end time."""
    n = int(rate * seconds)
    for i in range(n):
        c.observe(start + i / rate, 1, size)
    return start + n / rate


def test_a_slow_stream_is_read_message_by_message() -> None:
    c = Coalescer(0.001)
    feed(c, 0.0, 1000.0, 6000, 1.0)  # one message a millisecond: nothing to gather
    assert c.low_water() == 1
    assert c.timeout_ms(100.0) == 100.0


def test_a_fast_stream_waits_for_the_bytes_of_its_window() -> None:
    c = Coalescer(0.001)
    feed(c, 0.0, 8000.0, 6000, 1.0)  # eight messages a millisecond
    assert 6 * 6000 <= c.low_water() <= 8 * 6000
    assert c.timeout_ms(100.0) == 1.0  # no message waits longer than the window


def test_the_mark_falls_back_when_the_stream_stops() -> None:
    c = Coalescer(0.001)
    end = feed(c, 0.0, 8000.0, 600, 1.0)
    assert c.low_water() > 1
    # Idle: each poll times out after the window and the loop reports an empty pass.
    for i in range(1, 20):
        c.observe(end + i * INTERVAL_S, 0, 0)
    assert c.low_water() == 1


def test_large_frames_and_a_zero_window_are_never_held() -> None:
    big = Coalescer(0.001)
    feed(big, 0.0, 4000.0, 150_000, 0.5)  # camera frames: each is a batch of its own
    assert big.low_water() == 1
    off = Coalescer(0.0)
    feed(off, 0.0, 20000.0, 100, 0.5)
    assert off.low_water() == 1


def test_the_mark_stays_under_the_cap() -> None:
    c = Coalescer(0.05)
    feed(c, 0.0, 20000.0, 3000, 0.5)
    assert c.low_water() == MAX_BYTES
