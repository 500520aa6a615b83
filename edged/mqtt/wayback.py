"""The way back, measured (pure): how long an answer takes from edged through the broker.

An answer that leaves edged in time can still reach its sender late: the broker has to read
it and write it on, and a broker that leaves Nagle's algorithm on (mosquitto's default,
``set_tcp_nodelay false``) holds a small message until the previous one is acknowledged,
which the receiver's delayed ACK can make 40 ms. edged cannot see the sender's side, but it
can see its own: every few seconds it publishes a burst of small probes to a topic of its
own and times their return through the broker. A high percentile of the recent round
trips is the time kept in hand for an answer (``reply_margin_ms`` unset). A burst whose
first probe returns at once and whose later ones return tens of milliseconds later is what
Nagle's algorithm on the broker's side looks like: edged says so, naming the fix.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Any

BURST = 3
NAGLE_GAP_S = 0.020  # the last probe of a burst this much slower than the first one
NAGLE_WINDOW = 30  # bursts remembered for it: the delay shows on a fresh or busy connection,
                  # not on every burst (an idle receiver acknowledges at once)
MAX_TRIP_S = 10.0
_FORMAT = struct.Struct(">IId")  # burst, index in burst, send time (monotonic s)


@dataclass(frozen=True)
class Probe:
    burst: int
    index: int
    sent: float

    def payload(self) -> bytes:
        return _FORMAT.pack(self.burst, self.index, self.sent)


class WayBack:
    """Round trips of the probes: ``margin_s`` is the ``quantile`` of the last ``window``."""

    def __init__(self, interval_s: float = 2.0, window: int = 60, quantile: float = 0.95,
                 initial_s: float = 0.005, lost_after_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._quantile = quantile
        self._trips: deque[float] = deque(maxlen=window)
        self._initial_s = initial_s
        self._margin = initial_s
        self._lost_after_s = lost_after_s
        self._burst = 0
        self._next_at = 0.0
        self._first: dict[int, float] = {}  # burst -> round trip of its first probe
        self._nagle: deque[float] = deque(maxlen=NAGLE_WINDOW)  # held bursts' slowest trip
        self._last_return: float | None = None
        self._started: float | None = None
        self.sent = 0
        self.returned = 0

    def due(self, now: float) -> bool:
        return now >= self._next_at

    def burst(self, now: float) -> list[bytes]:
        """The payloads of the next burst of probes (send them together)."""
        self._burst += 1
        self._next_at = now + self.interval_s
        if self._started is None:
            self._started = now
        self.sent += BURST
        return [Probe(self._burst, i, now).payload() for i in range(BURST)]

    def returned_probe(self, payload: bytes, now: float) -> None:
        try:
            burst, index, sent = _FORMAT.unpack(payload)
        except struct.error:
            return  # not one of ours (someone else published on the probe topic)
        if not 0 <= now - sent < MAX_TRIP_S:
            return  # not a way back but an outage (a frozen broker): the keep-alive's matter
        trip = now - sent
        self.returned += 1
        self._last_return = now
        self._trips.append(trip)
        if index == 0:
            self._first[burst] = trip
            if len(self._first) > 8:
                del self._first[min(self._first)]
        elif index == BURST - 1 and burst in self._first:
            held = trip - self._first.pop(burst) > NAGLE_GAP_S
            self._nagle.append(trip if held else 0.0)
        self._update()

    def margin_s(self) -> float:
        """Time to keep in hand for an answer to get through the broker: a high percentile
        of the recent round trips (one stall of the machine does not refuse work for
        minutes), and while the broker holds small messages back, the longest hold. Read
        for every message: worked out when a probe returns, not here."""
        return self._margin

    def _update(self) -> None:
        if not self._trips:
            self._margin = self._initial_s
            return
        ordered = sorted(self._trips)
        high = ordered[min(len(ordered) - 1, int(self._quantile * len(ordered)))]
        self._margin = max(high, *self._nagle) if self._nagle else high

    @property
    def nagle_suspected(self) -> bool:
        return any(self._nagle)

    def lost(self, now: float) -> bool:
        """No probe has come back for a while (e.g. the broker's ACL refuses the topic)."""
        since = self._last_return if self._last_return is not None else self._started
        return since is not None and now - since > self._lost_after_s

    def connection_lost(self) -> None:
        """Round trips of the old connection say nothing of the new one."""
        self._trips.clear()
        self._first.clear()
        self._margin = self._initial_s
        self._next_at = 0.0
        self._started = self._last_return = None

    def snapshot(self) -> dict[str, Any]:
        trips = sorted(self._trips)
        return {
            "margin_ms": round(self.margin_s() * 1000, 3),
            "round_trip_ms_p50": round(trips[len(trips) // 2] * 1000, 3) if trips else None,
            "round_trip_ms_max": round(trips[-1] * 1000, 3) if trips else None,
            "probes_sent": self.sent,
            "probes_returned": self.returned,
            "broker_nagle_suspected": self.nagle_suspected,
        }
