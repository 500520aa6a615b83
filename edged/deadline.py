"""Deadline arithmetic (pure): when must the answer to a message be out?

Every time here is a ``time.monotonic()`` reading in seconds unless named ``*_wall``
(Unix time) or ``*_ms``. Functions take the clock readings as arguments, so they are
tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

from edged.errors import BadInputError

USER_DEADLINE_MS = "deadline_ms"
"""User property: a relative deadline in ms from receipt."""
USER_DEADLINE_ABS = "deadline"
"""User property: an absolute deadline, Unix epoch ms (publishers with synchronised clocks)."""


@dataclass(slots=True)
class Deadline:
    """An absolute deadline on the monotonic clock, and where it came from."""

    at: float
    budget_ms: float
    source: str

    def remaining_ms(self, now: float) -> float:
        return (self.at - now) * 1000.0

    def passed(self, now: float) -> bool:
        return now > self.at


def _parse_ms(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadInputError(f"user property {name!r} is not a number: {text[:40]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BadInputError(f"user property {name!r} must be finite")
    return value


def resolve(
    *,
    received: float,
    received_wall: float,
    route_ms: float,
    allow_override: bool = False,
    user_ms: str | None = None,
    user_abs_ms: str | None = None,
    expiry_s: int | None = None,
) -> Deadline:
    """The earliest of the route's deadline and the message's own ones.

    A message may shorten its deadline; it may only lengthen it past the route's when the
    route allows it (``allow_override``), and then the message's earliest one wins.
    Raises BadInputError when a user property is not a number.
    """
    # The earliest of the message's own, ties to the name that sorts first (as min() would).
    own: tuple[float, str] | None = None
    if user_ms is not None:
        own = (_parse_ms(USER_DEADLINE_MS, user_ms), "deadline_ms")
    if user_abs_ms is not None:
        absolute = _parse_ms(USER_DEADLINE_ABS, user_abs_ms) - received_wall * 1000.0
        if own is None or absolute <= own[0]:
            own = (absolute, "deadline")
    if expiry_s is not None and (own is None or expiry_s * 1000.0 < own[0]):
        own = (float(expiry_s) * 1000.0, "message_expiry")
    budget, source = route_ms, "route"
    if own is not None and (own[0] < budget or allow_override):
        budget, source = own
    return Deadline(at=received + budget / 1000.0, budget_ms=budget, source=source)
