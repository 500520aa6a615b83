"""edged.responder: where results and errors go, and the errors topic's rate limit."""

from __future__ import annotations

import json

import pytest

from edged.responder import RateLimit, Responder
from edged.results import Timings
from edged.stats import Stats
from edged.types import Inbound, Outbound
from tests.support.fakes import FakeTransport


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- RateLimit --------------------------------------------------------------------------


def test_burst_then_refusal_then_refill() -> None:
    clock = FakeClock()
    limit = RateLimit(rate=2.0, burst=3.0, clock=clock)
    assert [limit.allow() for _ in range(5)] == [True, True, True, False, False]
    assert limit.suppressed == 2
    clock.now += 0.25  # half a token
    assert not limit.allow()
    clock.now += 0.25  # one token in all
    assert limit.allow()
    assert not limit.allow()
    assert limit.suppressed == 4


def test_refill_is_capped_at_the_burst() -> None:
    clock = FakeClock()
    limit = RateLimit(rate=10.0, burst=2.0, clock=clock)
    clock.now += 3600  # an hour idle buys no more than the burst
    assert [limit.allow() for _ in range(3)] == [True, True, False]
    assert limit.suppressed == 1


def test_steady_rate_is_allowed() -> None:
    clock = FakeClock()
    limit = RateLimit(rate=5.0, burst=1.0, clock=clock)
    allowed = 0
    for _ in range(100):
        allowed += limit.allow()
        clock.now += 0.2
    assert allowed == 100
    assert limit.suppressed == 0


def test_a_clock_that_does_not_move_allows_only_the_burst() -> None:
    limit = RateLimit(rate=1000.0, burst=4.0, clock=FakeClock())
    assert sum(limit.allow() for _ in range(50)) == 4
    assert limit.suppressed == 46


# --- Responder --------------------------------------------------------------------------


def inbound(response_topic: str | None = None, correlation: bytes | None = None) -> Inbound:
    return Inbound(
        topic="sensors/cam-7/frame",
        payload=b"\x00",
        qos=1,
        received_wall=1_700_000_000.0,
        received_mono=50.0,
        response_topic=response_topic,
        correlation_data=correlation,
    )


@pytest.fixture
def sent() -> list[Outbound]:
    return []


@pytest.fixture
def stats() -> Stats:
    s = Stats()
    s.add_route("cam", "digits")
    return s


def responder(sent: list[Outbound], stats: Stats, limit: RateLimit | None = None) -> Responder:
    return Responder(FakeTransport.into(sent), "box-1", "edged", stats, limit)


def test_error_with_a_response_topic_goes_to_it_and_to_the_errors_topic(
    sent: list[Outbound], stats: Stats
) -> None:
    r = responder(sent, stats)
    message = inbound("replies/client-9", b"req-42")
    r.error(r.identity("cam", "digits", message), message, "bad_input", "raw payload is 3 bytes")
    assert [(o.topic, o.qos, o.correlation_data) for o in sent] == [
        ("replies/client-9", 1, b"req-42"),
        ("edged/box-1/errors", 0, None),
    ]
    assert sent[0].payload == sent[1].payload
    body = json.loads(sent[0].payload)
    assert body["error"] == {"reason": "bad_input", "message": "raw payload is 3 bytes"}
    assert body["topic"] == "sensors/cam-7/frame"
    assert stats.totals()["failed"] == 1


def test_error_without_a_response_topic_goes_to_the_errors_topic_only(
    sent: list[Outbound], stats: Stats
) -> None:
    r = responder(sent, stats)
    message = inbound()
    r.error(r.identity("cam", "digits", message), message, "model_error", "boom")
    assert [o.topic for o in sent] == ["edged/box-1/errors"]


def test_errors_topic_is_rate_limited_but_replies_are_not(
    sent: list[Outbound], stats: Stats
) -> None:
    clock = FakeClock()
    limit = RateLimit(rate=1.0, burst=2.0, clock=clock)
    r = responder(sent, stats, limit)
    for i in range(5):
        message = inbound("replies/c", f"req-{i}".encode())
        r.error(r.identity("cam", "digits", message), message, "bad_input", "nope")
    replies = [o for o in sent if o.topic == "replies/c"]
    errors = [o for o in sent if o.topic == "edged/box-1/errors"]
    assert [o.correlation_data for o in replies] == [f"req-{i}".encode() for i in range(5)]
    assert len(errors) == 2
    assert limit.suppressed == 3
    assert stats.snapshot()["routes"]["cam"]["failed"] == {"bad_input": 5}  # all counted


def test_result_goes_to_the_route_topic_and_the_response_topic(
    sent: list[Outbound], stats: Stats
) -> None:
    r = responder(sent, stats)
    message = inbound("replies/client-9", b"\x01\x02")
    identity = r.identity("cam", "digits", message)
    r.result(identity, message, "edged/box-1/predictions/cam", 1, {"label": "7"},
             Timings(total=3.0), 100.0)
    # The reply first: its requester is waiting for it.
    assert [(o.topic, o.qos, o.correlation_data) for o in sent] == [
        ("replies/client-9", 1, b"\x01\x02"),
        ("edged/box-1/predictions/cam", 1, None),
    ]
    assert json.loads(sent[0].payload)["result"] == {"label": "7"}
    assert stats.totals()["succeeded"] == 1


def test_result_goes_out_with_the_routes_qos_and_the_reply_with_the_requests(
    sent: list[Outbound], stats: Stats
) -> None:
    r = responder(sent, stats)
    message = inbound("replies/x")  # a QoS 1 request
    r.result(r.identity("cam", "digits", message), message, "out", 0, {}, Timings(), 100.0)
    assert [(o.topic, o.qos) for o in sent] == [("replies/x", 1), ("out", 0)]


def test_identity_comes_from_the_message(sent: list[Outbound], stats: Stats) -> None:
    identity = responder(sent, stats).identity("cam", "digits", inbound())
    assert identity.device_id == "box-1"
    assert identity.topic == "sensors/cam-7/frame"
    assert identity.received_wall == 1_700_000_000.0


def test_publish_topic_renders_the_template_safely(sent: list[Outbound], stats: Stats) -> None:
    r = Responder(FakeTransport.into(sent), "box/1", "site/edged", stats)
    topic = r.publish_topic("{prefix}/{device_id}/{route}/{topic[1]}", "cam", "digits",
                            "sensors/+/frame")
    assert topic == "site/edged/box_1/cam/_"
    # The errors topic and the predictions share the prefix and the device level.
    assert r.errors_topic == "site/edged/box_1/errors"
