"""Reconnect delays (pure): capped exponential backoff with jitter.

A plain doubling of a fixed delay with no jitter (paho's ``reconnect_delay_set``) would
bring a fleet of boxes that lost the same broker back all in the same instant. edged's
reconnect loop uses this policy instead ("full jitter": a uniform draw below the capped
exponential, never under a small floor so a refusing broker is not hammered).
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """The wait before each reconnect attempt; ``reset`` once a connection is accepted."""

    def __init__(self, min_s: float, max_s: float, factor: float = 2.0,
                 rand: Callable[[], float] = random.random) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError("need 0 < min_s <= max_s")
        self.min_s, self.max_s, self.factor = min_s, max_s, factor
        self._rand = rand
        self.attempts = 0

    def ceiling(self) -> float:
        """The cap for the next attempt: min_s * factor**attempts, at most max_s."""
        # Bound the exponent first: factor**attempts overflows after a long outage.
        exponent = min(self.attempts, 64)
        return float(min(self.max_s, self.min_s * self.factor**exponent))

    def next(self) -> float:
        """The next wait in seconds: uniform in [min_s / 2, ceiling]."""
        ceiling = self.ceiling()
        self.attempts += 1
        floor = self.min_s / 2
        return floor + (ceiling - floor) * self._rand()

    def reset(self) -> None:
        self.attempts = 0
