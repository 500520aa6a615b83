"""From an accepted message to its outcome: admission against the deadline, then either
the model's runner on this (the MQTT) thread, for models of microseconds, or the per-route
queues of the model and its worker threads, each with its own interpreter."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import structlog

from edged import admission, deadline
from edged.deadline import Deadline
from edged.errors import BadInputError
from edged.estimate import ServiceTimeEstimate
from edged.job import Job, Refused
from edged.queues import ModelScheduler
from edged.responder import Responder
from edged.results import Identity
from edged.routes import Route
from edged.runner import Hold, Runner
from edged.runtime import LoadedModel
from edged.stats import Stats
from edged.transport import Transport
from edged.types import Inbound
from edged.worker import Worker

log = structlog.get_logger("edged.pipeline")
Array = np.ndarray[Any, Any]
Clock = Callable[[], float]
QUEUE_TARGET_SHARE = 0.5  # an unset queue target: this share of the message's deadline
MAX_MATCHED_TOPICS = 10_000


class ModelWorkers:
    """One model's service-time estimate and its runners: one on the calling thread when
    the model runs inline, else a scheduler and worker threads."""

    def __init__(self, model: LoadedModel, responder: Responder, hold: Hold,
                 clock: Clock, niceness: int = 0, inline: bool = False) -> None:
        self.model = model
        self.inline = inline
        self.scheduler: ModelScheduler[Job] = ModelScheduler()
        self.estimate = ServiceTimeEstimate(initial_s=max(model.typical_ms, 0.01) / 1000.0,
                                            clock=clock)
        self.sink = responder.deliver
        if self.inline:
            self.runner: Runner | None = Runner(f"inline-{model.name}", 0, model,
                                                self.estimate, hold, clock)
            self.workers: list[Worker] = []
        else:
            self.runner = None
            self.workers = [
                Worker(Runner(f"worker-{model.name}-{i}", i, model, self.estimate, hold, clock),
                       self.scheduler, self.sink, niceness, pipelined=model.accelerated)
                for i in range(model.config.workers)
            ]

    @property
    def busy(self) -> int:
        return sum(w.busy for w in self.workers)

    @property
    def runners(self) -> list[Runner]:
        return [self.runner] if self.runner is not None else [w.runner for w in self.workers]

    def open_chain(self, chain: tuple[LoadedModel, ...]) -> None:
        """Each runner opens its chained models' sessions now, not on a message."""
        for runner in self.runners:
            runner.open_chain(chain)

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
        if self.runner is not None:
            self.runner.close()
        return left

    def discard(self) -> None:
        """Release the interpreters of runners that were prepared but never started."""
        for runner in self.runners:
            runner.close()

    def describe(self) -> dict[str, Any]:
        return {
            "service_time_ms": round(self.estimate.seconds * 1000, 3),
            "inline": self.inline,
            "queued": len(self.scheduler),
            "workers": [r.describe() for r in self.runners],
        }


class Pipeline:
    """Routes messages to their models. ``submit`` runs on the MQTT thread: for a model run
    inline it does the whole job there; for the others it only admits and queues (decoding
    happens on the workers)."""

    def __init__(self, routes: Sequence[Route], responder: Responder, transport: Transport,
                 stats: Stats, clock: Clock = time.monotonic, niceness: int = 0) -> None:
        self.routes = list(routes)
        self._responder = responder
        self._transport = transport
        self._sink = responder.deliver
        self._stats = stats
        self._matches: dict[str, list[Route]] = {}
        self._clock = clock
        self.models: dict[str, ModelWorkers] = {}
        for route in self.routes:
            name = route.model.name
            if name not in self.models:
                self.models[name] = ModelWorkers(route.model, responder,
                                                 transport.reply_time, clock,
                                                 niceness, _inline(name, self.routes))
            cfg = route.config
            self.models[name].scheduler.add_route(route.name, cfg.queue, cfg.queue_size,
                                                  cfg.priority)
            self.models[name].open_chain(route.chain)
        self._route_model = {r.name: r.model.name for r in self.routes}
        self.accepting = True
        self._lock = threading.Lock()

    def streams(self, route: str) -> dict[str, Any] | None:
        """A route's audio streams and streaming stages, for the stats topic."""
        for r in self.routes:
            if r.name == route:
                return r.describe_streams()
        return None

    def queue_depth(self, route: str) -> int:
        model = self._route_model.get(route)  # None: a route a reload removed
        return self.models[model].scheduler.depth(route) if model in self.models else 0

    def describe_models(self) -> dict[str, Any]:
        return {name: m.describe() for name, m in self.models.items()}

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

    def submit_shared(self, message: Inbound) -> None:
        """``submit`` for a pipeline that two doors feed, each from its own thread: one
        message at a time (a model run inline runs on the caller's thread, and an
        interpreter is not thread-safe), and never during ``replace``."""
        with self._lock:
            self.submit(message)

    def submit(self, message: Inbound) -> None:
        matched = False
        routes = self._matches.get(message.topic)
        for route in routes if routes is not None else self._routes_for(message.topic):
            matched = True
            self._admit(route, message)
        if not matched:  # e.g. in flight for a filter a reload just dropped
            self._stats.unrouted()

    def _routes_for(self, topic: str) -> list[Route]:
        """The routes whose filter matches ``topic``, remembered per topic: matching a
        topic against every filter is the same work for every frame of a camera."""
        found = self._matches.get(topic)
        if found is None:
            found = [r for r in self.routes if r.matches(topic)]
            if len(self._matches) >= MAX_MATCHED_TOPICS:
                self._matches.clear()
            self._matches[topic] = found
        return found

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
        arrays: list[Array | None] | None
        try:
            due = self._deadline(route, message)
            arrays = ([w.array for w in route.windows(message)]
                      if route.windowers is not None else None)
        except BadInputError as exc:
            self._responder.error(identity, message, exc.reason, str(exc))
            route.lost(message.topic)
            return
        topic = self._responder.publish_topic(route.config.publish, route.name,
                                              route.model.name, message.topic)
        if arrays is None and route.samples is None and route.streaming is None:
            jobs = [Job(route, message, identity, due, topic, None, None)]  # most routes
        else:
            if route.samples is not None:  # audio chunks
                arrays = list(self._sample_windows(route, message, identity))
            elif arrays is None:
                arrays = [None]
            if not arrays:
                return  # the window is still filling: nothing to run yet
            seqs: list[int | None] = [None] * len(arrays)
            if route.streaming is not None:  # number the windows of the stream
                seqs = list(route.streaming.number(message.topic, len(arrays)))
            jobs = [Job(route, message, identity, due, topic, array, seq)
                    for array, seq in zip(arrays, seqs, strict=True)]
            if arrays[0] is not None:  # windows of readings or samples: counted apart
                self._stats.windows(route.name, len(jobs))
        workers = self.models[route.model.name]
        if workers.runner is not None:  # inline: the runner checks the deadline at pickup
            for job in jobs:
                self._sink(workers.runner.run(job))
            return
        # A streaming route's windows carry state that later windows need, so they are not
        # refused for time; a result that ends up late is suppressed at the end.
        if route.streaming is None:
            refusal = self._refusal(route, workers, due)
            if refusal is not None:
                if refusal.reason != "deadline" or not workers.estimate.probe_due():
                    self._sink(Refused(identity, message, refusal.reason, refusal.text,
                                       due.budget_ms))
                    return
                jobs = [replace(job, probe=True) for job in jobs]
        for job in jobs:
            self._enqueue(route, job)

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

    def _refusal(self, route: Route, workers: ModelWorkers,
                 due: Deadline) -> admission.Refusal | None:
        """Early rejection: refuse what cannot finish before its deadline."""
        target = route.config.queue_target_ms
        target_s = (target if target is not None else due.budget_ms * QUEUE_TARGET_SHARE) / 1000
        return admission.at_arrival(
            self._clock(), due, ahead=workers.scheduler.ahead_of(route.name, due.at),
            workers=len(workers.workers), busy=workers.busy,
            service_s=workers.estimate.seconds, hold_s=self.hold_s(route),
            queue=(route.queue_state, target_s, due.budget_ms / 1000))

    def hold_s(self, route: Route) -> float:
        """Time to keep in hand for an answer of ``route`` to reach its sender."""
        return self._transport.reply_time(route.config.reply_margin_ms)

    def _enqueue(self, route: Route, job: Job) -> None:
        scheduler = self.models[route.model.name].scheduler
        for evicted in scheduler.put(route.name, job):
            evicted.route.skip(evicted.source, [evicted.seq])
            if scheduler.closed:
                self._responder.error(evicted.identity, evicted.message, "shutdown",
                                      "edged is shutting down; not run")
                continue
            if evicted.source == job.source and route.config.queue == "latest":
                # Not a full queue: `latest` keeps one frame per source, and a newer one
                # came before this one could run (a camera faster than its model).
                self._responder.error(evicted.identity, evicted.message, "superseded",
                                      f"replaced by a newer message from {job.source!r} "
                                      f"before it ran (route {route.name!r}, queue: latest)",
                                      evicted.deadline.budget_ms)
                continue
            self._responder.error(evicted.identity, evicted.message, "queue_full",
                                  f"queue of route {route.name!r} is full "
                                  f"({route.config.queue_size}, policy {route.config.queue})",
                                  evicted.deadline.budget_ms)

    @staticmethod
    def _deadline(route: Route, message: Inbound) -> Deadline:
        user_ms = user_abs_ms = None  # the last value of each, in one pass
        for key, value in message.user_properties:
            if key == deadline.USER_DEADLINE_ABS:
                user_abs_ms = value
            elif key == deadline.USER_DEADLINE_MS:
                user_ms = value
        return deadline.resolve(
            received=message.received_mono,
            received_wall=message.received_wall,
            route_ms=route.config.deadline_ms,
            allow_override=route.config.allow_deadline_override,
            user_ms=user_ms,
            user_abs_ms=user_abs_ms,
            expiry_s=message.expiry_interval_s,
        )

    # reload

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
                    route.model, self._responder, self._transport.reply_time, self._clock,
                    niceness, _inline(name, routes))
            if models[name] is not self.models.get(name):  # not yet started: safe to open
                models[name].open_chain(route.chain)
        return models

    def replace(self, routes: Sequence[Route],
                models: dict[str, ModelWorkers]) -> list[ModelWorkers]:
        """Serve ``routes`` with ``models`` (from ``prepare``) from now on; return the
        retired ``ModelWorkers``.

        Call it on the thread that calls ``submit`` (the MQTT thread), so no message sees
        half a swap and ``submit`` needs no lock (``submit_shared`` takes the lock held
        here). The caller lets the retired workers finish their queued jobs
        (``ModelWorkers.stop``) and reports what is left.
        """
        with self._lock:
            return self._replace(routes, models)

    def _replace(self, routes: Sequence[Route],
                 models: dict[str, ModelWorkers]) -> list[ModelWorkers]:
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
            self._stats.add_route(route.name, route.model.name, route.windowed)
        self.routes, self.models = list(routes), models
        self._matches = {}
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


def _inline(name: str, routes: Sequence[Route]) -> bool:
    """Whether model ``name`` runs on the MQTT thread: when it is inline itself and so is
    every model chained after it (the runner runs a route's whole chain)."""
    return all(r.model.inline and all(m.inline for m in r.chain)
               for r in routes if r.model.name == name)
