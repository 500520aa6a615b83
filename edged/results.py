"""Result and error payloads (pure). Tools tell them apart by the key ``result`` or ``error``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True)
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


@dataclass
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


def iso_utc(wall: float) -> str:
    """Unix time -> ISO 8601 in UTC with milliseconds, e.g. ``2026-11-24T18:55:50.123Z``."""
    stamp = datetime.fromtimestamp(wall, tz=timezone.utc).isoformat(timespec="milliseconds")
    return stamp.removesuffix("+00:00") + "Z"


def result_payload(
    identity: Identity,
    result: dict[str, Any],
    timings: Timings,
    deadline_ms: float,
    late: bool = False,
) -> bytes:
    body: dict[str, Any] = identity.fields()
    body["deadline_ms"] = round(deadline_ms, 3)
    body["timings_ms"] = timings.as_dict()
    if late:
        body["late"] = True
    body["result"] = result
    return encode(body)


def error_payload(
    identity: Identity,
    reason: str,
    message: str,
    deadline_ms: float | None = None,
    timings: Timings | None = None,
) -> bytes:
    body: dict[str, Any] = identity.fields()
    if deadline_ms is not None:
        body["deadline_ms"] = round(deadline_ms, 3)
    if timings is not None:
        body["timings_ms"] = timings.as_dict()
    body["error"] = {"reason": reason, "message": message}
    return encode(body)


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
