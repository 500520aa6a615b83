"""What to refuse and why (pure): one decision, made when a message arrives and again when a
worker picks it up.

Every time is a ``time.monotonic()`` reading in seconds. ``hold_s`` is the time an answer
needs after it is ready to reach its sender (the outbound queue and the broker's way back);
a result ready later than ``deadline - hold_s`` reaches its sender late, so work that cannot
be ready before then is not started.
"""

from __future__ import annotations

from dataclasses import dataclass

from edged.deadline import Deadline
from edged.estimate import expected_finish


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    """``expired``, ``deadline`` (would finish too late) or ``queue_full``."""
    text: str


def _verdict(now: float, due: Deadline, finish: float, hold_s: float) -> str | None:
    if now > due.at:  # due.passed(now), written out: every message passes here
        return "expired"
    if finish > due.at - hold_s:
        return "deadline"
    return None


class StandingQueue:
    """CoDel's test of a bad queue: the wait has stayed over its target for a whole
    interval. A burst that drains within the interval is a good queue and is let in; a queue
    that stays long under sustained overload only makes every answer hug its deadline.

    As in CoDel, a queue found standing is remembered for an interval after the wait was
    last over its target: under sustained overload the wait dips under the target for a
    moment and is back over it, and a fresh interval of grace each time would let the queue
    grow back to the deadline, so the wait would hover near the deadline, not the target."""

    def __init__(self) -> None:
        self._over_since: float | None = None
        self._standing_until = float("-inf")

    def standing(self, now: float, wait_s: float, target_s: float, interval_s: float) -> bool:
        if wait_s <= target_s:
            self._over_since = None
            return False
        if self._over_since is None:
            # Back over the target soon after a standing queue: the same overload.
            self._over_since = now - interval_s if now < self._standing_until else now
        if now - self._over_since >= interval_s:
            self._standing_until = now + interval_s
            return True
        return False


def at_arrival(now: float, due: Deadline, *, ahead: int, workers: int, busy: int,
               service_s: float, hold_s: float,
               queue: tuple[StandingQueue, float, float] | None = None) -> Refusal | None:
    """Refuse a message that has expired, or that would not be ready in time behind the
    ``ahead`` queued before it, or (``queue``: the route's queue state, wait target and
    interval in s) that would join a standing queue; None: queue it."""
    finish = expected_finish(now, ahead, workers, busy, service_s)
    verdict = _verdict(now, due, finish, hold_s)
    if verdict == "expired":
        return Refusal(verdict, f"deadline of {due.budget_ms:.0f} ms had passed on arrival")
    if verdict == "deadline":
        return Refusal(verdict, f"cannot finish within {due.budget_ms:.0f} ms: {ahead} queued "
                                f"ahead, service time ~{service_s * 1000:.2f} ms; not queued")
    if queue is not None:
        state, target_s, interval_s = queue
        wait = finish - service_s - now
        if ahead and state.standing(now, wait, target_s, interval_s):
            return Refusal("queue_full", f"{ahead} queued ahead would wait ~{wait * 1000:.1f} "
                                         f"ms, over the queue target of {target_s * 1000:.1f} "
                                         f"ms for {interval_s * 1000:.0f} ms; not queued")
    return None


def at_pickup(now: float, due: Deadline, *, queued_ms: float, service_s: float,
              hold_s: float) -> Refusal | None:
    """Refuse to start a message that has expired or can no longer be ready in time."""
    verdict = _verdict(now, due, now + service_s, hold_s)
    if verdict is None:
        return None
    why = "passed" if verdict == "expired" else "could no longer be met"
    return Refusal(verdict, f"deadline of {due.budget_ms:.0f} ms {why} after {queued_ms:.1f} ms "
                            "in the queue; not run")
