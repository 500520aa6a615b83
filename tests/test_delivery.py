"""The publish tracker's outbound lag, with a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.delivery import Pending, Tracker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pending(clock: Clock, qos: int = 0) -> Pending:
    return Pending("t", qos, sent_at=clock.now)


def test_no_traffic_no_lag() -> None:
    assert Tracker(Clock()).lag() == 0.0


def test_the_oldest_waiting_publish_sets_the_lag_at_once() -> None:
    clock = Clock()
    tracker = Tracker(clock)
    tracker.sent(1, pending(clock))
    clock.now += 0.5
    tracker.sent(2, pending(clock))
    assert tracker.lag() == pytest.approx(0.5)
    tracker.acked(1)  # took 0.5 s: the smoothed lag moves a fifth of the way
    assert tracker.lag() == pytest.approx(0.1)


def test_completed_lag_is_smoothed_and_forgotten_with_the_connection() -> None:
    clock = Clock()
    tracker = Tracker(clock)
    for mid in range(3):
        tracker.sent(mid, pending(clock, qos=1))
        clock.now += 0.010
        tracker.acked(mid)
    assert tracker.lag() == pytest.approx(0.010 * (1 - 0.8**3))
    tracker.sent(9, pending(clock, qos=1))
    clock.now += 2.0
    assert tracker.lag() == pytest.approx(2.0)
    tracker.connection_lost()  # the QoS 1 publish stays pending, but the smoothing restarts
    assert tracker.outstanding() == 1


def test_an_acknowledgement_before_the_record_is_matched_later() -> None:
    clock = Clock()
    tracker = Tracker(clock)
    assert tracker.acked(5) is None
    assert tracker.sent(5, pending(clock)) is True  # already delivered: nothing waits
    clock.now += 10
    assert tracker.lag() == 0.0


def test_a_qos0_record_that_never_completes_stops_counting_after_the_horizon() -> None:
    clock = Clock()
    tracker = Tracker(clock)
    tracker.sent(1, pending(clock))  # its completion was lost with a connection
    clock.now += 31.0
    assert tracker.lag() == 0.0


def test_qos1_records_kept_over_an_outage_count_from_the_reconnect() -> None:
    clock = Clock()
    tracker = Tracker(clock)
    tracker.sent(1, pending(clock, qos=1))
    clock.now += 60.0  # the broker was away for a minute
    tracker.connection_lost()
    assert tracker.lag() == 0.0
    clock.now += 0.2
    assert tracker.lag() == pytest.approx(0.2)


def test_an_old_unmatched_acknowledgement_does_not_match_a_later_publish() -> None:
    clock = Clock()
    tracker = Tracker(clock)
    tracker.acked(7)  # e.g. the PUBACK of an untracked status publish
    clock.now += 60.0  # message ids have wrapped since
    assert tracker.sent(7, pending(clock, qos=1)) is False
    assert tracker.outstanding() == 1


events = st.lists(st.one_of(
    st.tuples(st.just("sent"), st.integers(1, 6), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("acked"), st.integers(1, 6), st.just(0), st.just(False)),
    st.tuples(st.just("lost"), st.just(0), st.just(0), st.just(False)),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(events)
def test_outstanding_counts_equal_a_recount(steps: list[tuple[str, int, int, bool]]) -> None:
    clock = Clock()
    tracker = Tracker(clock)
    pending: dict[int, tuple[int, bool]] = {}  # mid -> (qos, delivers an outbox entry)
    early: set[int] = set()  # acknowledgements that came before their record
    for op, mid, qos, entry in steps:
        clock.now += 0.01
        if op == "sent" and mid not in pending:  # paho never reuses an id in flight
            record = Pending("t", qos, entry_id=mid if entry else None, sent_at=clock.now)
            assert tracker.sent(mid, record) is (mid in early)
            if mid in early:
                early.discard(mid)
            else:
                pending[mid] = (qos, entry)
        elif op == "acked":
            assert (tracker.acked(mid) is not None) is (mid in pending)
            if pending.pop(mid, None) is None:
                early.add(mid)
        elif op == "lost":
            tracker.connection_lost()
            pending = {m: p for m, p in pending.items() if p[0] > 0}
            early.clear()
        assert tracker.outstanding() == sum(1 for q, _ in pending.values() if q > 0)
        assert tracker.in_flight_entries() == sum(1 for _, e in pending.values() if e)
