"""The publish tracker: QoS 1/2 publishes awaiting acknowledgement, and what becomes of them
when the connection or edged stops."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edged.delivery import Pending, Tracker
from edged.types import Outbound


def test_an_acknowledgement_returns_and_forgets_its_record() -> None:
    tracker = Tracker()
    message = Outbound("a", b"x", qos=1)
    tracker.sent(1, Pending(message, 1))
    tracker.sent(2, Pending(Outbound("b", b""), 1, entry_id=7))
    assert tracker.outstanding() == 2 and tracker.in_flight_entries() == 1
    assert tracker.acked(1) == Pending(message, 1)
    assert tracker.acked(1) is None  # a second PUBACK for the same id: nothing to do
    assert tracker.acked(99) is None  # an id edged never sent
    assert tracker.has(2) and not tracker.has(1)


def test_take_all_gives_the_direct_messages_and_the_outbox_entries() -> None:
    tracker = Tracker()
    message = Outbound("a", b"x", qos=1)
    tracker.sent(1, Pending(message, 1))
    tracker.sent(2, Pending(Outbound("b", b""), 1, entry_id=7))
    assert tracker.take_all() == ([message], [7])
    assert tracker.outstanding() == 0 and tracker.in_flight_entries() == 0


@given(st.lists(st.tuples(st.sampled_from(["sent", "acked", "take"]),
                          st.integers(1, 8), st.booleans())))
def test_counters_equal_a_recount_after_any_sequence(
    steps: list[tuple[str, int, bool]],
) -> None:
    tracker = Tracker()
    records: dict[int, Pending] = {}
    for op, mid, from_outbox in steps:
        if op == "sent":
            record = Pending(Outbound("t", b""), 1, entry_id=mid if from_outbox else None)
            tracker.sent(mid, record)
            records[mid] = record
        elif op == "acked":
            assert tracker.acked(mid) == records.pop(mid, None)
        else:
            tracker.take_all()
            records.clear()
        assert tracker.outstanding() == len(records)
        assert tracker.in_flight_entries() == sum(
            r.entry_id is not None for r in records.values())
