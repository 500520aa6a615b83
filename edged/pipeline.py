"""From an accepted message to a published answer: routes, the per-model queues and the
worker threads, each with its own interpreter."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from edged import codec, deadline, postprocess, preprocess, topics
from edged.config import RouteConfig
from edged.deadline import Deadline
from edged.errors import BadInputError, MessageError
from edged.queues import DropOldestQueue
from edged.responder import Responder
from edged.results import Identity, Timings
from edged.runtime import LoadedModel, Session
from edged.stats import Stats
from edged.types import Inbound

log = structlog.get_logger("edged.pipeline")
Array = np.ndarray[Any, Any]
Clock = Callable[[], float]


@dataclass(frozen=True)
class Route:
    """A configured route bound to its loaded model."""

    config: RouteConfig
    model: LoadedModel
    decode: Callable[[bytes], Array]
    postprocess: Callable[[Sequence[Array]], dict[str, Any]]

    @classmethod
    def bind(cls, config: RouteConfig, model: LoadedModel) -> Route:
        spec = model.input
        decode = codec.decoder_for(config.input.format, spec.shape, spec.dtype, config.input.field)
        post = postprocess.postprocessor_for(
            model.config.postprocess, model.outputs, model.labels, model.config.top_k
        )
        return cls(config, model, decode, post)

    @property
    def name(self) -> str:
        return self.config.name

    def matches(self, topic: str) -> bool:
        return topics.matches(self.config.subscribe, topic)


@dataclass(frozen=True)
class Job:
    route: Route
    message: Inbound
    identity: Identity
    deadline: Deadline
    publish_topic: str


class ModelWorkers:
    """One model's queue and its worker threads (one interpreter each)."""

    def __init__(self, model: LoadedModel, responder: Responder, clock: Clock) -> None:
        self.model = model
        self.queue: DropOldestQueue[Job] = DropOldestQueue(model.config.queue_size)
        self._responder = responder
        self._clock = clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.busy = 0
        self._busy_lock = threading.Lock()

    def start(self) -> None:
        sessions = [Session(self.model) for _ in range(self.model.config.workers)]
        for i, session in enumerate(sessions):
            thread = threading.Thread(
                target=self._serve, args=(session,), name=f"worker-{self.model.name}-{i}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float) -> list[Job]:
        """Let workers finish what is queued for up to ``timeout`` s; return what is left."""
        end = time.monotonic() + timeout
        while (len(self.queue) or self.busy) and time.monotonic() < end:
            time.sleep(0.01)
        left = self.queue.drain()
        self._stop.set()
        self.queue.close()
        for thread in self._threads:
            thread.join(max(0.1, end - time.monotonic()))
        return left

    def _serve(self, session: Session) -> None:
        while not self._stop.is_set():
            job = self.queue.get(timeout=0.5)
            if job is None:
                continue
            with self._busy_lock:
                self.busy += 1
            try:
                self._run(session, job)
            except Exception:  # a worker thread must outlive any one message
                log.exception("unexpected error in worker", route=job.route.name)
                self._responder.error(job.identity, job.message, "internal_error",
                                      "edged failed to process this message; see its log")
            finally:
                with self._busy_lock:
                    self.busy -= 1

    def _run(self, session: Session, job: Job) -> None:
        timings = Timings()
        start = self._clock()
        timings.queue = (start - job.message.received_mono) * 1000
        if job.deadline.passed(start):
            self._responder.error(
                job.identity, job.message, "expired",
                f"deadline of {job.deadline.budget_ms:.0f} ms passed after "
                f"{timings.queue:.1f} ms waiting; not run",
                job.deadline.budget_ms, timings,
            )
            return
        try:
            tensor = preprocess.to_input_tensor(job.route.decode(job.message.payload),
                                                session.model.input)
            t1 = self._clock()
            outputs = session.run(tensor)
            t2 = self._clock()
            result = job.route.postprocess(outputs)
        except MessageError as exc:
            self._responder.error(job.identity, job.message, exc.reason, str(exc),
                                  job.deadline.budget_ms)
            return
        end = self._clock()
        timings.preprocess = (t1 - start) * 1000
        timings.invoke = (t2 - t1) * 1000
        timings.postprocess = (end - t2) * 1000
        timings.total = (end - job.message.received_mono) * 1000
        if job.deadline.passed(end):
            self._responder.error(
                job.identity, job.message, "deadline",
                f"result was ready {-job.deadline.remaining_ms(end):.1f} ms after its "
                f"deadline of {job.deadline.budget_ms:.0f} ms; suppressed",
                job.deadline.budget_ms, timings,
            )
            return
        self._responder.result(job.identity, job.message, job.publish_topic,
                               job.route.config.publish_qos, result, timings,
                               job.deadline.budget_ms)


class Pipeline:
    """Routes messages to model workers. ``submit`` runs on the MQTT thread: keep it cheap."""

    def __init__(
        self,
        routes: Sequence[Route],
        responder: Responder,
        stats: Stats,
        clock: Clock = time.monotonic,
    ) -> None:
        self.routes = list(routes)
        self._responder = responder
        self._stats = stats
        self._clock = clock
        self.workers: dict[str, ModelWorkers] = {}
        for route in self.routes:
            if route.model.name not in self.workers:
                self.workers[route.model.name] = ModelWorkers(route.model, responder, clock)
        self.accepting = True

    def start(self) -> None:
        for workers in self.workers.values():
            workers.start()

    def stop(self, timeout: float) -> None:
        """Stop accepting; finish queued work within ``timeout``; reject what is left."""
        self.accepting = False
        end = time.monotonic() + timeout
        for workers in self.workers.values():
            for job in workers.stop(max(0.0, end - time.monotonic())):
                self._responder.error(job.identity, job.message, "shutdown",
                                      "edged is shutting down; not run")

    def submit(self, message: Inbound) -> None:
        for route in self.routes:
            if route.matches(message.topic):
                self._admit(route, message)

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
            return
        try:
            due = deadline.resolve(
                received=message.received_mono,
                received_wall=message.received_wall,
                route_ms=route.config.deadline_ms,
                user_ms=message.user_property(deadline.USER_DEADLINE_MS),
            )
        except BadInputError as exc:
            self._responder.error(identity, message, exc.reason, str(exc))
            return
        topic = self._responder.publish_topic(route.config.publish, route.name,
                                              route.model.name, message.topic)
        job = Job(route, message, identity, due, topic)
        evicted = self.workers[route.model.name].queue.put(job)
        if evicted is not None:
            self._responder.error(evicted.identity, evicted.message, "queue_full",
                                  "queue full: dropped in favour of newer messages",
                                  evicted.deadline.budget_ms)
