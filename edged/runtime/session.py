"""One worker's engines: the accelerator it was given and its CPU fallback.

When the accelerator fails (an invoke raises, or takes longer than ``invoke_timeout_ms``)
the message in hand gets a ModelExecutionError, the session moves to its fallback for the
messages after it, and a background thread retries the accelerator with backoff. The
rebuilt engine is warmed up off the worker's path and swapped in at the next message.

In ``isolation: thread`` the watchdog can only judge an invoke once it returns: a native
invoke that never returns blocks its worker for good (``invoking_for_ms`` in ``snapshot``
shows it). ``isolation: process`` enforces the bound by killing the child.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import structlog

from edged.errors import ModelExecutionError, ModelLoadError
from edged.runtime.delegates import EngineSpec
from edged.runtime.engine import Array, Engine, EngineFailure
from edged.runtime.health import SessionHealth
from edged.runtime.model import LoadedModel, make_engine

log = structlog.get_logger("edged.runtime")


class Session:
    """Not thread-safe, by design: each worker thread owns one and calls ``run``.

    ``snapshot``, ``backend_name`` and ``fallback_events`` may be read from other threads.
    """

    def __init__(self, model: LoadedModel, worker: int | None = None) -> None:
        self.model = model
        self.worker = model.next_worker() if worker is None else worker
        self._primary_spec = model.engines.primary(self.worker)
        self._timeout_ms = model.config.invoke_timeout_ms
        self._watched = self._primary_spec.accelerated and self._timeout_ms is not None
        self.health = SessionHealth(model.config.retry_min_s, model.config.retry_max_s)
        self._lock = threading.Lock()
        self._recovered: Engine | None = None
        self._stop = threading.Event()
        self._retrier: threading.Thread | None = None
        fallback_spec = model.engines.fallback
        self._fallback = self._build(fallback_spec) if fallback_spec else None
        self._primary: Engine | None = None
        known = model.startup_failures.get(self._primary_spec.name)
        if known is None:
            try:
                self._primary = self._build(self._primary_spec)
            except ModelLoadError as exc:
                if not self._primary_spec.accelerated:
                    raise
                known = str(exc)
        self._active: Engine | None = None
        self.backend_name = "none"
        """Where the next message runs: ``edgetpu:usb:0``, ``cpu``, ``cpu-fallback``, or
        ``none`` while an accelerator without fallback is down (read by other threads)."""
        self._activate(self._primary or self._fallback)
        if known is not None:
            self._fail_over(known)

    def _activate(self, engine: Engine | None) -> None:
        # The name is read on every invoke: made once per switch, not per message.
        self._active = engine
        self.backend_name = ("none" if engine is None else f"{engine.name}-fallback"
                              if engine is self._fallback else engine.name)

    @property
    def fallback_events(self) -> int:
        """How many times this worker moved from its accelerator to its fallback."""
        return self.health.fallbacks

    @property
    def on_fallback(self) -> bool:
        return self._active is not self._primary

    def run(self, tensor: Array) -> list[Array]:
        """Run one input (already of the input tensor's shape and dtype); return the outputs.

        Raises ModelExecutionError when the engine fails; the session has then already moved
        to its fallback for the next message.
        """
        # Every message passes here, between two invokes of an accelerator and around the
        # microseconds of an inline model: one clock reading on each side, no more.
        if self._recovered is not None:
            self._adopt_recovered()
        engine = self._active
        if engine is None:
            raise ModelExecutionError(
                f"model {self.model.name!r}: {self._primary_spec.name} is unavailable and "
                f"fallback is off; {self.health.retry_text()}")
        health = self.health
        started = health.invoking_since = time.monotonic()
        try:
            outputs = engine.run(tensor)
        except EngineFailure as exc:
            health.invoking_since = None
            raise self._failed(engine, str(exc)) from exc
        health.invoking_since = None
        elapsed_ms = (time.monotonic() - started) * 1000
        if self._watched and engine is self._primary and self._over_time(elapsed_ms):
            raise self._failed(engine, f"invoke took {elapsed_ms:.0f} ms, over "
                                       f"invoke_timeout_ms of {self._timeout_ms}")
        health.invoked(self.backend_name, elapsed_ms)
        return outputs

    def snapshot(self) -> dict[str, Any]:
        """Plain data for stats: backend, invoke times, failures, fallback events."""
        return {"worker": self.worker, "backend": self.backend_name,
                "primary": self._primary_spec.name, "on_fallback": self.on_fallback,
                "isolation": self._primary_spec.isolation if self._primary_spec.accelerated
                else "thread", **self.health.snapshot()}

    def close(self) -> None:
        """Stop retrying and release every engine (and child process)."""
        with self._lock:
            self._stop.set()
        if self._retrier is not None:
            self._retrier.join(timeout=1.0)
        with self._lock:
            recovered, self._recovered = self._recovered, None
        for engine in {id(e): e for e in (self._primary, self._fallback, recovered) if e}.values():
            engine.close()
        self._primary = None
        self._activate(None)

    def _build(self, spec: EngineSpec) -> Engine:
        return make_engine(self.model, spec)

    def _over_time(self, elapsed_ms: float) -> bool:
        # Only an accelerator has somewhere to fall back to; a slow CPU stays a slow CPU.
        return (self._primary_spec.accelerated and self._timeout_ms is not None
                and elapsed_ms > self._timeout_ms)

    def _failed(self, engine: Engine, reason: str) -> ModelExecutionError:
        self.health.failed()
        where = ""
        if engine is self._primary and self._primary_spec.accelerated:
            self._fail_over(reason)
            where = f"; the next messages go to {self.backend_name}"
        return ModelExecutionError(
            f"model {self.model.name!r} failed on {engine.name}: {reason}{where}")

    def _fail_over(self, reason: str) -> None:
        if self._primary is not None:
            self._primary.close()
        self._primary = None
        self._activate(self._fallback)
        self.health.event("fallback", self._primary_spec.name, self.backend_name, reason)
        log.warning("accelerator failed; serving from the fallback", model=self.model.name,
                    worker=self.worker, backend=self._primary_spec.name,
                    now=self.backend_name, reason=reason,
                    retry_in_s=round(self.health.retry_delay_s, 1))
        if self._retrier is None or not self._retrier.is_alive():
            self._retrier = threading.Thread(
                target=self._retry, name=f"retry-{self.model.name}-{self.worker}", daemon=True)
            self._retrier.start()

    def _retry(self) -> None:
        """Rebuild the accelerator engine with backoff until it runs a warm-up again."""
        while not self._stop.wait(self.health.next_retry()):
            try:
                engine = self._build(self._primary_spec)
            except ModelLoadError as exc:
                self.health.retry_failed(str(exc))
                continue
            started = time.perf_counter()
            try:
                engine.run(np.zeros(self.model.input.shape, self.model.input.dtype))
            except EngineFailure as exc:
                engine.close()
                self.health.retry_failed(f"warm-up invoke failed: {exc}")
                continue
            if self._over_time((time.perf_counter() - started) * 1000):
                engine.close()
                self.health.retry_failed("warm-up invoke was over invoke_timeout_ms")
                continue
            with self._lock:
                if self._stop.is_set():  # closed while this engine was being built
                    engine.close()
                else:
                    self._recovered = engine
            return

    def _adopt_recovered(self) -> None:
        if self._recovered is None:  # the common path: no lock
            return
        with self._lock:
            engine, self._recovered = self._recovered, None
        if engine is None:
            return
        self._primary = engine
        self._activate(engine)
        was = f"{self._fallback.name}-fallback" if self._fallback else "none"
        self.health.event("recovered", was, engine.name, "warm-up invoke passed")
        self.health.reset_backoff()
        log.info("accelerator is back", model=self.model.name, worker=self.worker,
                 backend=engine.name)
