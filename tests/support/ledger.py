"""Accounting for fault tests: a publisher of QoS 1 requests, each with its index as
Correlation Data, and a ledger of what came back for each one.

The ledger keeps each reply's payload, so a test can check a refusal against what edged
says about it (``received_at``, and ``deadline_ms``: the time the message had left when edged
read it, README "Deadlines and load"), not against how fast the machine happened to be."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from tests.support.daemon import MODELS
from tests.support.probe import Probe

REPLIES = "replies/faults"
FIGURES: list[str] = []  # one line per fault test, printed at the end of a module
TIME_REASONS = ("expired", "deadline")
ROUNDING_MS = 2.0  # received_at is in whole ms, deadline_ms has 3 decimals


@dataclass(frozen=True)
class Reply:
    """What edged said about one request."""

    index: int
    body: dict[str, Any]

    @property
    def reason(self) -> str | None:
        """None for a result, else the error's reason."""
        return None if "result" in self.body else str(self.body["error"]["reason"])

    @property
    def received_ms(self) -> float:
        """When edged read the request, Unix epoch ms."""
        stamp = datetime.fromisoformat(str(self.body["received_at"]).replace("Z", "+00:00"))
        return stamp.timestamp() * 1000.0

    @property
    def left_ms(self) -> float | None:
        """The time the request had left when edged read it (payload ``deadline_ms``)."""
        value = self.body.get("deadline_ms")
        return None if value is None else float(value)


@dataclass
class Ledger:
    """Every request sent, and what came back for it (by correlation id)."""

    sent: int = 0
    answered: set[int] = field(default_factory=set)
    dropped: set[int] = field(default_factory=set)
    errors: dict[int, str] = field(default_factory=dict)
    replies: list[Reply] = field(default_factory=list)
    deadlines: dict[int, float] = field(default_factory=dict)
    """The absolute deadline (Unix epoch ms) each request carried, if it carried one."""
    sent_at: dict[int, float] = field(default_factory=dict)
    """When each request was published, Unix epoch ms."""
    marks: dict[str, int] = field(default_factory=dict)
    """Named moments of a scenario: how many requests had been sent by then."""

    def mark(self, name: str) -> None:
        self.marks[name] = self.sent

    def take(self, probe: Probe, timeout: float) -> None:
        end = time.monotonic() + timeout
        while self.accounted() < self.sent and time.monotonic() < end:
            try:
                reply = probe.next(timeout=0.2, topic=REPLIES)
            except TimeoutError:
                continue
            index = int((reply.correlation_data or b"-1").decode())
            body = reply.json()
            self.replies.append(Reply(index, body))
            if "result" in body:
                self.answered.add(index)
            elif body["error"]["reason"] in TIME_REASONS:
                self.dropped.add(index)
            else:
                self.errors[index] = body["error"]["reason"]

    def accounted(self) -> int:
        return len(self.answered | self.dropped | set(self.errors))

    @property
    def lost(self) -> int:
        return self.sent - self.accounted()

    def between(self, first: str, last: str) -> range:
        """The indexes of the requests sent between two marks."""
        return range(self.marks[first], self.marks[last])

    def figures(self, fault: str) -> str:
        refusals = [r for r in self.replies if r.reason in TIME_REASONS]
        stale = sum(1 for r in refusals if (r.left_ms or 0.0) <= 0)
        line = (f"{fault}: sent {self.sent}, answered {len(self.answered)}, dropped for "
                f"deadline {len(self.dropped)} ({stale} of {len(refusals)} refusals past "
                f"the deadline when read), other errors {len(self.errors)}, lost {self.lost}")
        FIGURES.append(line)
        print(line)
        return line

    def deadline_problems(self) -> list[str]:
        """Replies that break the deadline rules, whatever the machine's speed: a refusal
        is for time only, and says the deadline the request carried; a request read after
        its deadline is refused as ``expired``, never run; a result is never late."""
        problems: list[str] = []
        for reply in self.replies:
            left = reply.left_ms
            carried = self.deadlines.get(reply.index)
            if carried is not None and left is not None and abs(
                    reply.received_ms + left - carried) > ROUNDING_MS:
                problems.append(f"#{reply.index}: received_at + deadline_ms is not the "
                                f"deadline it carried ({carried:.0f}): {reply.body}")
            if reply.reason is None:
                if reply.body.get("late") or (left is not None and left <= 0):
                    problems.append(f"#{reply.index}: answered past its deadline: "
                                    f"{reply.body}")
            elif reply.reason not in TIME_REASONS:
                problems.append(f"#{reply.index}: refused for {reply.reason}: {reply.body}")
            elif left is not None and left <= 0 and reply.reason != "expired":
                problems.append(f"#{reply.index}: past its deadline when read, refused as "
                                f"{reply.reason}, not expired: {reply.body}")
        return problems


def frame() -> bytes:
    image = np.load(MODELS / "digits_holdout.npz")["images"][0]
    return bytes(np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8).tobytes())


class Publisher(threading.Thread):
    """Sends QoS 1 requests at ``rate`` a second until stopped, each with its index as
    Correlation Data and, if ``deadline_ms``, an absolute ``deadline`` user property."""

    def __init__(self, probe: Probe, ledger: Ledger, rate: float,
                 deadline_ms: int | None = None) -> None:
        super().__init__(daemon=True)
        self.probe, self.ledger, self.period = probe, ledger, 1.0 / rate
        self.deadline_ms = deadline_ms
        self.halt = threading.Event()
        self.payload = frame()

    def run(self) -> None:
        while not self.halt.wait(self.period):
            props = None
            index = self.ledger.sent
            now_ms = time.time() * 1000
            self.ledger.sent_at[index] = now_ms
            if self.deadline_ms is not None:
                due = int(now_ms) + self.deadline_ms
                self.ledger.deadlines[index] = due
                props = [("deadline", str(due))]
            self.probe.publish("sensors/f/frame", self.payload, qos=1, response_topic=REPLIES,
                               correlation_data=str(index).encode(),
                               user_properties=props)
            self.ledger.sent += 1

    def wait_sent(self, count: int, timeout: float = 30.0) -> None:
        """Wait until at least ``count`` requests have gone out (a slow machine may start
        the thread late): a scenario's phases then hold requests whatever its speed."""
        end = time.monotonic() + timeout
        while self.ledger.sent < count and time.monotonic() < end:
            time.sleep(0.05)
        assert self.ledger.sent >= count, f"only {self.ledger.sent} of {count} sent"

    def stop(self) -> None:
        self.halt.set()
        self.join(5)
