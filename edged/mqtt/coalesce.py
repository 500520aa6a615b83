"""Read coalescing (pure): at high message rates, one wake-up of the MQTT thread serves
several messages instead of one each, as a network card's interrupt moderation does.

A wake-up costs the thread as much as the work of a small model's message (the scheduler,
``poll``, ``recv`` and cold caches: about 40 us here, several times that on a Raspberry Pi).
When messages come faster than one per ``window``, the socket's low-water mark
(``SO_RCVLOWAT``) is set to the bytes that about that many messages take, and ``poll`` waits
at most ``window`` for them: no message waits longer than ``window`` unread, and at low rates
nothing changes (the mark stays at one byte, and every message is read as it comes).
"""

from __future__ import annotations

INTERVAL_S = 0.05  # how often the arrival rate is worked out
MIN_MESSAGES = 2  # fewer expected in a window: nothing to gain, read each as it comes
MAX_BYTES = 64 * 1024  # well under the socket's receive buffer, or poll would never wake


class Coalescer:
    """The low-water mark for the next ``poll``, from the recent arrival rate and size."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._since = 0.0
        self._messages = 0
        self._bytes = 0
        self._rate = 0.0  # messages per second, smoothed
        self._size = 0.0  # bytes per message, smoothed
        self._mark = 1

    def observe(self, now: float, messages: int, nbytes: int) -> None:
        """A pass of the loop read ``messages`` packets in ``nbytes`` bytes."""
        self._messages += messages
        self._bytes += nbytes
        elapsed = now - self._since
        if elapsed < INTERVAL_S:
            return
        if elapsed > 4 * INTERVAL_S:  # idle for a while: the old rate says nothing
            self._rate = self._messages / elapsed
        else:
            self._rate = 0.5 * self._rate + 0.5 * self._messages / elapsed
        if self._messages:
            self._size = 0.5 * self._size + 0.5 * self._bytes / self._messages
        self._since, self._messages, self._bytes = now, 0, 0
        expected = int(self._rate * self.window_s)
        self._mark = (min(MAX_BYTES, int(expected * self._size))
                      if expected >= MIN_MESSAGES and self._size * MIN_MESSAGES <= MAX_BYTES
                      else 1)

    def low_water(self) -> int:
        """Bytes to wait for before reading (1: read whatever comes, as it comes)."""
        return self._mark

    def timeout_ms(self, idle_ms: float) -> float:
        """How long the next ``poll`` may wait: ``window`` while coalescing, else
        ``idle_ms``."""
        return self.window_s * 1000 if self._mark > 1 else idle_ms
