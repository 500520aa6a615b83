"""edged.streaming: windows over the rows a stage produces, and the order of a topic's work."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.streaming import RowWindow, StreamOrderError, TopicStages

Array = np.ndarray[Any, Any]


def numbered(start: int, n: int) -> Array:
    return np.arange(start, start + n, dtype=np.float32).reshape(-1, 1)


def naive_windows(total: int, size: int, hop: int, fill: float | None) -> list[list[float]]:
    """The windows a stream of rows 0..total-1 should give, written out the slow way."""
    padded = [fill] * size + list(range(total)) if fill is not None else list(range(total))
    start = size if fill is not None else 0
    first_end = start + (hop if fill is not None else size)
    return [[float(v) for v in padded[end - size:end]]
            for end in range(first_end, len(padded) + 1, hop)]


@given(size=st.integers(1, 40), data=st.data(), fill=st.sampled_from([None, -1.0]))
def test_windows_are_the_same_whatever_the_chunking(size: int, data: st.DataObject,
                                                    fill: float | None) -> None:
    hop = data.draw(st.integers(1, size))
    chunks = data.draw(st.lists(st.integers(1, 3 * size), min_size=1, max_size=30))
    window = RowWindow(size, hop, 1, fill)
    got, at = [], 0
    for n in chunks:
        got += [w[:, 0].tolist() for w in window.push(numbered(at, n))]
        at += n
    assert got == naive_windows(at, size, hop, fill)


def test_openwakeword_alignment_mel_frames_windows_end_on_every_hop() -> None:
    # 76 frames, hop 8, starting full of ones: the first window comes after 8 frames and
    # ends with them, as openWakeWord's melspectrogram buffer does.
    window = RowWindow(76, 8, 32, fill=1.0)
    out = window.push(np.full((8, 32), 5.0, dtype=np.float32))
    assert len(out) == 1
    assert (out[0][:68] == 1.0).all() and (out[0][68:] == 5.0).all()
    assert window.push(np.zeros((7, 32), dtype=np.float32)) == []
    assert len(window.push(np.zeros((1, 32), dtype=np.float32))) == 1


def test_reset_forgets_rows_and_counts_pending() -> None:
    window = RowWindow(4, 2, 1)
    assert window.push(numbered(0, 3)) == [] and window.pending == 3
    window.reset()
    assert window.pending == 0
    assert [w[:, 0].tolist() for w in window.push(numbered(10, 4))] == [[10, 11, 12, 13]]


def test_rows_of_the_wrong_width_are_refused() -> None:
    with pytest.raises(ValueError, match=r"not \[k, 2\]"):
        RowWindow(4, 2, 2).push(numbered(0, 3))
    with pytest.raises(ValueError, match="hop must be in"):
        RowWindow(4, 5, 1)


# --- order of a topic's windows ----------------------------------------------------------


def run_in_turn(state: TopicStages, seq: int, log: list[int], wait_s: float = 2.0) -> None:
    with state.turn:
        state.await_turn(seq, wait_s)
        log.append(seq)
        state.done(seq)


def test_a_window_waits_for_the_one_before_it() -> None:
    state = TopicStages([])
    log: list[int] = []
    later = threading.Thread(target=run_in_turn, args=(state, 1, log))
    later.start()
    time.sleep(0.05)
    assert log == []  # window 1 is waiting for window 0
    run_in_turn(state, 0, log)
    later.join(2)
    assert log == [0, 1]


def test_a_skipped_window_restarts_the_stages_and_lets_the_next_run() -> None:
    state = TopicStages([])
    log: list[int] = []
    run_in_turn(state, 0, log)
    state.skip(1)
    run_in_turn(state, 2, log, wait_s=0.0)
    assert log == [0, 2] and state.restarts == 1


def test_a_window_that_never_comes_is_given_up_on_after_the_wait() -> None:
    state = TopicStages([])
    log: list[int] = []
    began = time.monotonic()
    run_in_turn(state, 3, log, wait_s=0.05)
    assert log == [3] and state.restarts == 1 and time.monotonic() - began >= 0.05
    with pytest.raises(StreamOrderError, match="came after window 3"):
        run_in_turn(state, 2, log)


def test_a_restart_takes_effect_at_its_own_window_not_before() -> None:
    state = TopicStages([])
    state.restart_at.add(2)
    log: list[int] = []
    run_in_turn(state, 0, log)
    run_in_turn(state, 1, log)
    assert state.restarts == 0
    run_in_turn(state, 2, log)
    assert state.restarts == 1
