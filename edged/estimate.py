"""A running estimate of a model's service time per worker (pure logic, thread-safe).

Admission asks it whether a message can still finish in time; it answers with a high
percentile of the recent service times, so a typical slow run is budgeted for.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class ServiceTimeEstimate:
    """The ``quantile`` of the last ``window`` service times, in seconds."""

    def __init__(self, initial_s: float, window: int = 256, quantile: float = 0.9,
                 refresh_every: int = 16, clock: Callable[[], float] = time.monotonic,
                 stale_after_s: float = 2.0) -> None:
        if not 0.0 < quantile <= 1.0:
            raise ValueError("quantile must be in (0, 1]")
        self._samples: deque[float] = deque(maxlen=window)
        self._quantile = quantile
        self._refresh_every = refresh_every
        self._since_refresh = 0
        self.seconds = initial_s
        """The estimate, read for every message (a float read whole: no lock)."""
        self._lock = threading.Lock()
        self._clock = clock
        self._stale_after_s = stale_after_s
        self._last_sample_at = clock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._last_sample_at = self._clock()
            self._samples.append(seconds)
            self._since_refresh += 1
            # Sorting the window on every sample would put a sort on the hot path.
            if self._since_refresh >= self._refresh_every or len(self._samples) < 8:
                self._since_refresh = 0
                ordered = sorted(self._samples)
                rank = max(0, math.ceil(self._quantile * len(ordered)) - 1)
                self.seconds = ordered[rank]

    def probe_due(self) -> bool:
        """True when nothing has run for a while. Everything refused on the estimate's word
        means no new samples, so a too-high estimate (a slow first invoke, a past stall)
        would refuse forever: then one message runs anyway, and the estimate starts afresh
        from what it measures. Its result is still suppressed if it ends up late."""
        with self._lock:
            if self._clock() - self._last_sample_at < self._stale_after_s:
                return False
            self._last_sample_at = self._clock()  # one probe per period
            self._samples.clear()
            self._since_refresh = 0
            return True

    def reset(self) -> None:
        """Forget the samples (keeping the current value until new ones arrive)."""
        with self._lock:
            self._samples.clear()
            self._since_refresh = 0


def expected_finish(now: float, ahead: int, workers: int, busy: int, service_s: float) -> float:
    """When an item with ``ahead`` items queued before it would finish.

    The items ahead are shared among the workers; if every worker is busy, the item also
    waits for a running one to finish (on average half a service time).
    """
    wait = (ahead / workers) * service_s
    if busy >= workers:
        wait += service_s / 2
    return now + wait + service_s
