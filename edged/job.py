"""What flows through the pipeline: a job in, an outcome out (values only).

Workers and the inline runner return outcomes; the responder, the one sink, turns them into
MQTT messages and stats. Values, not declared frozen for the per-message cost (see
``edged.types``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edged.deadline import Deadline
from edged.results import Identity, Timings
from edged.routes import Route
from edged.types import Inbound

Array = np.ndarray[Any, Any]


@dataclass(slots=True)
class Job:
    route: Route
    message: Inbound
    identity: Identity
    deadline: Deadline
    publish_topic: str
    array: Array | None = None
    """A sensor window's readings, ready to fit; None: the payload is the input."""
    seq: int | None = None
    """Its window's number in its topic's stream (streaming chains)."""
    probe: bool = False
    """Admitted although the estimate said it would be late: it measures the service time
    afresh (see ``ServiceTimeEstimate.probe_due``)."""

    @property
    def due(self) -> float:
        return self.deadline.at

    @property
    def source(self) -> str:
        return self.message.topic


@dataclass(slots=True)
class Answer:
    """A result, for the requester and (``to_route``) the route's topic."""

    job: Job
    result: dict[str, Any]
    timings: Timings
    late: bool = False
    to_route: bool = True


@dataclass(slots=True)
class Refused:
    """A message that got no result: why, in a reason code and in words."""

    identity: Identity
    message: Inbound
    reason: str
    text: str
    deadline_ms: float | None = None
    timings: Timings | None = None


@dataclass(slots=True)
class Several:
    """What one window of a streaming chain brought: a result each time its last stage ran
    (often none, its window still filling)."""

    answers: tuple[Answer, ...]


Outcome = Answer | Refused | Several
