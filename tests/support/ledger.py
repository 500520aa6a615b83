"""Accounting for fault tests: a publisher of QoS 1 requests, each with its index as
Correlation Data, and a ledger of what came back for each one."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from tests.support.daemon import MODELS
from tests.support.probe import Probe

REPLIES = "replies/faults"
FIGURES: list[str] = []  # one line per fault test, printed at the end of a module


@dataclass
class Ledger:
    """Every request sent, and what came back for it (by correlation id)."""

    sent: int = 0
    answered: set[int] = field(default_factory=set)
    dropped: set[int] = field(default_factory=set)
    errors: dict[int, str] = field(default_factory=dict)

    def take(self, probe: Probe, timeout: float) -> None:
        end = time.monotonic() + timeout
        while self.accounted() < self.sent and time.monotonic() < end:
            try:
                reply = probe.next(timeout=0.2, topic=REPLIES)
            except TimeoutError:
                continue
            index = int((reply.correlation_data or b"-1").decode())
            body = reply.json()
            if "result" in body:
                self.answered.add(index)
            elif body["error"]["reason"] in ("expired", "deadline"):
                self.dropped.add(index)
            else:
                self.errors[index] = body["error"]["reason"]

    def accounted(self) -> int:
        return len(self.answered | self.dropped | set(self.errors))

    @property
    def lost(self) -> int:
        return self.sent - self.accounted()

    def figures(self, fault: str) -> str:
        line = (f"{fault}: sent {self.sent}, answered {len(self.answered)}, dropped for "
                f"deadline {len(self.dropped)}, other errors {len(self.errors)}, "
                f"lost {self.lost}")
        FIGURES.append(line)
        print(line)
        return line


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
            if self.deadline_ms is not None:
                props = [("deadline", str(int(time.time() * 1000) + self.deadline_ms))]
            self.probe.publish("sensors/f/frame", self.payload, qos=1, response_topic=REPLIES,
                               correlation_data=str(self.ledger.sent).encode(),
                               user_properties=props)
            self.ledger.sent += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(5)
