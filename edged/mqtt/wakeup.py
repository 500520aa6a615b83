"""How other threads reach the MQTT thread: a wake-up for its ``poll`` (a pipe it watches
beside the socket) and a queue of calls it runs between two batches of messages."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger("edged.mqtt")


class Wakeup:
    def __init__(self) -> None:
        self.fd, self._write_fd = os.pipe()
        """The end ``poll`` watches."""
        os.set_blocking(self.fd, False)
        os.set_blocking(self._write_fd, False)
        self.asleep = False
        """Set by the MQTT thread around its ``poll``: a write is needed only then."""
        self._woken = False
        self._calls: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = (
            queue.SimpleQueue())

    def wake(self) -> None:
        """Wake the MQTT thread if it sleeps in ``poll`` (any thread)."""
        if self.asleep and not self._woken:
            # The byte first, then the flag: ``woke`` empties the pipe once it sees the flag,
            # so no byte is ever left behind it (one would make every ``poll`` return at
            # once, a busy loop until the next wake). The other order lost that race.
            with contextlib.suppress(OSError):
                os.write(self._write_fd, b"x")
            self._woken = True

    def woke(self) -> None:
        """After ``poll`` (MQTT thread): empty the pipe if it was written."""
        self.asleep = False
        if self._woken:
            self._woken = False
            with contextlib.suppress(OSError):
                os.read(self.fd, 4096)

    def call(self, fn: Callable[[], None]) -> threading.Event:
        """Queue ``fn`` for the MQTT thread and wake it; the event is set once it ran."""
        done = threading.Event()
        self._calls.put((fn, done))
        self.wake()
        return done

    def queued(self) -> bool:
        """Whether calls wait (checked on every pass of the MQTT thread)."""
        return not self._calls.empty()

    def run_calls(self) -> None:
        """Run the queued calls (MQTT thread, the only one that takes them)."""
        while not self._calls.empty():
            fn, done = self._calls.get_nowait()
            try:
                fn()
            except Exception:
                log.exception("error in a call on the MQTT thread")
            finally:
                done.set()

    def close(self) -> None:
        """Once the MQTT thread has ended: no wake-up writes from now on."""
        self._woken = True
        os.close(self.fd)
        os.close(self._write_fd)
