"""The admission decision's queue test (pure: times are arguments)."""

from __future__ import annotations

from edged.admission import StandingQueue

TARGET, INTERVAL = 0.050, 0.100


def test_a_burst_shorter_than_the_interval_is_let_in() -> None:
    q = StandingQueue()
    assert not q.standing(0.00, 0.080, TARGET, INTERVAL)
    assert not q.standing(0.05, 0.090, TARGET, INTERVAL)
    assert not q.standing(0.08, 0.030, TARGET, INTERVAL)  # drained: a good queue
    assert not q.standing(0.15, 0.080, TARGET, INTERVAL)  # a new burst, a new interval


def test_a_queue_over_its_target_for_an_interval_is_standing() -> None:
    q = StandingQueue()
    assert not q.standing(0.00, 0.080, TARGET, INTERVAL)
    assert q.standing(0.10, 0.080, TARGET, INTERVAL)


def test_back_over_the_target_soon_after_a_standing_queue_is_still_standing() -> None:
    """Sustained overload: the wait dips under the target and is straight back over it.
    Without memory each dip would buy another interval of admissions, and the queue would
    grow back to the deadline."""
    q = StandingQueue()
    q.standing(0.00, 0.080, TARGET, INTERVAL)
    assert q.standing(0.10, 0.080, TARGET, INTERVAL)
    assert not q.standing(0.12, 0.049, TARGET, INTERVAL)
    assert q.standing(0.13, 0.051, TARGET, INTERVAL)
    # An interval after the queue was last found standing, a burst is a burst again.
    assert not q.standing(0.13 + 0.05, 0.040, TARGET, INTERVAL)
    assert not q.standing(0.13 + INTERVAL + 0.01, 0.080, TARGET, INTERVAL)
