"""A worker thread: takes jobs from its model's scheduler, runs them on its own runner, and
hands each outcome to the sink."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from edged.job import Job, Outcome, Refused
from edged.queues import ModelScheduler
from edged.runner import Runner

log = structlog.get_logger("edged.worker")
POLL_S = 0.5  # how often an idle worker shows it is alive


class Worker(threading.Thread):
    def __init__(self, runner: Runner, scheduler: ModelScheduler[Job],
                 sink: Callable[[Outcome], None], niceness: int = 0) -> None:
        super().__init__(name=runner.name, daemon=True)
        self.runner = runner
        self._scheduler = scheduler
        self._sink = sink
        self.stop_event = threading.Event()
        self.busy = 0
        self.last_beat = time.monotonic()
        self.niceness = niceness
        self._niced = False

    @property
    def session(self) -> Any:
        return self.runner.session

    def describe(self) -> dict[str, Any]:
        return self.runner.describe()

    def run(self) -> None:
        try:
            self._serve()
        finally:
            self.runner.close()

    def _lower_priority_on_the_cpu(self) -> None:
        """CPU inference must not starve the MQTT thread: when workers fill every core,
        frames wait unread in the socket until their deadlines pass, and nothing is on time.
        A worker whose invoke runs on an accelerator keeps its priority: it needs the CPU
        only for moments, and how soon it gets it sets how busy the accelerator is. (Once
        lowered, a priority cannot be raised again without privileges.)"""
        if self._niced or not self.niceness or not self.runner.session.backend_name.startswith(
                "cpu"):
            return
        self._niced = True
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.niceness)

    def _serve(self) -> None:
        while not self.stop_event.is_set():
            self._lower_priority_on_the_cpu()
            self.last_beat = time.monotonic()
            job = self._scheduler.get(timeout=POLL_S)
            if job is None:
                continue
            self.busy = 1
            try:
                self._sink(self.runner.run(job))
            except Exception:  # a worker thread must outlive any one message
                log.exception("unexpected error in worker", route=job.route.name)
                try:
                    self._sink(Refused(job.identity, job.message, "internal_error",
                                       "edged failed to process this message; see its log"))
                except Exception:  # reporting failed too (e.g. the outbox is closing)
                    log.exception("could not report the error", route=job.route.name)
            finally:
                self.busy = 0
