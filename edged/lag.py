"""How long a message handed to the MQTT client takes to leave it (pure, thread-safe).

A result that edged finishes in time but that then waits in a congested outbound queue
reaches its sender late all the same. The MQTT adapter reports each publish and its
completion here; the pipeline reads ``seconds()`` and treats it as part of every deadline.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_PENDING = 100_000


class OutboundLag:
    """The larger of the recent completed lag (smoothed) and the age of the oldest message
    still waiting: the latter reacts at once when the outbound side stalls."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, smoothing: float = 0.2):
        self._clock = clock
        self._alpha = smoothing
        self._pending: OrderedDict[int, float] = OrderedDict()
        self._smoothed = 0.0
        self._lock = threading.Lock()

    def sent(self, mid: int) -> None:
        with self._lock:
            self._pending[mid] = self._clock()
            if len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)

    def done(self, mid: int) -> None:
        with self._lock:
            started = self._pending.pop(mid, None)
            if started is not None:
                lag = self._clock() - started
                self._smoothed += self._alpha * (lag - self._smoothed)

    def forget(self) -> None:
        """The connection is gone: what was pending will not complete on this one."""
        with self._lock:
            self._pending.clear()
            self._smoothed = 0.0

    def seconds(self) -> float:
        with self._lock:
            oldest = next(iter(self._pending.values()), None)
            waiting = self._clock() - oldest if oldest is not None else 0.0
            return max(self._smoothed, waiting)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)
