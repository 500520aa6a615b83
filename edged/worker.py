"""A worker thread: takes jobs from its model's scheduler, runs them on its own runner, and
hands each outcome to the sink.

A worker whose model runs on an accelerator is pipelined: as soon as one invoke returns it
starts the next, and a second thread of its own, while the accelerator is busy again, turns
the outputs into the result (post-processing, the answer's JSON, publishing) and prepares
the job after (the check at pickup, the input tensor). The accelerator, not the CPU work
around it, then sets the pace: between two invokes the worker only hands over the outputs
and copies the next input in.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from edged.job import Job, Outcome, Refused
from edged.queues import ModelScheduler
from edged.runner import Invoked, Prepared, Runner
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
        self._pipelined = pipelined
        # C-level queues: the worker's hand-over must cost microseconds, not a Condition.
        self._finishing: queue.SimpleQueue[Invoked | None] = queue.SimpleQueue()
        self._slots: queue.SimpleQueue[None] = queue.SimpleQueue()
        """One token per invoked job the finisher may be behind; the worker waits for one."""
        for _ in range(PIPELINE_DEPTH):
            self._slots.put(None)
        self._ready: deque[Prepared] = deque()
        """The next job, prepared by the finishing thread while the model runs."""
        self._taking = threading.Lock()
        """Held to take a job: the worker never waits on the scheduler while the finishing
        thread holds the last job it took, unprepared."""

    @property
    def busy(self) -> int:
        """1 while a job of this worker is prepared, invoking or waiting to be finished."""
        waiting = self._pipelined and self._slots.qsize() < PIPELINE_DEPTH
        return 1 if self._invoking or self._ready or waiting else 0

    @property
    def session(self) -> Session:
        return self.runner.session

    def describe(self) -> dict[str, Any]:
        return self.runner.describe()

    def run(self) -> None:
        if not self._pipelined:
            try:
                self._serve()
            finally:
                self.runner.close()
            return
        finisher = threading.Thread(target=self._finish_all, name=f"{self.name}-finish",
                                    daemon=True)
        finisher.start()
        try:
            self._serve_pipelined()
        finally:
            self._finishing.put(None)
            finisher.join()
            for prepared in self._ready:  # stopped after the drain's timeout
                job = prepared.job
                job.route.skip(job.source, [job.seq])
                self._sink(Refused(job.identity, job.message, "shutdown",
                                   "edged is shutting down; not run"))
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
                self._sink(self.runner.run(job))
            except Exception:  # a worker thread must outlive any one message
                self._failed(job)
            finally:
                self._invoking = 0

    def _serve_pipelined(self) -> None:
        """The accelerator's loop: everything between two invokes is on its critical path,
        so the next job is usually prepared already and the outputs go over in one put."""
        ready, runner, finishing, slots = self._ready, self.runner, self._finishing, self._slots
        while not self.stop_event.is_set():
            self._lower_priority_on_the_cpu()  # a pipelined worker fallen back to the CPU
            self.last_beat = time.monotonic()
            with self._taking:
                prepared = ready.popleft() if ready else None
                job = prepared.job if prepared is not None else self._scheduler.take()
            if job is None:  # nothing queued and nothing in preparation: wait for a job
                job = self._scheduler.get(timeout=POLL_S)
                if job is None:
                    continue
            self._invoking = 1
            try:
                if prepared is None:
                    first = runner.prepare(job)
                    if not isinstance(first, Prepared):
                        self._sink(first)
                        continue
                    prepared = first
                invoked = runner.start(prepared)
                if isinstance(invoked, Invoked):
                    slots.get()  # waits only while the finisher is PIPELINE_DEPTH behind
                    finishing.put(invoked)
                else:
                    self._sink(invoked)  # refused, or a streaming window done in its turn
            except Exception:  # a worker thread must outlive any one message
                self._failed(job)
            finally:
                self._invoking = 0

    def _finish_all(self) -> None:
        """The finishing thread: while the model runs the next job, prepare the one after
        it, then finish the one whose invoke just ended."""
        while (invoked := self._finishing.get()) is not None:
            try:
                if not self._ready:
                    # The running invoke will take about as long as the last one.
                    self._prepare_next(invoked.invoked + invoked.timings.invoke / 1000)
                self._sink(self.runner.finish(invoked))
            except Exception:
                self._failed(invoked.job)
            finally:
                self._slots.put(None)

    def _prepare_next(self, model_free_at: float) -> None:
        with self._taking:
            while not self._ready and not self.stop_event.is_set():
                job = self._scheduler.take()
                if job is None:
                    return
                try:
                    prepared = self.runner.prepare(job, model_free_at)
                except Exception:
                    self._failed(job)
                    continue
                if isinstance(prepared, Prepared):
                    if not prepared.tensor.flags.writeable:
                        # A view of the payload's bytes: set_tensor would copy it to a
                        # writeable array first, and drop the GIL for the copy and wait to
                        # take it back, between two invokes. Here the copy costs nothing.
                        prepared.tensor = prepared.tensor.copy()
                    self._ready.append(prepared)
                else:
                    self._sink(prepared)  # refused at pickup: the next one, then

    def _failed(self, job: Job) -> None:
        log.exception("unexpected error in worker", route=job.route.name)
        job.route.skip(job.source, [job.seq])
        try:
            self._sink(Refused(job.identity, job.message, "internal_error",
                               "edged failed to process this message; see its log"))
        except Exception:  # reporting failed too (e.g. the outbox is closing)
            log.exception("could not report the error", route=job.route.name)
