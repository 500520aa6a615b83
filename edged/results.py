"""Result and error payloads (pure). Tools tell them apart by the key ``result`` or ``error``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from edged.types import Outbound


@dataclass(slots=True)
class Identity:
    """What every payload says about where it came from."""

    route: str
    model: str
    device_id: str
    topic: str
    received_wall: float

    def fields(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "model": self.model,
            "device_id": self.device_id,
            "topic": self.topic,
            "received_at": iso_utc(self.received_wall),
        }


@dataclass(slots=True)
class Timings:
    """Per-stage times of one message, in ms."""

    queue: float = 0.0
    preprocess: float = 0.0
    invoke: float = 0.0
    postprocess: float = 0.0
    total: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "queue": round(self.queue, 3),
            "preprocess": round(self.preprocess, 3),
            "invoke": round(self.invoke, 3),
            "postprocess": round(self.postprocess, 3),
            "total": round(self.total, 3),
        }


def _encoder() -> Callable[[Any], str]:
    """Compact JSON that refuses NaN and infinities. ``JSONEncoder.encode`` sets up json's C
    encoder anew for every call, a microsecond per answer: here it is set up once (results
    are trees built by edged, so the check for cycles is left out)."""
    encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without json's C accelerator
        return encoder.encode
    encode = make(None, encoder.default, json.encoder.encode_basestring_ascii, None, ":", ",",
                  False, False, False)
    return lambda value: "".join(encode(value, 0))


_ENCODE = _encoder()
_HEADS: dict[tuple[str, str, str, str], str] = {}
MAX_HEADS = 4096  # (route, model, device, topic) prefixes kept; a topic flood only refills
_SECOND: list[Any] = [None, ""]  # the last whole second formatted, and its text


def iso_utc(wall: float) -> str:
    """Unix time -> ISO 8601 in UTC with milliseconds, e.g. ``2026-11-24T18:55:50.123Z``
    (microseconds rounded, then cut to milliseconds, as ``datetime`` does). Each second is
    formatted once: a stream of answers needs only the milliseconds."""
    second, micros = divmod(round(wall * 1_000_000), 1_000_000)
    if _SECOND[0] != second:
        stamp = datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _SECOND[0], _SECOND[1] = second, stamp
    return f"{_SECOND[1]}.{micros // 1000:03d}Z"


def _head(identity: Identity) -> str:
    """The payload's opening, up to the receipt time: the same for every message of a
    route and topic, so it is encoded once."""
    key = (identity.route, identity.model, identity.device_id, identity.topic)
    head = _HEADS.get(key)
    if head is None:
        if len(_HEADS) >= MAX_HEADS:
            _HEADS.clear()
        fields = dict(zip(("route", "model", "device_id", "topic"), key, strict=True))
        head = _HEADS[key] = _ENCODE(fields)[:-1] + ',"received_at":"'
    return head


def _timings(t: Timings, deadline_ms: float) -> str:
    # The sum is finite only when every term is: one check for what json.dumps would refuse.
    if not math.isfinite(t.queue + t.preprocess + t.invoke + t.postprocess + t.total
                         + deadline_ms):
        raise ValueError("Out of range float values are not JSON compliant")
    return (f'"timings_ms":{{"queue":{t.queue:.3f},"preprocess":{t.preprocess:.3f},'
            f'"invoke":{t.invoke:.3f},"postprocess":{t.postprocess:.3f},"total":{t.total:.3f}}}')


def result_payload(
    identity: Identity,
    result: dict[str, Any],
    timings: Timings,
    deadline_ms: float,
    late: bool = False,
) -> bytes:
    """``{route, model, device_id, topic, received_at, deadline_ms, timings_ms, [late,]
    result}`` as compact UTF-8 JSON."""
    late_field = ',"late":true' if late else ""
    return (f'{_head(identity)}{iso_utc(identity.received_wall)}","deadline_ms":'
            f'{deadline_ms:.3f},{_timings(timings, deadline_ms)}{late_field},'
            f'"result":{_ENCODE(result)}}}').encode()


def error_payload(
    identity: Identity,
    reason: str,
    message: str,
    deadline_ms: float | None = None,
    timings: Timings | None = None,
) -> bytes:
    """``{route, model, device_id, topic, received_at, [deadline_ms,] [timings_ms,] error}``
    as compact UTF-8 JSON: under overload most answers are these."""
    if deadline_ms is not None and not math.isfinite(deadline_ms):
        raise ValueError("Out of range float values are not JSON compliant")
    deadline = "" if deadline_ms is None else f',"deadline_ms":{deadline_ms:.3f}'
    stages = "" if timings is None else "," + _timings(timings, deadline_ms or 0.0)
    error = _ENCODE({"reason": reason, "message": message})
    return (f'{_head(identity)}{iso_utc(identity.received_wall)}"{deadline}{stages},'
            f'"error":{error}}}').encode()


def undeliverable_payload(device_id: str, message: Outbound, reason: str, text: str) -> bytes:
    """The error that stands in for a message the broker will not take: the identity of the
    result it replaces when that was one (route, model, topic, received_at), the topic it
    was for, and the error. Small, whatever the message held."""
    body: dict[str, Any] = {}
    if message.payload[:1] == b"{":
        try:
            original = json.loads(message.payload)
        except ValueError:
            original = None
        if isinstance(original, dict):
            body = {key: original[key] for key in ("route", "model", "topic", "received_at")
                    if isinstance(original.get(key), str)}
    body.update({"device_id": device_id, "publish_topic": message.topic,
                 "error": {"reason": reason, "message": text}})
    return _ENCODE(body).encode()


def encode(body: dict[str, Any]) -> bytes:
    return _ENCODE(body).encode()
