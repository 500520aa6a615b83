"""One job on one interpreter: checked against its deadline at pickup, run, checked again at
the end. A worker thread owns one runner; so does the MQTT thread for a model run inline."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from edged import admission
from edged.errors import MessageError
from edged.estimate import ServiceTimeEstimate
from edged.image import Geometry
from edged.job import Answer, Job, Outcome, Refused, Several
from edged.results import Timings
from edged.routes import Route, handoff
from edged.runtime import LoadedModel, Session
from edged.streaming import ORDER_WAIT_S

log = structlog.get_logger("edged.runner")
Array = np.ndarray[Any, Any]
Clock = Callable[[], float]
Hold = Callable[[float | None], float]  # a reply margin (ms; None: measured) -> seconds


@dataclass(slots=True)
class Prepared:
    """A job checked at pickup, with its input tensor: what ``start`` needs."""

    job: Job
    tensor: Array
    geometry: Geometry | None
    timings: Timings
    started: float
    ready: float


@dataclass(slots=True)
class Invoked:
    """A job whose invoke is done: what ``finish`` needs."""

    job: Job
    tensor: Array
    geometry: Geometry | None
    outputs: list[Array]
    timings: Timings
    started: float
    invoked: float


class Runner:
    """One owner thread calls ``run``; or, in a pipelined worker, one thread ``start``s
    prepared jobs while another ``finish``es them and ``prepare``s the next."""

    def __init__(self, name: str, index: int, model: LoadedModel,
                 estimate: ServiceTimeEstimate, hold: Hold, clock: Clock) -> None:
        self.name = name
        self.index = index
        self.session = Session(model, worker=index)
        self._chain_sessions: dict[str, Session] = {}
        self._backend = self.session.backend_name
        self._estimate = estimate
        self._hold = hold
        self._clock = clock
        self.pipelined = False
        """Set by a pipelined worker: its service time ends with the invoke."""
        self._model_free_at = 0.0

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "fallback_events": self.session.fallback_events,
                **self.session.snapshot()}

    def close(self) -> None:
        """Stop accelerator retries and child processes."""
        for session in (self.session, *self._chain_sessions.values()):
            session.close()

    def run(self, job: Job) -> Outcome:
        """The whole job, on the calling thread: ``prepare``, ``start``, ``finish``. A
        pipelined worker calls them itself, to start the next job's invoke while another
        thread finishes this one. A refusal, or a streaming window (whose stages run and
        finish in its topic's turn), comes back as the outcome itself."""
        prepared = self.prepare(job)
        if not isinstance(prepared, Prepared):
            return prepared
        invoked = self.start(prepared)
        return self.finish(invoked) if isinstance(invoked, Invoked) else invoked

    def prepare(self, job: Job, expected_start: float = 0.0) -> Prepared | Outcome:
        """The check at pickup and the input tensor. It may run on another thread while
        the model is busy (the session is not touched), to start the job as soon as the
        model is free: then ``expected_start`` is when that will be, for the check."""
        start = self._clock()
        timings = Timings(queue=(start - job.message.received_mono) * 1000)
        route = job.route
        # A streaming window is never refused for time: later windows need its rows.
        refusal = None if route.streaming is not None else admission.at_pickup(
            max(start, expected_start), job.deadline, queued_ms=timings.queue,
            service_s=self._estimate.seconds, hold_s=self._hold(route.config.reply_margin_ms))
        if refusal is not None and not (refusal.reason == "deadline" and job.probe):
            return Refused(job.identity, job.message, refusal.reason, refusal.text,
                           job.deadline.budget_ms, timings)
        try:
            tensor, geometry = route.prepare(job.message.payload, job.array)
        except MessageError as exc:
            route.skip(job.source, [job.seq])
            return Refused(job.identity, job.message, exc.reason, str(exc),
                           job.deadline.budget_ms)
        t1 = self._clock()
        timings.preprocess = (t1 - start) * 1000
        return Prepared(job, tensor, geometry, timings, start, t1)

    def start(self, prepared: Prepared) -> Invoked | Outcome:
        """Run a prepared job's invoke (and its chain's) on the calling thread."""
        job, timings, tensor = prepared.job, prepared.timings, prepared.tensor
        t1 = self._clock()
        waited = t1 - prepared.ready  # prepared ahead, it waited for the model
        timings.queue += waited * 1000
        if job.route.streaming is not None:
            return self._stream(job, tensor, prepared.geometry, timings,
                                prepared.started + waited, t1)
        try:
            outputs = (self._invoke(job.route, tensor) if job.route.chain
                       else self.session.run(tensor))
        except MessageError as exc:
            job.route.skip(job.source, [job.seq])
            return Refused(job.identity, job.message, exc.reason, str(exc),
                           job.deadline.budget_ms)
        t2 = self._clock()
        if self.session.backend_name != self._backend:
            self._backend_changed()
        timings.invoke = (t2 - t1) * 1000
        # The model's share of the job: from its pickup, or from the end of the invoke
        # before it when it was prepared while that one ran.
        started, self._model_free_at = max(prepared.started, self._model_free_at), t2
        return Invoked(job, tensor, prepared.geometry, outputs, timings, started, t2)

    def finish(self, invoked: Invoked) -> Outcome:
        """Outputs -> the result, checked against the deadline once more."""
        job, route, timings = invoked.job, invoked.job.route, invoked.timings
        try:
            result, to_route = route.finish(invoked.outputs, invoked.tensor, invoked.geometry,
                                            job.message)
        except MessageError as exc:
            return Refused(job.identity, job.message, exc.reason, str(exc),
                           job.deadline.budget_ms)
        end = self._clock()
        # The model's share: a pipelined worker's model is free again once its invoke ends.
        self._estimate.add((invoked.invoked if self.pipelined else end) - invoked.started)
        timings.postprocess = (end - invoked.invoked) * 1000
        timings.total = (end - job.message.received_mono) * 1000
        late = end > job.deadline.at - self._hold(route.config.reply_margin_ms)
        if late and route.config.on_late == "drop":
            return Refused(
                job.identity, job.message, "deadline",
                f"result was ready {(end - job.due) * 1000:.1f} ms after its deadline of "
                f"{job.deadline.budget_ms:.0f} ms; suppressed", job.deadline.budget_ms, timings)
        return Answer(job, result, timings, late=late, to_route=to_route)

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
        if session is None:  # this runner's own interpreter for each chained model
            session = self._chain_sessions[target.name] = Session(target, worker=self.index)
        return session.run(tensor)

    def open_chain(self, models: tuple[LoadedModel, ...]) -> None:
        """Open and warm up this runner's sessions of chained models before it serves:
        opened on the first message instead, they cost it (and the wake word it carries)
        the interpreter's start and first invoke. Call before it serves."""
        for target in models:
            if target.name not in self._chain_sessions:
                session = Session(target, worker=self.index)
                with contextlib.suppress(MessageError):
                    session.run(np.zeros(target.input.shape, target.input.dtype))
                self._chain_sessions[target.name] = session

    def _stream(self, job: Job, tensor: Array, geometry: Geometry | None, timings: Timings,
                start: float, t1: float) -> Outcome:
        """The first model on this window, then the stages whose windows it completes, in
        the order of the topic's windows: a result for each time the last stage ran."""
        streaming = job.route.streaming
        assert streaming is not None and job.seq is not None
        first = self.session.run(tensor)

        def settle(finals: list[list[Array]]) -> list[tuple[dict[str, Any], bool]]:
            return [job.route.finish(o, tensor, geometry, job.message) for o in finals]

        results = streaming.advance(job.source, job.seq, first, self._run_chained, settle,
                                    ORDER_WAIT_S)
        end = self._clock()
        if self.session.backend_name != self._backend:
            self._backend_changed()
        self._estimate.add(end - start)
        timings.preprocess = (t1 - start) * 1000
        timings.invoke = (end - t1) * 1000
        timings.total = (end - job.message.received_mono) * 1000
        late = end > job.deadline.at - self._hold(job.route.config.reply_margin_ms)
        if results and late and job.route.config.on_late == "drop":
            return Refused(
                job.identity, job.message, "deadline",
                f"result was ready {(end - job.due) * 1000:.1f} ms after its deadline of "
                f"{job.deadline.budget_ms:.0f} ms; suppressed", job.deadline.budget_ms, timings)
        return Several(tuple(Answer(job, result, timings, late=late, to_route=to_route)
                             for result, to_route in results))

    def _backend_changed(self) -> None:
        """After a switch between accelerator and CPU, old service times mislead."""
        backend = self.session.backend_name
        log.warning("worker changed backend", worker=self.name, was=self._backend, now=backend)
        self._backend = backend
        self._estimate.reset()
