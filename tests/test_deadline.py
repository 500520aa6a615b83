"""edged.deadline: when must the answer to a message be out? Clocks are passed in."""

from __future__ import annotations

import pytest

from edged.deadline import Deadline, resolve
from edged.errors import BadInputError

RECEIVED = 1000.0  # monotonic seconds
WALL = 1_700_000_000.0  # Unix seconds at the same instant
WALL_MS = WALL * 1000


def test_route_deadline_alone() -> None:
    due = resolve(received=RECEIVED, received_wall=WALL, route_ms=250)
    assert due == Deadline(at=1000.25, budget_ms=250, source="route")


def test_user_deadline_ms_shortens() -> None:
    due = resolve(received=RECEIVED, received_wall=WALL, route_ms=1000, user_ms="40")
    assert (due.budget_ms, due.source) == (40.0, "deadline_ms")
    assert due.at == pytest.approx(1000.04)


def test_user_deadline_ms_cannot_extend_without_override() -> None:
    due = resolve(received=RECEIVED, received_wall=WALL, route_ms=1000, user_ms="5000")
    assert (due.budget_ms, due.source) == (1000, "route")
    assert due.at == pytest.approx(1001.0)


def test_user_deadline_ms_extends_when_the_route_allows_override() -> None:
    due = resolve(
        received=RECEIVED, received_wall=WALL, route_ms=1000, user_ms="5000", allow_override=True
    )
    assert (due.budget_ms, due.source) == (5000.0, "deadline_ms")
    assert due.at == pytest.approx(1005.0)


def test_override_still_lets_a_message_shorten() -> None:
    due = resolve(
        received=RECEIVED, received_wall=WALL, route_ms=1000, user_ms="10", allow_override=True
    )
    assert due.budget_ms == 10.0


def test_absolute_deadline_in_epoch_ms() -> None:
    due = resolve(
        received=RECEIVED, received_wall=WALL, route_ms=1000, user_abs_ms=str(WALL_MS + 300)
    )
    assert due.source == "deadline"
    assert due.budget_ms == pytest.approx(300.0)
    assert due.at == pytest.approx(1000.3)


def test_absolute_deadline_already_past_gives_a_passed_deadline() -> None:
    due = resolve(
        received=RECEIVED, received_wall=WALL, route_ms=1000, user_abs_ms=str(WALL_MS - 50)
    )
    assert due.budget_ms == pytest.approx(-50.0)
    assert due.passed(RECEIVED)


def test_absolute_deadline_cannot_extend_without_override() -> None:
    later = str(WALL_MS + 60_000)
    assert resolve(received=RECEIVED, received_wall=WALL, route_ms=1000,
                   user_abs_ms=later).source == "route"
    assert resolve(received=RECEIVED, received_wall=WALL, route_ms=1000, user_abs_ms=later,
                   allow_override=True).budget_ms == pytest.approx(60_000.0)


def test_mqtt_message_expiry_in_seconds() -> None:
    due = resolve(received=RECEIVED, received_wall=WALL, route_ms=5000, expiry_s=2)
    assert (due.budget_ms, due.source) == (2000.0, "message_expiry")
    assert due.at == pytest.approx(1002.0)


def test_message_expiry_longer_than_the_route_does_not_extend() -> None:
    due = resolve(received=RECEIVED, received_wall=WALL, route_ms=500, expiry_s=60)
    assert due.source == "route"


@pytest.mark.parametrize(
    ("user_ms", "user_abs_ms", "expiry_s", "budget", "source"),
    [
        ("300", str(WALL_MS + 200), 1, 200.0, "deadline"),
        ("100", str(WALL_MS + 200), 1, 100.0, "deadline_ms"),
        ("900", str(WALL_MS + 800), 0, 0.0, "message_expiry"),
        ("900", None, 1, 900.0, "deadline_ms"),
        (None, None, 3, 1000.0, "route"),
    ],
)
def test_earliest_wins(
    user_ms: str | None, user_abs_ms: str | None, expiry_s: int | None, budget: float, source: str
) -> None:
    due = resolve(
        received=RECEIVED,
        received_wall=WALL,
        route_ms=1000,
        user_ms=user_ms,
        user_abs_ms=user_abs_ms,
        expiry_s=expiry_s,
    )
    assert due.budget_ms == pytest.approx(budget)
    assert due.source == source


def test_with_override_the_messages_earliest_own_deadline_wins_even_if_longer() -> None:
    due = resolve(
        received=RECEIVED,
        received_wall=WALL,
        route_ms=100,
        allow_override=True,
        user_ms="5000",
        expiry_s=3,
    )
    assert (due.budget_ms, due.source) == (3000.0, "message_expiry")


@pytest.mark.parametrize("text", [" 250 ", "2.5e2", "250.0"])
def test_numeric_forms_are_accepted(text: str) -> None:
    due = resolve(received=RECEIVED, received_wall=WALL, route_ms=1000, user_ms=text)
    assert due.budget_ms == 250.0


@pytest.mark.parametrize("text", ["soon", "", "12ms", "0x10", "1,5"])
def test_non_numeric_deadline_ms_is_bad_input(text: str) -> None:
    with pytest.raises(BadInputError) as info:
        resolve(received=RECEIVED, received_wall=WALL, route_ms=1000, user_ms=text)
    assert "user property 'deadline_ms' is not a number" in str(info.value)
    assert info.value.reason == "bad_input"


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity"])
def test_non_finite_deadline_is_bad_input(text: str) -> None:
    with pytest.raises(BadInputError, match="'deadline_ms' must be finite"):
        resolve(received=RECEIVED, received_wall=WALL, route_ms=1000, user_ms=text)
    with pytest.raises(BadInputError, match="'deadline' must be finite"):
        resolve(received=RECEIVED, received_wall=WALL, route_ms=1000, user_abs_ms=text)


def test_non_numeric_absolute_deadline_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="user property 'deadline' is not a number"):
        resolve(
            received=RECEIVED, received_wall=WALL, route_ms=1000, user_abs_ms="2026-11-24T18:00Z"
        )


def test_long_bad_values_are_cut_in_the_message() -> None:
    with pytest.raises(BadInputError) as info:
        resolve(received=RECEIVED, received_wall=WALL, route_ms=1000, user_ms="x" * 10_000)
    assert len(str(info.value)) < 120


def test_deadline_remaining_and_passed() -> None:
    due = Deadline(at=10.0, budget_ms=500.0, source="route")
    assert due.remaining_ms(9.75) == pytest.approx(250.0)
    assert due.remaining_ms(10.5) == pytest.approx(-500.0)
    assert not due.passed(9.999)
    assert not due.passed(10.0)  # on the dot is still in time
    assert due.passed(10.001)
