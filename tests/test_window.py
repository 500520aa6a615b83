"""edged.window: sensor readings -> windows (tumbling, sliding, gaps, per topic)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.config import WindowConfig
from edged.errors import BadInputError
from edged.window import Window, Windower, Windowers, parse_readings

Array = np.ndarray[Any, Any]


def numbered(n: int, start: int = 0) -> Array:
    """Readings whose single column is their sequence number, so windows can be audited."""
    return np.arange(start, start + n, dtype=np.float64).reshape(-1, 1)


def ids(window: Window) -> list[int]:
    return [int(v) for v in window.array[:, 0]]


# --- parsing readings -------------------------------------------------------------------


def test_one_reading_per_message_by_fields() -> None:
    rows = parse_readings(b'{"ax": 0.5, "ay": -1, "az": 2, "t": 17}', ["ax", "ay", "az"],
                          "data")
    np.testing.assert_array_equal(rows, [[0.5, -1.0, 2.0]])


def test_a_burst_of_readings_by_fields() -> None:
    payload = b'[{"ax": 1, "ay": 2}, {"ax": 3, "ay": 4}]'
    np.testing.assert_array_equal(parse_readings(payload, ["ax", "ay"], "data"),
                                  [[1, 2], [3, 4]])


def test_whole_arrays_bare_or_under_the_field() -> None:
    np.testing.assert_array_equal(parse_readings(b"[1, 2, 3]", None, "data"), [[1, 2, 3]])
    np.testing.assert_array_equal(parse_readings(b'{"xyz": [[1, 2], [3, 4]]}', None, "xyz"),
                                  [[1, 2], [3, 4]])


@pytest.mark.parametrize(
    ("payload", "fields", "message"),
    [
        (b'{"ax": 1}', ["ax", "ay"], "no number under 'ay'"),
        (b'{"ax": true, "ay": 1}', ["ax", "ay"], "no number under 'ax'"),
        (b'{"ax": "1", "ay": 1}', ["ax", "ay"], "no number under 'ax'"),
        (b'{"ax": 1e999, "ay": 1}', ["ax", "ay"], "not a finite number"),
        (b"[1, 2]", ["ax"], "must be a JSON object"),
        (b"[]", ["ax"], "empty list"),
        (b"{nope", ["ax"], "not valid JSON"),
        (b"[[[1]]]", None, "one row or a list of rows"),
    ],
)
def test_bad_readings_are_bad_input(payload: bytes, fields: list[str] | None,
                                    message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        parse_readings(payload, fields, "data")


# --- tumbling and sliding ---------------------------------------------------------------


def test_tumbling_windows_take_each_reading_once() -> None:
    w = Windower(size=4, hop=4, columns=1, max_gap_ms=None)
    out = [win for i in range(12) for win in w.push(numbered(1, i), at=i * 0.001)]
    assert [ids(win) for win in out] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert [win.newest_at for win in out] == [0.003, 0.007, 0.011]


def test_sliding_windows_overlap_by_size_minus_hop() -> None:
    w = Windower(size=4, hop=2, columns=1, max_gap_ms=None)
    out = [win for i in range(8) for win in w.push(numbered(1, i), at=float(i))]
    assert [ids(win) for win in out] == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]


def test_one_message_can_complete_several_windows() -> None:
    w = Windower(size=3, hop=1, columns=1, max_gap_ms=None)
    out = w.push(numbered(5), at=1.5)
    assert [ids(win) for win in out] == [[0, 1, 2], [1, 2, 3], [2, 3, 4]]
    assert all(win.newest_at == 1.5 for win in out)


def test_windows_are_copies_not_views_of_the_ring() -> None:
    w = Windower(size=2, hop=1, columns=1, max_gap_ms=None)
    first = w.push(numbered(2), at=0.0)[0]
    w.push(numbered(5, 100), at=0.1)
    assert ids(first) == [0, 1]


def test_columns_are_kept_in_order() -> None:
    w = Windower(size=2, hop=2, columns=3, max_gap_ms=None)
    w.push(np.array([[1.0, 2.0, 3.0]]), at=0.0)
    (win,) = w.push(np.array([[4.0, 5.0, 6.0]]), at=0.001)
    np.testing.assert_array_equal(win.array, [[1, 2, 3], [4, 5, 6]])
    assert win.array.shape == (2, 3)


# --- gaps -------------------------------------------------------------------------------


def test_a_late_reading_starts_the_window_afresh() -> None:
    w = Windower(size=3, hop=1, columns=1, max_gap_ms=50)
    assert w.push(numbered(2), at=0.0) == []
    out = w.push(numbered(1, 2), at=0.051)  # 51 ms after the previous reading
    assert out == [] and w.held == 1 and w.resets == 1
    out = w.push(numbered(2, 3), at=0.09)
    assert [ids(win) for win in out] == [[2, 3, 4]]


def test_a_reading_exactly_at_the_gap_limit_continues() -> None:
    w = Windower(size=2, hop=2, columns=1, max_gap_ms=62.5)  # binary-exact times
    w.push(numbered(1), at=1.0)
    assert [ids(win) for win in w.push(numbered(1, 1), at=1.0625)] == [[0, 1]]
    assert w.resets == 0


# --- refusals ---------------------------------------------------------------------------


def test_wrong_column_count_is_bad_input_and_keeps_the_window() -> None:
    w = Windower(size=2, hop=1, columns=3, max_gap_ms=None)
    w.push(np.zeros((1, 3)), at=0.0)
    with pytest.raises(BadInputError, match=r"readings \[1x2\] do not have 3 columns"):
        w.push(np.zeros((1, 2)), at=0.001)
    with pytest.raises(BadInputError, match="NaN"):
        w.push(np.full((1, 3), np.nan), at=0.002)
    assert w.held == 1


@pytest.mark.parametrize(("size", "hop"), [(4, 5), (4, 0)])
def test_hop_must_fit_the_size(size: int, hop: int) -> None:
    with pytest.raises(ValueError, match=r"hop must be in 1\.\.size"):
        Windower(size, hop, 1, None)


def test_config_refuses_a_hop_over_the_size() -> None:
    with pytest.raises(ValueError, match="hop 5 is over size 4"):
        WindowConfig(size=4, hop=5)
    assert WindowConfig(size=4).hop is None


# --- per topic --------------------------------------------------------------------------


def test_topics_are_windowed_apart() -> None:
    ws = Windowers(size=2, hop=2, columns=1, max_gap_ms=None, max_topics=10)
    assert ws.push("a", numbered(1, 0), at=0.0) == []
    assert ws.push("b", numbered(1, 100), at=0.0) == []
    assert [ids(w) for w in ws.push("a", numbered(1, 1), at=0.001)] == [[0, 1]]
    assert [ids(w) for w in ws.push("b", numbered(1, 101), at=0.001)] == [[100, 101]]
    assert len(ws) == 2


def test_the_least_recently_heard_topic_is_forgotten() -> None:
    ws = Windowers(size=2, hop=2, columns=1, max_gap_ms=None, max_topics=2)
    ws.push("a", numbered(1), at=0.0)
    ws.push("b", numbered(1), at=0.0)
    ws.push("a", numbered(1), at=0.1)  # a is now the most recent
    ws.push("c", numbered(1), at=0.2)  # b goes
    assert ws.forgotten == 1 and len(ws) == 2
    assert ws.push("b", numbered(1), at=0.3) == []  # b starts over
    assert len(ws.push("c", numbered(1), at=0.3)) == 1


def test_windowers_refuse_bad_settings_at_once() -> None:
    with pytest.raises(ValueError, match=r"hop must be in 1\.\.size"):
        Windowers(size=2, hop=3, columns=1, max_gap_ms=None, max_topics=1)


# --- properties -------------------------------------------------------------------------

sizes_and_hops = st.integers(1, 12).flatmap(
    lambda size: st.tuples(st.just(size), st.integers(1, size))
)


@settings(max_examples=300, deadline=None)
@given(sizes_and_hops, st.lists(st.integers(1, 7), min_size=1, max_size=40))
def test_no_reading_is_lost_or_duplicated(size_hop: tuple[int, int], bursts: list[int]) -> None:
    size, hop = size_hop
    w = Windower(size, hop, 1, max_gap_ms=None)
    out: list[list[int]] = []
    n = 0
    for k in bursts:  # messages of any burst length: windows must not care
        out += [ids(win) for win in w.push(numbered(k, n), at=float(n))]
        n += k
    # Window j holds exactly readings j*hop .. j*hop+size-1, in order: nothing skipped,
    # nothing repeated within a window, nothing out of order.
    assert out == [list(range(j * hop, j * hop + size)) for j in range(len(out))]
    assert len(out) == (0 if n < size else (n - size) // hop + 1)
    # In steady state (readings that are not at the stream's ends) every reading sits in
    # exactly size/hop windows when hop divides size.
    if size % hop == 0 and out:
        counts = np.bincount([r for win in out for r in win], minlength=n)
        covered = range(size - hop, len(out) * hop)
        assert all(counts[r] == size // hop for r in covered)


@settings(max_examples=200, deadline=None)
@given(sizes_and_hops, st.lists(st.tuples(st.integers(1, 5), st.booleans()), max_size=40))
def test_windows_never_span_a_gap(size_hop: tuple[int, int],
                                  messages: list[tuple[int, bool]]) -> None:
    size, hop = size_hop
    w = Windower(size, hop, 1, max_gap_ms=10)
    segment_of: dict[int, int] = {}
    segment, n, at = 0, 0, 0.0
    for k, late in messages:
        at += 0.5 if late else 0.005
        segment += 1 if late else 0
        segment_of.update({r: segment for r in range(n, n + k)})
        for win in w.push(numbered(k, n), at=at):
            readings = ids(win)
            assert readings == list(range(readings[0], readings[0] + size))
            assert len({segment_of[r] for r in readings}) == 1
            assert win.newest_at == at
        n += k


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 3), st.lists(st.tuples(st.sampled_from("abcd"), st.booleans()),
                                   max_size=60))
def test_topic_counters_equal_a_recount(max_topics: int,
                                        messages: list[tuple[str, bool]]) -> None:
    # The counters only grow: forgetting a topic must not take its resets back out.
    ws = Windowers(size=3, hop=1, columns=1, max_gap_ms=10, max_topics=max_topics)
    last_heard: dict[str, float] = {}  # topic -> its last reading, least recent first
    gaps = forgotten = 0
    at = 0.0
    for topic, late in messages:
        at += 0.5 if late else 0.001
        if topic in last_heard:
            gaps += at - last_heard.pop(topic) > 0.010
        elif len(last_heard) == max_topics:
            del last_heard[next(iter(last_heard))]
            forgotten += 1
        last_heard[topic] = at
        ws.push(topic, numbered(1), at=at)
        assert (ws.resets, ws.forgotten, len(ws)) == (gaps, forgotten, len(last_heard))
