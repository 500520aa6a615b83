"""The Frigate door: a ZeroMQ ROUTER socket that Frigate's zmq detectors (one REQ socket
each) connect to. Requests become the same messages MQTT's become, submitted to the one
pipeline; answers come back from the one sink through ``publish`` (the door is the sink's
transport for the Response Topic ``$frigate/reply``) and go to the detector that asked.

One thread owns the socket. Every request is answered within the request timeout of its
receipt: with its rows when they are ready in time, else with 20 rows of zeros at the
deadline; a result that comes later is dropped, never sent. A ROUTER answers each peer on
its own, so one slow request holds up no other detector's.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import math
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import zmq

from edged.config.frigate import FrigateConfig, endpoint_is_local
from edged.errors import ConfigError
from edged.frigate import protocol
from edged.frigate.handshakes import Handshakes
from edged.frigate.placement import Placement
from edged.frigate.protocol import ZEROS, Detect, Malformed, ModelData, ModelRequest
from edged.frigate.serve import REPLY_TOPIC, Served, decoder_fits
from edged.mqtt.wakeup import Wakeup
from edged.responder import RateLimit
from edged.stats import Stats
from edged.types import Inbound, Outbound

log = structlog.get_logger("edged.frigate")
Clock = Callable[[], float]
BATCH = 64
"""Requests read before the answers waiting are sent."""
POLL_MAX_MS = 100


@dataclass(slots=True)
class Pending:
    envelope: list[bytes]
    due: float
    served: Served


class FrigateDoor:
    """``bind``, ``start``, then ``publish`` from any thread; ``stop`` drains and closes.

    ``submit`` hands a message to the pipeline (the same call the MQTT thread makes)."""

    def __init__(self, config: FrigateConfig, served: Sequence[Served],
                 submit: Callable[[Inbound], None] | None, stats: Stats,
                 clock: Clock = time.monotonic,
                 on_upload: Callable[[], None] | None = None) -> None:
        self.config = config
        self._place = Placement(served)
        """The served models, and which one each detector asked for."""
        self._submit = submit
        """The pipeline's door; None while the models still load (detections get zeros)."""
        self._stats = stats
        self._clock = clock
        self._context = zmq.Context()
        self._socket: zmq.Socket[bytes] | None = None
        self._bound: list[str] = []
        self._pending: dict[int, Pending] = {}
        self._timers: list[tuple[float, int]] = []
        self._answers: queue.SimpleQueue[tuple[int, bytes]] = queue.SimpleQueue()
        self._wakeup = Wakeup()
        self._ids = itertools.count(1)
        self._log_rate = RateLimit(rate=1.0, burst=10.0)
        self.counts: Counter[str] = Counter()
        self._hands = Handshakes(self._place, self._send, self._count, self._wakeup.call,
                                 lambda: self.config.uploads)
        self._hands.on_upload = on_upload
        self._lock = threading.Lock()  # counts: the door thread writes, snapshots read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beat = clock()
        """When the door's thread last showed it is alive (monotonic s)."""

    # lifecycle

    def bind(self) -> None:
        """Bind every endpoint (once). Raises ConfigError saying which failed and why."""
        if self._socket is not None:
            return
        sock = self._context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.config.max_frame_bytes)
        # A REQ peer has one request in flight; a peer that sends more waits here.
        sock.setsockopt(zmq.RCVHWM, 8)
        sock.setsockopt(zmq.SNDHWM, 64)
        try:
            self._bind(sock, self.config.endpoints)
        except ConfigError:
            sock.close(0)
            raise
        self._socket = sock

    def _bind(self, sock: zmq.Socket[bytes], endpoints: Sequence[str]) -> None:
        for endpoint in endpoints:
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:
                hint = ""
                if endpoint.startswith("ipc://"):
                    hint = ("; the socket's folder must exist and be writable (the packaged "
                            "unit makes /run/edged: RuntimeDirectory=edged)")
                raise ConfigError("frigate.endpoints",
                                  [f"cannot bind {endpoint}: {exc}{hint}"]) from None
            if not endpoint_is_local(endpoint):
                log.warning("Frigate door listens beyond loopback: anyone who reaches it can "
                            "use edged (Frigate's plugin has no authentication)",
                            endpoint=endpoint)
            self._bound.append(endpoint)
        log.info("Frigate door listening", endpoints=list(endpoints),
                 models={n: s.route.model.name for n, s in self._place.served.items()})

    def start(self) -> None:
        assert self._socket is not None, "bind first"
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="frigate", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Answer what is in flight (results, or zeros at their deadlines) for up to
        ``timeout`` s, then close the socket."""
        end = time.monotonic() + timeout
        while self._pending and time.monotonic() < end and self._thread is not None:
            time.sleep(0.01)
        self._stop.set()
        self._wakeup.wake()
        if self._thread is not None:
            self._thread.join(max(0.5, end - time.monotonic()))
        if self._socket is not None:
            self._socket.close(0)
        self._context.term()

    def loading(self, names: Sequence[str]) -> None:
        """Before the models load: handshakes for ``names`` wait for ``ready``, as Frigate
        waits 30 s for its answer; other names are unknown."""
        self._hands.loading(names)

    def ready(self, served: Served) -> None:
        """A served model is loaded and checked: answer its handshakes from now on (and
        those waiting). Its detections get zeros until the pipeline serves (``serve``)."""

        self._call(lambda: self._hands.ready(served))

    def serve(self, submit: Callable[[Inbound], None],
              on_upload: Callable[[], None] | None, stats: Stats) -> None:
        """The pipeline is up: detections go to ``submit`` from now on, counted in the
        server's ``stats``."""

        def attach() -> None:
            self._submit, self._hands.on_upload, self._stats = submit, on_upload, stats

        self._call(attach)

    def _call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the door's thread (or here, before it runs)."""
        if self._thread is None or not self._thread.is_alive():
            fn()
        else:
            self._wakeup.call(fn).wait(10.0)

    def update(self, config: FrigateConfig, served: Sequence[Served]) -> None:
        """Serve ``served`` with ``config`` from the next request on (at start, and on a
        reload); endpoints that changed are bound anew. Runs on the door's thread."""

        def swap() -> None:
            if self._socket is not None and list(config.endpoints) != self._bound:
                for endpoint in self._bound:
                    try:
                        self._socket.unbind(endpoint)
                    except zmq.ZMQError as exc:
                        log.warning("cannot unbind", endpoint=endpoint, error=str(exc))
                self._bound = []
                try:
                    self._bind(self._socket, config.endpoints)
                except ConfigError as exc:
                    log.error("Frigate door: an endpoint did not bind", error=str(exc))
            self.config = config
            self._place.replace(served)
            self._hands.settle()

        self._call(swap)

    # the sink's side (any thread)

    def publish(self, message: Outbound) -> None:
        """An answer for a request of this door (its correlation data is the request's)."""
        if message.correlation_data is None:
            return
        self._answers.put((int.from_bytes(message.correlation_data, "big"), message.payload))
        self._wakeup.wake()

    def reply_time(self, margin_ms: float | None) -> float:
        return (margin_ms or 0.0) / 1000.0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self.counts)
        return {"endpoints": list(self._bound), "detectors": len(self._place),
                "pending": len(self._pending),
                "served": {n: s.route.name for n, s in self._place.served.items()},
                "counts": counts}

    # the door's thread

    def _run(self) -> None:
        sock = self._socket
        assert sock is not None
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wakeup.fd, zmq.POLLIN)
        while not self._stop.is_set():
            self.beat = now = self._clock()
            wait = POLL_MAX_MS
            while self._timers and self._timers[0][1] not in self._pending:
                heapq.heappop(self._timers)  # answered already: no wake-up for it
            if self._timers:
                wait = max(0, min(wait, math.ceil((self._timers[0][0] - now) * 1000)))
            self._wakeup.asleep = True
            if not self._answers.empty() or self._wakeup.queued():
                wait = 0
            try:
                ready = dict(poller.poll(wait))
            except zmq.ZMQError as exc:  # e.g. EINTR
                log.debug("poll", error=str(exc))
                ready = {}
            if ready.get(self._wakeup.fd):
                # Drained whenever it is readable: a wake-up written just after ``woke``
                # looked would otherwise leave a byte that makes every poll return at once.
                with contextlib.suppress(OSError):
                    os.read(self._wakeup.fd, 4096)
            self._wakeup.woke()
            try:
                if ready.get(sock):
                    self._read(sock)
                self._send_answers(sock)
                self._expire(sock)
                self._wakeup.run_calls()
            except Exception:  # the door must outlive any one request
                log.exception("Frigate door: error handling a request")

    def _read(self, sock: zmq.Socket[bytes]) -> None:
        for _ in range(BATCH):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            received, wall = self._clock(), time.time()
            if len(frames) >= 2 and frames[1] == b"":  # a REQ peer: identity, delimiter
                envelope, body = frames[:2], frames[2:]
            else:  # a DEALER peer
                envelope, body = frames[:1], frames[1:]
            self._handle(sock, envelope, protocol.parse(body), received, wall)

    def _handle(self, sock: zmq.Socket[bytes], envelope: list[bytes],
                request: protocol.Request, received: float, wall: float) -> None:
        if isinstance(request, Detect):
            self._detect(sock, envelope, request, received, wall)
        elif isinstance(request, ModelRequest):
            self._hands.model_request(sock, envelope, request)
        elif isinstance(request, ModelData):
            self._hands.model_data(sock, envelope, request)
        else:
            self._malformed(sock, envelope, request)

    def _send(self, sock: zmq.Socket[bytes], envelope: list[bytes], reply: bytes) -> None:
        try:
            sock.send_multipart([*envelope, reply], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the peer is gone or its queue is full
            self._count("send_failed")
            log.debug("reply not sent", error=str(exc))

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n

    def _zeros(self, sock: zmq.Socket[bytes], envelope: list[bytes], reason: str,
               served: Served | None = None) -> None:
        """Answer with zeros, counted by reason (and on the route's stats when known)."""
        self._count(f"zeros_{reason}")
        if served is not None:
            self._stats.received(served.route.name)
            self._stats.failed(served.route.name, reason)
        self._send(sock, envelope, ZEROS)

    # detections

    def _mismatch(self, served: Served, what: str, text: str) -> None:
        """A request that cannot work with this model: said once per kind."""
        if self._place.first_report(served, what):
            log.error("Frigate's requests do not fit the model; answering zeros",
                      model_name=served.name, route=served.route.name, problem=text)

    def _detect(self, sock: zmq.Socket[bytes], envelope: list[bytes], request: Detect,
                received: float, wall: float) -> None:
        served = self._place.served_for(envelope[0], request)
        if served is None:
            if not self._place.served:
                self._zeros(sock, envelope, "no_model")
                return
            # Zeros would keep such a detector sending frames that can never be served:
            # no answer makes it time out, reset and ask for its model again, once.
            self._count("unanswered_no_model")
            if self._log_rate.allow():
                log.warning("a detection request for no model served, left unanswered so "
                            "that its detector resets and makes its handshake again: it "
                            "asked for a name no longer served, or it made no handshake "
                            "with this edged and its frame fits no single served model",
                            asked=self._place.asked(envelope[0]), shape=list(request.shape),
                            dtype=request.dtype.name, model_type=request.model_type,
                            served=sorted(self._place.served))
            return
        model_type = request.model_type
        if model_type is not None:
            why = (f"Frigate sends model_type {model_type}; the config says "
                   f"{served.model_type}" if served.model_type not in (None, model_type)
                   else decoder_fits(model_type, served.decoder))
            if why is not None:
                self._mismatch(served, f"type:{model_type}", why)
                self._zeros(sock, envelope, "mismatch", served)
                return
        how = self._place.fit(served, request)
        if isinstance(how, str):
            self._mismatch(served, f"input:{request.shape}:{request.dtype.name}", how)
            self._zeros(sock, envelope, "mismatch", served)
            return
        if self._submit is None:  # the models still load: nothing can run yet
            self._zeros(sock, envelope, "loading", served)
            return
        if len(self._pending) >= self.config.max_pending:
            self._zeros(sock, envelope, "overload", served)
            return
        payload = protocol.model_input(request, how, served.spec)
        rid = next(self._ids)
        due = received + served.route.config.deadline_ms / 1000.0
        self._pending[rid] = Pending(envelope, due, served)
        heapq.heappush(self._timers, (due, rid))
        self._count("requests")
        self._submit(Inbound(served.topic, payload, 0, wall, received, REPLY_TOPIC,
                             rid.to_bytes(8, "big")))

    def _send_answers(self, sock: zmq.Socket[bytes]) -> None:
        while True:
            try:
                rid, payload = self._answers.get_nowait()
            except queue.Empty:
                return
            pending = self._pending.pop(rid, None)
            if pending is None:  # answered with zeros at its deadline already
                self._count("late_dropped")
                continue
            self._send(sock, pending.envelope, self._reply(pending.served, payload))

    def _reply(self, served: Served, payload: bytes) -> bytes:
        try:
            body = json.loads(payload)
        except ValueError:
            body = {}
        result = body.get("result")
        if not isinstance(result, dict):
            error = body.get("error") or {}
            self._count(f"zeros_{error.get('reason', 'error')}")
            return ZEROS
        reply = protocol.rows(result, served.ids, served.threshold)
        self._count("results")
        if reply[4:8] != b"\x00\x00\x00\x00":  # the first row's score
            self._count("results_with_detections")
        return reply

    def _expire(self, sock: zmq.Socket[bytes]) -> None:
        now = self._clock()
        while self._timers and self._timers[0][0] <= now:
            _, rid = heapq.heappop(self._timers)
            pending = self._pending.pop(rid, None)
            if pending is not None:
                self._count("zeros_expired")
                self._stats.failed(pending.served.route.name, "expired")
                self._send(sock, pending.envelope, ZEROS)

    def _malformed(self, sock: zmq.Socket[bytes], envelope: list[bytes],
                   request: Malformed) -> None:
        name = self._place.asked(envelope[0])
        served = self._place.served.get(name) if name is not None else None
        if self._log_rate.allow():
            log.warning("Frigate door: a request it cannot read; answered with zeros",
                        reason=request.reason, error=request.text,
                        model_name=name)
        self._zeros(sock, envelope, request.reason, served)
