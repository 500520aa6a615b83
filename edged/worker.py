"""A worker thread: takes jobs from its model's scheduler, runs them on its own runner, and
hands each outcome to the sink.

A worker whose model runs on an accelerator is pipelined: as soon as one invoke returns it
starts the next, and a second thread of its own turns the outputs into the result (post-
processing, the answer's JSON, publishing) while the accelerator is busy again. The
accelerator, not the CPU work around it, then sets the pace.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from edged.job import Job, Outcome, Refused
from edged.queues import ModelScheduler
from edged.runner import Invoked, Runner
from edged.runtime import Session

log = structlog.get_logger("edged.worker")
POLL_S = 0.5  # how often an idle worker shows it is alive
PIPELINE_DEPTH = 2  # invoked jobs waiting to be finished before the next invoke waits


class Worker(threading.Thread):
    def __init__(self, runner: Runner, scheduler: ModelScheduler[Job],
                 sink: Callable[[Outcome], None], niceness: int = 0,
                 pipelined: bool = False) -> None:
        super().__init__(name=runner.name, daemon=True)
        self.runner = runner
        runner.pipelined = pipelined
        self._scheduler = scheduler
        self._sink = sink
        self.stop_event = threading.Event()
        self._invoking = 0
        self.last_beat = time.monotonic()
        self.niceness = niceness
        self._niced = False
        self._finishing: queue.Queue[Invoked | None] | None = (
            queue.Queue(PIPELINE_DEPTH) if pipelined else None)

    @property
    def busy(self) -> int:
        """1 while a job of this worker is invoking or waiting to be finished."""
        waiting = self._finishing.unfinished_tasks if self._finishing is not None else 0
        return 1 if self._invoking or waiting else 0

    @property
    def session(self) -> Session:
        return self.runner.session

    def describe(self) -> dict[str, Any]:
        return self.runner.describe()

    def run(self) -> None:
        finisher = None
        if self._finishing is not None:
            finisher = threading.Thread(target=self._finish_all, name=f"{self.name}-finish",
                                        daemon=True)
            finisher.start()
        try:
            self._serve()
        finally:
            if finisher is not None and self._finishing is not None:
                self._finishing.put(None)
                finisher.join()
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
            self._invoking = 1
            try:
                invoked = self.runner.invoke(job)
                if not isinstance(invoked, Invoked):
                    self._sink(invoked)  # refused, or a streaming window done in its turn
                elif self._finishing is not None:
                    self._finishing.put(invoked)
                else:
                    self._sink(self.runner.finish(invoked))
            except Exception:  # a worker thread must outlive any one message
                self._failed(job)
            finally:
                self._invoking = 0

    def _finish_all(self) -> None:
        assert self._finishing is not None
        while (invoked := self._finishing.get()) is not None:
            try:
                self._sink(self.runner.finish(invoked))
            except Exception:
                self._failed(invoked.job)
            finally:
                self._finishing.task_done()
        self._finishing.task_done()

    def _failed(self, job: Job) -> None:
        log.exception("unexpected error in worker", route=job.route.name)
        job.route.skip(job.source, [job.seq])
        try:
            self._sink(Refused(job.identity, job.message, "internal_error",
                               "edged failed to process this message; see its log"))
        except Exception:  # reporting failed too (e.g. the outbox is closing)
            log.exception("could not report the error", route=job.route.name)
