"""Sensor readings -> windows (pure, clock-free): one model input from many messages.

A microcontroller publishes one reading (or a short burst) per message; a model wants
``size`` consecutive readings. A :class:`Windower` per source topic collects them and hands
out a window each time ``hop`` new readings complete one: ``hop == size`` tumbles (every
reading in one window), ``hop < size`` slides (every reading in ``size / hop`` windows).
The caller passes each message's receive time; a reading later than ``max_gap_ms`` after
the previous one starts the window afresh, because readings either side of a gap are not
consecutive samples any more. :class:`Windowers` keeps one per topic.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edged.codec import decode_json
from edged.errors import BadInputError

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Window:
    """``size`` consecutive readings [size, columns], oldest first, and the receive time of
    the message that completed it: the window's deadline counts from there."""

    array: Array
    newest_at: float


def parse_readings(payload: bytes, fields: Sequence[str] | None, field: str) -> Array:
    """One message -> readings [k, columns] (float64).

    With ``fields``: a JSON object (one reading) or a list of objects (a burst), each
    holding a number under every field. Without: an array of readings, bare or under
    ``field``: ``[ax, ay, az]`` is one reading, ``[[...], [...]]`` several.
    """
    if fields is None:
        array = decode_json(payload, field)
        if array.ndim == 1:
            return array.reshape(1, -1)
        if array.ndim == 2:
            return array
        raise BadInputError(f"readings must be one row or a list of rows, not {array.ndim}-D")
    try:
        value = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadInputError(f"not valid JSON: {str(exc)[:200]}") from None
    items = value if isinstance(value, list) else [value]
    if not items:
        raise BadInputError("an empty list holds no readings")
    return np.array([_reading(item, fields) for item in items], dtype=np.float64)


def _reading(item: Any, fields: Sequence[str]) -> list[float]:
    if not isinstance(item, dict):
        raise BadInputError(f"a reading must be a JSON object with {', '.join(fields)}")
    row = []
    for name in fields:
        value = item.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadInputError(f"reading has no number under {name!r}")
        if not math.isfinite(value):
            raise BadInputError(f"reading {name!r} is not a finite number")
        row.append(float(value))
    return row


class Windower:
    """Readings of one source topic -> windows. Not thread-safe: :class:`Windowers` locks."""

    def __init__(self, size: int, hop: int, columns: int, max_gap_ms: float | None) -> None:
        if not 1 <= hop <= size:
            raise ValueError(f"hop must be in 1..size ({size}), got {hop}")
        self.size = size
        self.hop = hop
        self.columns = columns
        self.max_gap_s = None if max_gap_ms is None else max_gap_ms / 1000.0
        self.resets = 0
        """How many times a gap started the window afresh (for stats)."""
        self._ring = np.zeros((size, columns), dtype=np.float64)
        self._next = 0  # where the next reading goes in the ring
        self._filled = 0  # readings held, up to size
        self._due = size  # readings still needed before the next window
        self._last_at: float | None = None

    def push(self, readings: Array, at: float) -> list[Window]:
        """Add the readings of one message received at ``at`` (seconds, any monotonic
        clock); return the windows they complete, oldest first."""
        rows = np.asarray(readings, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.columns:
            got = "x".join(str(d) for d in rows.shape)
            raise BadInputError(f"readings [{got}] do not have {self.columns} columns")
        if not np.all(np.isfinite(rows)):
            raise BadInputError("readings hold NaN or infinite values")
        if self._gap(at):
            self.reset()
            self.resets += 1
        self._last_at = at
        windows = []
        for row in rows:
            self._ring[self._next] = row
            self._next = (self._next + 1) % self.size
            self._filled = min(self._filled + 1, self.size)
            self._due -= 1
            if self._due == 0:
                windows.append(Window(self._ordered(), at))
                self._due = self.hop
        return windows

    def reset(self) -> None:
        """Forget every reading held: the next window needs ``size`` new ones."""
        self._next = 0
        self._filled = 0
        self._due = self.size

    @property
    def held(self) -> int:
        """Readings held towards the next window."""
        return self._filled

    def _gap(self, at: float) -> bool:
        if self.max_gap_s is None or self._last_at is None:
            return False
        return at - self._last_at > self.max_gap_s

    def _ordered(self) -> Array:
        # The ring is full whenever a window is due; oldest reading sits at _next.
        return np.concatenate((self._ring[self._next :], self._ring[: self._next]))


class Windowers:
    """One :class:`Windower` per source topic, bounded: a wildcard subscription must not
    grow memory without end, so the topic heard from least recently is forgotten.
    Thread-safe: MQTT callbacks and workers may push from different threads."""

    def __init__(
        self, size: int, hop: int, columns: int, max_gap_ms: float | None, max_topics: int
    ) -> None:
        Windower(size, hop, columns, max_gap_ms)  # fail now, not on the first message
        self._args = (size, hop, columns, max_gap_ms)
        self._max_topics = max_topics
        self._by_topic: OrderedDict[str, Windower] = OrderedDict()
        self._lock = threading.Lock()
        self.forgotten = 0
        """Topics dropped to stay within max_topics (for stats)."""
        self._resets_of_forgotten = 0  # a forgotten topic's resets still happened

    def push(self, topic: str, readings: Array, at: float) -> list[Window]:
        """Add one message's readings from ``topic``; return the windows they complete."""
        with self._lock:
            windower = self._by_topic.get(topic)
            if windower is None:
                windower = Windower(*self._args)
                self._by_topic[topic] = windower
                if len(self._by_topic) > self._max_topics:
                    _, dropped = self._by_topic.popitem(last=False)
                    self._resets_of_forgotten += dropped.resets
                    self.forgotten += 1
            else:
                self._by_topic.move_to_end(topic)
            return windower.push(readings, at)

    @property
    def resets(self) -> int:
        """Gaps that started a window afresh, on every topic ever heard: a total that only
        grows, including the topics forgotten since."""
        with self._lock:
            return self._resets_of_forgotten + sum(w.resets for w in self._by_topic.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_topic)
