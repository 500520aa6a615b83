"""A worker thread: one interpreter, fed by its model's scheduler, deadline-checked at
pickup and at the end."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from edged.errors import MessageError
from edged.estimate import ServiceTimeEstimate
from edged.image import Geometry
from edged.queues import ModelScheduler
from edged.responder import Responder
from edged.results import Timings
from edged.routes import Route, handoff
from edged.runtime import LoadedModel, Session
from edged.streaming import ORDER_WAIT_S

if TYPE_CHECKING:
    from edged.pipeline import Job

log = structlog.get_logger("edged.worker")
Array = np.ndarray[Any, Any]
POLL_S = 0.5  # how often an idle worker shows it is alive


class Worker(threading.Thread):
    def __init__(self, index: int, model: LoadedModel, scheduler: ModelScheduler[Job],
                 estimate: ServiceTimeEstimate, responder: Responder,
                 clock: Callable[[], float], niceness: int = 0) -> None:
        super().__init__(name=f"worker-{model.name}-{index}", daemon=True)
        self.index = index
        self.session = Session(model, worker=index)
        self._chain_sessions: dict[str, Session] = {}
        self._backend = self.session.backend_name
        self._scheduler = scheduler
        self._estimate = estimate
        self._responder = responder
        self._clock = clock
        self.stop_event = threading.Event()
        self.busy = 0
        self.last_beat = time.monotonic()
        self.niceness = niceness

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "fallback_events": self.session.fallback_events,
                **self.session.snapshot()}

    def run(self) -> None:
        if self.niceness:
            # Inference must not starve the MQTT thread: when workers fill every core, frames
            # wait unread in the socket until their deadlines pass, and nothing is on time.
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.niceness)
        try:
            self._serve()
        finally:
            for session in (self.session, *self._chain_sessions.values()):
                session.close()  # stops accelerator retries and child processes

    def _serve(self) -> None:
        while not self.stop_event.is_set():
            self.last_beat = time.monotonic()
            job = self._scheduler.get(timeout=POLL_S)
            if job is None:
                continue
            self.busy = 1
            try:
                self._run(job)
            except Exception:  # a worker thread must outlive any one message
                log.exception("unexpected error in worker", route=job.route.name)
                job.route.skip(job.source, [job.seq])
                try:
                    self._responder.error(job.identity, job.message, "internal_error",
                                          "edged failed to process this message; see its log")
                except Exception:  # reporting failed too (e.g. the outbox is closing)
                    log.exception("could not report the error", route=job.route.name)
            finally:
                self.busy = 0

    def _run(self, job: Job) -> None:
        timings = Timings()
        start = self._clock()
        timings.queue = (start - job.message.received_mono) * 1000
        if self._not_worth_starting(job, start, timings):
            return
        try:
            tensor, geometry = job.route.prepare(job.message.payload, job.array)
            t1 = self._clock()
            if job.route.streaming is None:
                outputs = self._invoke(job.route, tensor)
                t2 = self._clock()
                results = [job.route.finish(outputs, tensor, geometry, job.message)]
            else:  # issue 13: the stages' results, post-processed in the topic's order
                results = self._stream(job, tensor, geometry)
                t2 = self._clock()
        except MessageError as exc:
            job.route.skip(job.source, [job.seq])
            self._responder.error(job.identity, job.message, exc.reason, str(exc),
                                  job.deadline.budget_ms)
            return
        end = self._clock()
        self._track_backend()
        self._estimate.add(end - start)
        if not results:
            return  # a streaming stage's window is still filling: nothing to say yet
        timings.preprocess = (t1 - start) * 1000
        timings.invoke = (t2 - t1) * 1000
        timings.postprocess = (end - t2) * 1000
        timings.total = (end - job.message.received_mono) * 1000
        late = end > job.route.latest_finish(job.due, self._responder.outbound_lag())
        if late and job.route.config.on_late == "drop":
            self._responder.error(
                job.identity, job.message, "deadline",
                f"result was ready {(end - job.due) * 1000:.1f} ms after its deadline of "
                f"{job.deadline.budget_ms:.0f} ms; suppressed",
                job.deadline.budget_ms, timings)
            return
        for result, to_route in results:
            self._responder.result(job.identity, job.message, job.publish_topic,
                                   job.route.config.publish_qos, result, timings,
                                   job.deadline.budget_ms, late=late, to_route=to_route)

    def _invoke(self, route: Route, tensor: Array) -> list[Array]:
        """Run the route's model, then each model of its chain on the previous output."""
        outputs = self.session.run(tensor)
        source = route.model
        for target in route.chain:
            outputs = self._run_chained(target, handoff(outputs, source, target))
            source = target
        return outputs

    def _run_chained(self, target: LoadedModel, tensor: Array) -> list[Array]:
        session = self._chain_sessions.get(target.name)
        if session is None:  # this thread's own interpreter for each chained model
            session = self._chain_sessions[target.name] = Session(target, worker=self.index)
        return session.run(tensor)

    def open_chain(self, models: tuple[LoadedModel, ...]) -> None:
        """Open and warm up this worker's sessions of chained models before it serves:
        opened on the first message instead, they cost it (and the wake word it carries)
        the interpreter's start and first invoke. Call before ``start``."""
        for target in models:
            if target.name not in self._chain_sessions:
                session = Session(target, worker=self.index)
                with contextlib.suppress(MessageError):
                    session.run(np.zeros(target.input.shape, target.input.dtype))
                self._chain_sessions[target.name] = session

    def _stream(self, job: Job, tensor: Array,
                geometry: Geometry | None) -> list[tuple[dict[str, Any], bool]]:
        """Issue 13: the first model on this window, then the stages whose windows it
        completes, in the order of the topic's windows; a result for each time the last
        stage ran."""
        assert job.route.streaming is not None and job.seq is not None
        first = self.session.run(tensor)

        def settle(finals: list[list[Array]]) -> list[tuple[dict[str, Any], bool]]:
            return [job.route.finish(o, tensor, geometry, job.message) for o in finals]

        return job.route.streaming.advance(job.source, job.seq, first, self._run_chained,
                                           settle, ORDER_WAIT_S)

    def _track_backend(self) -> None:
        """After a switch between accelerator and CPU, old service times mislead."""
        backend = self.session.backend_name
        if backend != self._backend:
            log.warning("worker changed backend", worker=self.name, was=self._backend,
                        now=backend)
            self._backend = backend
            self._estimate.reset()

    def _not_worth_starting(self, job: Job, now: float, timings: Timings) -> bool:
        """Re-check at pickup: never start what has expired or cannot finish in time.
        Except a streaming window: later windows need its rows (issue 13)."""
        if job.route.streaming is not None:
            return False
        if job.deadline.passed(now):
            reason, why = "expired", "passed"
        elif not job.probe and now + self._estimate.seconds > job.route.latest_finish(
                job.due, self._responder.outbound_lag()):
            reason, why = "deadline", "could no longer be met"
        else:
            return False
        self._responder.error(
            job.identity, job.message, reason,
            f"deadline of {job.deadline.budget_ms:.0f} ms {why} after {timings.queue:.1f} ms "
            "in the queue; not run",
            job.deadline.budget_ms, timings)
        return True
