"""One job on one interpreter: checked against its deadline at pickup, run, checked again at
the end. A worker thread owns one runner; so does the MQTT thread for a model run inline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from edged import admission
from edged.errors import MessageError
from edged.estimate import ServiceTimeEstimate
from edged.image import Geometry
from edged.job import Answer, Job, Outcome, Refused
from edged.results import Timings
from edged.routes import Route, handoff
from edged.runtime import LoadedModel, Session

log = structlog.get_logger("edged.runner")
Array = np.ndarray[Any, Any]
Clock = Callable[[], float]
Hold = Callable[[Route], float]


@dataclass(frozen=True, slots=True)
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
    """One owner thread calls ``run``, or ``invoke`` while one other calls ``finish``."""

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

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "fallback_events": self.session.fallback_events,
                **self.session.snapshot()}

    def close(self) -> None:
        """Stop accelerator retries and child processes."""
        for session in (self.session, *self._chain_sessions.values()):
            session.close()

    def run(self, job: Job) -> Outcome:
        """The whole job, on the calling thread."""
        invoked = self.invoke(job)
        return invoked if isinstance(invoked, Refused) else self.finish(invoked)

    def invoke(self, job: Job) -> Invoked | Refused:
        """The part of a job that holds the model: the check at pickup, the input tensor,
        the invoke (and the chain's). A pipelined worker starts the next job's invoke while
        another thread finishes this one."""
        start = self._clock()
        timings = Timings(queue=(start - job.message.received_mono) * 1000)
        refusal = admission.at_pickup(start, job.deadline, queued_ms=timings.queue,
                                      service_s=self._estimate.seconds,
                                      hold_s=self._hold(job.route))
        if refusal is not None and not (refusal.reason == "deadline" and job.probe):
            return Refused(job.identity, job.message, refusal.reason, refusal.text,
                           job.deadline.budget_ms, timings)
        try:
            tensor, geometry = job.route.prepare(job.message.payload, job.array)
            t1 = self._clock()
            outputs = self._invoke(job.route, tensor)
        except MessageError as exc:
            return Refused(job.identity, job.message, exc.reason, str(exc),
                           job.deadline.budget_ms)
        t2 = self._clock()
        self._track_backend()
        timings.preprocess = (t1 - start) * 1000
        timings.invoke = (t2 - t1) * 1000
        return Invoked(job, tensor, geometry, outputs, timings, start, t2)

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
        late = end > job.deadline.at - self._hold(route)
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
            session = self._chain_sessions.get(target.name)
            if session is None:  # this runner's own interpreter for each chained model
                session = self._chain_sessions[target.name] = Session(target, worker=self.index)
            outputs = session.run(handoff(outputs, source, target))
            source = target
        return outputs

    def _track_backend(self) -> None:
        """After a switch between accelerator and CPU, old service times mislead."""
        backend = self.session.backend_name
        if backend != self._backend:
            log.warning("worker changed backend", worker=self.name, was=self._backend,
                        now=backend)
            self._backend = backend
            self._estimate.reset()
