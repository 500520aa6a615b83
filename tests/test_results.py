"""edged.results: the JSON payloads of results and errors."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.results import Identity, Timings, error_payload, iso_utc, result_payload

IDENTITY = Identity(
    route="cam",
    model="digits",
    device_id="box-1",
    topic="sensors/cam-7/frame",
    received_wall=1_795_546_550.123456,  # 2026-11-24T18:55:50.123456Z
)
TIMINGS = Timings(queue=1.23456, preprocess=0.5, invoke=12.0, postprocess=0.0004, total=14.1)


def test_result_payload() -> None:
    body = json.loads(result_payload(IDENTITY, {"label": "7", "score": 0.9}, TIMINGS, 2000))
    assert body == {
        "route": "cam",
        "model": "digits",
        "device_id": "box-1",
        "topic": "sensors/cam-7/frame",
        "received_at": "2026-11-24T18:55:50.123Z",
        "deadline_ms": 2000,
        "timings_ms": {
            "queue": 1.235,
            "preprocess": 0.5,
            "invoke": 12.0,
            "postprocess": 0.0,
            "total": 14.1,
        },
        "result": {"label": "7", "score": 0.9},
    }
    assert "error" not in body
    assert "late" not in body


def test_result_payload_is_compact_utf8_json() -> None:
    payload = result_payload(IDENTITY, {"label": "été"}, Timings(), 1.5)
    assert isinstance(payload, bytes)
    assert b", " not in payload and b": " not in payload
    assert json.loads(payload.decode("utf-8"))["result"]["label"] == "été"


def test_late_result_is_marked() -> None:
    body = json.loads(result_payload(IDENTITY, {}, TIMINGS, 100.0, late=True))
    assert body["late"] is True
    assert body["deadline_ms"] == 100.0


def test_error_payload() -> None:
    body = json.loads(error_payload(IDENTITY, "bad_input", "raw payload is 3 bytes"))
    assert body == {
        "route": "cam",
        "model": "digits",
        "device_id": "box-1",
        "topic": "sensors/cam-7/frame",
        "received_at": "2026-11-24T18:55:50.123Z",
        "error": {"reason": "bad_input", "message": "raw payload is 3 bytes"},
    }


def test_error_payload_with_deadline_and_timings() -> None:
    body = json.loads(error_payload(IDENTITY, "deadline", "too late", 250.12345, TIMINGS))
    assert body["deadline_ms"] == 250.123
    assert body["timings_ms"]["total"] == 14.1
    assert body["error"]["reason"] == "deadline"
    assert "result" not in body


@pytest.mark.parametrize(
    ("wall", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_795_546_550.9999, "2026-11-24T18:55:50.999Z"),  # truncated, not rounded up
        (1_700_000_000.5, "2023-11-14T22:13:20.500Z"),
    ],
)
def test_iso_utc(wall: float, text: str) -> None:
    assert iso_utc(wall) == text


def test_received_at_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert iso_utc(0.0) == "1970-01-01T00:00:00.000Z"
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_in_a_result_raises_instead_of_writing_invalid_json(bad: float) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        result_payload(IDENTITY, {"score": bad}, TIMINGS, 100.0)
    with pytest.raises(ValueError, match="JSON compliant"):
        result_payload(IDENTITY, {}, Timings(invoke=bad), 100.0)


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_receipt_time_is_formatted_as_datetime_formats_it(wall: float) -> None:
    from datetime import datetime, timezone

    expected = datetime.fromtimestamp(wall, tz=timezone.utc).isoformat(timespec="milliseconds")
    assert iso_utc(wall) == expected.removesuffix("+00:00") + "Z"


@given(st.text(min_size=1, max_size=30), st.floats(0, 1e6), st.booleans(),
       st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=4))
def test_result_payload_is_the_json_of_its_fields(topic: str, ms: float, late: bool,
                                                   result: dict[str, Any]) -> None:
    identity = Identity("cam", "digits", "box-1", topic, 1.7e9)
    timings = Timings(ms, ms / 2, ms / 3, 0.0, ms * 2)
    body = json.loads(result_payload(identity, result, timings, ms, late))
    assert body == {**identity.fields(), "deadline_ms": pytest.approx(ms, abs=5e-4),
                    "timings_ms": {k: pytest.approx(v, abs=5e-4)
                                   for k, v in timings.as_dict().items()},
                    **({"late": True} if late else {}), "result": result}


@given(st.text(min_size=1, max_size=30), st.text(max_size=40),
       st.none() | st.floats(-1e6, 1e6), st.booleans())
def test_error_payload_is_the_json_of_its_fields(topic: str, text: str,
                                                  deadline_ms: float | None,
                                                  with_timings: bool) -> None:
    identity = Identity("cam", "digits", "box-1", topic, 1.7e9)
    timings = Timings(1.0, 2.0, 3.0, 4.0, 10.0) if with_timings else None
    body = json.loads(error_payload(identity, "deadline", text, deadline_ms, timings))
    expected: dict[str, Any] = {**identity.fields(), "error": {"reason": "deadline",
                                                              "message": text}}
    if deadline_ms is not None:
        expected["deadline_ms"] = pytest.approx(deadline_ms, abs=5e-4)
    if timings is not None:
        expected["timings_ms"] = timings.as_dict()
    assert body == expected
