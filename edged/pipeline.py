"""From an accepted message to a published answer: admission against the deadline, the
per-route queues of each model, and the worker threads, each with its own interpreter."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import structlog

from edged import deadline
from edged.deadline import Deadline
from edged.errors import BadInputError
from edged.estimate import ServiceTimeEstimate, expected_finish
from edged.queues import ModelScheduler
from edged.responder import Responder
from edged.results import Identity
from edged.routes import Route
from edged.runtime import LoadedModel
from edged.stats import Stats
from edged.types import Inbound
from edged.worker import Worker

log = structlog.get_logger("edged.pipeline")
Array = np.ndarray[Any, Any]
Clock = Callable[[], float]


@dataclass(frozen=True)
class Job:
    route: Route
    message: Inbound
    identity: Identity
    deadline: Deadline
    publish_topic: str
    array: Array | None = None
    """A sensor window's readings, ready to fit; None: the payload is the input."""
    seq: int | None = None
    """Its window's number in its topic's stream (streaming chains: issue 13)."""
    probe: bool = False
    """Admitted although the estimate said it would be late: it measures the service time
    afresh (see ``ServiceTimeEstimate.probe_due``)."""

    @property
    def due(self) -> float:
        return self.deadline.at

    @property
    def source(self) -> str:
        return self.message.topic


class ModelWorkers:
    """One model's scheduler, service-time estimate and worker threads."""

    def __init__(self, model: LoadedModel, responder: Responder, clock: Clock,
                 niceness: int = 0) -> None:
        self.model = model
        self.scheduler: ModelScheduler[Job] = ModelScheduler()
        self.estimate = ServiceTimeEstimate(initial_s=max(model.warmup_ms, 0.05) / 1000.0,
                                            clock=clock)
        self.workers = [
            Worker(i, model, self.scheduler, self.estimate, responder, clock, niceness)
            for i in range(model.config.workers)
        ]

    @property
    def busy(self) -> int:
        return sum(w.busy for w in self.workers)

    def open_chain(self, chain: tuple[LoadedModel, ...]) -> None:
        """Issue 13: each worker opens its chained models' sessions now, not on a message."""
        for worker in self.workers:
            worker.open_chain(chain)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def stop(self, timeout: float) -> list[Job]:
        """Let workers finish what is queued for up to ``timeout`` s; return what is left."""
        end = time.monotonic() + timeout
        while (len(self.scheduler) or self.busy) and time.monotonic() < end:
            time.sleep(0.01)
        left = list(self.scheduler.drain())
        for worker in self.workers:
            worker.stop_event.set()
        self.scheduler.close()
        for worker in self.workers:
            worker.join(max(0.1, end - time.monotonic()))
        return left

    def discard(self) -> None:
        """Release the interpreters of workers that were prepared but never started."""
        for worker in self.workers:
            worker.session.close()

    def describe(self) -> dict[str, Any]:
        return {
            "service_time_ms": round(self.estimate.seconds * 1000, 3),
            "queued": len(self.scheduler),
            "workers": [w.describe() for w in self.workers],
        }


class Pipeline:
    """Routes messages to model workers. ``submit`` runs on the MQTT thread: keep it cheap
    (no decoding there: that happens on the workers)."""

    def __init__(self, routes: Sequence[Route], responder: Responder, stats: Stats,
                 clock: Clock = time.monotonic, niceness: int = 0) -> None:
        self.routes = list(routes)
        self._responder = responder
        self._stats = stats
        self._clock = clock
        self.models: dict[str, ModelWorkers] = {}
        for route in self.routes:
            name = route.model.name
            if name not in self.models:
                self.models[name] = ModelWorkers(route.model, responder, clock, niceness)
            cfg = route.config
            self.models[name].scheduler.add_route(route.name, cfg.queue, cfg.queue_size,
                                                  cfg.priority)
            self.models[name].open_chain(route.chain)
        self._route_model = {r.name: r.model.name for r in self.routes}
        stats.queue_depth = self._queue_depth
        stats.models = lambda: {name: m.describe() for name, m in self.models.items()}
        stats.streams = self._streams
        self.accepting = True

    def _streams(self, route: str) -> dict[str, Any] | None:
        """Issue 13: a route's stream counters, for the stats topic."""
        for r in self.routes:
            if r.name == route:
                return r.describe_streams()
        return None

    def _queue_depth(self, route: str) -> int:
        model = self._route_model.get(route)  # None: a route a reload removed
        return self.models[model].scheduler.depth(route) if model in self.models else 0

    def start(self) -> None:
        for workers in self.models.values():
            workers.start()

    def stop(self, timeout: float) -> None:
        """Stop accepting; finish queued work within ``timeout``; reject what is left."""
        self.accepting = False
        end = time.monotonic() + timeout
        for workers in self.models.values():
            for job in workers.stop(max(0.0, end - time.monotonic())):
                job.route.skip(job.source, [job.seq])
                self._responder.error(job.identity, job.message, "shutdown",
                                      "edged is shutting down; not run")

    def heartbeats(self) -> dict[str, float]:
        """The last time each worker thread showed it is alive (monotonic s)."""
        return {w.name: w.last_beat for m in self.models.values() for w in m.workers}

    def submit(self, message: Inbound) -> None:
        matched = False
        for route in self.routes:
            if route.matches(message.topic):
                matched = True
                self._admit(route, message)
        if not matched:  # e.g. in flight for a filter a reload just dropped
            self._stats.unrouted()

    def _admit(self, route: Route, message: Inbound) -> None:
        identity = self._responder.identity(route.name, route.model.name, message)
        self._stats.received(route.name)
        if not self.accepting:
            self._responder.error(identity, message, "shutdown", "edged is shutting down")
            return
        limit = route.config.input.max_payload_bytes
        if len(message.payload) > limit:
            self._responder.error(identity, message, BadInputError.reason,
                                  f"payload of {len(message.payload)} bytes is over the "
                                  f"route's max_payload_bytes of {limit}")
            route.lost(message.topic)
            return
        try:
            due = self._deadline(route, message)
        except BadInputError as exc:
            self._responder.error(identity, message, exc.reason, str(exc))
            route.lost(message.topic)
            return
        arrays: list[Array | None] = [None]
        if route.windowers is not None:
            try:
                arrays = [w.array for w in route.windows(message)]
            except BadInputError as exc:
                self._responder.error(identity, message, exc.reason, str(exc))
                return
            if not arrays:
                return  # the window is still filling: nothing to run yet
        elif route.samples is not None:  # issue 13: audio chunks
            windows = self._sample_windows(route, message, identity)
            if not windows:
                return
            arrays = list(windows)
        seqs: list[int | None] = [None] * len(arrays)
        if route.streaming is not None:  # issue 13: number the windows of the stream
            seqs = list(route.streaming.number(message.topic, len(arrays)))
        # Issue 13: a streaming route's windows carry state that later windows need, so they
        # are not refused for time; a result that ends up late is suppressed at the end.
        verdict = ("admitted" if route.streaming is not None
                   else self._time_verdict(route, message, identity, due))
        if verdict == "refused":
            return
        topic = self._responder.publish_topic(route.config.publish, route.name,
                                              route.model.name, message.topic)
        for array, seq in zip(arrays, seqs, strict=True):
            self._enqueue(route, Job(route, message, identity, due, topic, array, seq,
                                     probe=verdict == "probe"))

    def _sample_windows(self, route: Route, message: Inbound,
                        identity: Identity) -> list[Array]:
        """An audio chunk's sample windows; a restart of its stream is reported."""
        try:
            windows, restarted = route.sample_windows(message)
        except BadInputError as exc:
            self._responder.error(identity, message, exc.reason, str(exc))
            return []
        if restarted is not None:
            self._responder.error(identity, message, "gap", restarted)
        return [w.array for w in windows]

    def _enqueue(self, route: Route, job: Job) -> None:
        scheduler = self.models[route.model.name].scheduler
        for evicted in scheduler.put(route.name, job):
            evicted.route.skip(evicted.source, [evicted.seq])
            if scheduler.closed:
                self._responder.error(evicted.identity, evicted.message, "shutdown",
                                      "edged is shutting down; not run")
                continue
            self._responder.error(evicted.identity, evicted.message, "queue_full",
                                  f"queue of route {route.name!r} is full "
                                  f"({route.config.queue_size}, policy {route.config.queue})",
                                  evicted.deadline.budget_ms)

    @staticmethod
    def _deadline(route: Route, message: Inbound) -> Deadline:
        return deadline.resolve(
            received=message.received_mono,
            received_wall=message.received_wall,
            route_ms=route.config.deadline_ms,
            allow_override=route.config.allow_deadline_override,
            user_ms=message.user_property(deadline.USER_DEADLINE_MS),
            user_abs_ms=message.user_property(deadline.USER_DEADLINE_ABS),
            expiry_s=message.expiry_interval_s,
        )

    def _time_verdict(self, route: Route, message: Inbound, identity: Identity,
                      due: Deadline) -> Literal["admitted", "probe", "refused"]:
        """Early rejection: refuse what cannot finish before its deadline (answering the
        sender), except the occasional probe that keeps the estimate honest."""
        now = self._clock()
        if due.passed(now):
            self._responder.error(identity, message, "expired",
                                  f"deadline of {due.budget_ms:.0f} ms had passed on arrival",
                                  due.budget_ms)
            return "refused"
        workers = self.models[route.model.name]
        ahead = workers.scheduler.ahead_of(route.name, due.at)
        finish = expected_finish(now, ahead, len(workers.workers), workers.busy,
                                 workers.estimate.seconds)
        if finish <= route.latest_finish(due.at, self._responder.outbound_lag()):
            return "admitted"
        if workers.estimate.probe_due():
            return "probe"
        self._responder.error(
            identity, message, "deadline",
            f"cannot finish within {due.budget_ms:.0f} ms: {ahead} queued ahead, "
            f"service time ~{workers.estimate.seconds * 1000:.2f} ms; not queued",
            due.budget_ms)
        return "refused"

    # --- Reload (issue 5). Added by the server's owner; the rest of this class is untouched.

    def prepare(self, routes: Sequence[Route], niceness: int = 0) -> dict[str, ModelWorkers]:
        """The workers ``routes`` need: the running ones of a model whose ``LoadedModel`` is
        the same object and whose routes keep their queue settings, new (not yet started)
        ones for any other model. Call it off the MQTT thread: new workers open their
        interpreters here, which can take seconds."""
        models: dict[str, ModelWorkers] = {}
        for route in routes:
            name = route.model.name
            if name not in models:
                models[name] = self._reusable(name, route.model, routes) or ModelWorkers(
                    route.model, self._responder, self._clock, niceness)
            if models[name] is not self.models.get(name):  # not yet started: safe to open
                models[name].open_chain(route.chain)
        return models

    def replace(self, routes: Sequence[Route],
                models: dict[str, ModelWorkers]) -> list[ModelWorkers]:
        """Serve ``routes`` with ``models`` (from ``prepare``) from now on; return the
        retired ``ModelWorkers``.

        Call it on the thread that calls ``submit`` (the MQTT thread), so no message sees
        half a swap and ``submit`` needs no lock. The caller lets the retired workers
        finish their queued jobs (``ModelWorkers.stop``) and reports what is left.
        """
        for route in routes:
            name = route.model.name
            cfg = route.config
            fresh = self.models.get(name) is not models[name]
            if fresh or self._queue_of(route.name) != (name, cfg.queue, cfg.queue_size,
                                                        cfg.priority):
                models[name].scheduler.add_route(route.name, cfg.queue, cfg.queue_size,
                                                  cfg.priority)
        retired = [m for n, m in self.models.items() if models.get(n) is not m]
        for name, workers in models.items():
            if self.models.get(name) is not workers:
                workers.start()
        for route in routes:
            self._stats.add_route(route.name, route.model.name)
        self.routes, self.models = list(routes), models
        self._route_model = {r.name: r.model.name for r in self.routes}
        return retired

    def _queue_of(self, route_name: str) -> tuple[str, str, int, int] | None:
        for route in self.routes:
            if route.name == route_name:
                cfg = route.config
                return route.model.name, cfg.queue, cfg.queue_size, cfg.priority
        return None

    def _reusable(self, name: str, model: LoadedModel,
                  routes: Sequence[Route]) -> ModelWorkers | None:
        """The running workers of ``name`` if the model is unchanged and no route of it
        changed its queue (a queue cannot be resized with jobs in it)."""
        current = self.models.get(name)
        if current is None or current.model is not model:
            return None
        # Workers cache a session per chained model name: a reloaded one needs new workers.
        running = {m.name: m for r in self.routes for m in (r.model, *r.chain)}
        if any(m is not running.get(m.name, m) for r in routes if r.model.name == name
               for m in r.chain):
            return None
        for route in routes:
            old = self._queue_of(route.name)
            cfg = route.config
            if route.model.name == name and old is not None and old != (
                    name, cfg.queue, cfg.queue_size, cfg.priority):
                return None
        return current
