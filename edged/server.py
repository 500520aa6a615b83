"""Lifecycle: load (phase two), start, serve until told to stop, reload on SIGHUP, shut
down cleanly. Signal handlers only set flags; the main thread acts on them."""

from __future__ import annotations

import gc
import json
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

import structlog

from edged import discovery, logs, metrics, reload, topics
from edged.config import OutboxConfig, Settings
from edged.errors import ConfigError, EdgedError
from edged.mqtt import Material, MqttClient
from edged.outbox import Outbox
from edged.pipeline import ModelWorkers, Pipeline
from edged.responder import Responder
from edged.routes import Route
from edged.runtime import Backend, LoadedModel, load_model, select_backend
from edged.stats import Stats
from edged.systemd import Notifier, Watchdog
from edged.transport import BrokerSide
from edged.types import Inbound, Outbound

log = structlog.get_logger("edged.server")
SWITCH_INTERVAL_S = 0.0005
STATUS_INTERVAL_S = 5.0
STATS_ASKED_S = 0.5  # snapshots on request, at most this often


@dataclass(frozen=True)
class Loaded:
    """Everything phase two produced: the runtime and every model, ready to serve, and what
    the broker connection reads from disk (TLS material, the password, the spool)."""

    backend: Backend
    models: dict[str, LoadedModel]
    material: Material | None = None
    outbox: Outbox | None = None


def load(settings: Settings, prefer_runtime: str | None = None) -> Loaded:
    """Read the connection's material, open the spool, pick the runtime, load and warm up
    every model. Raises ConfigError or ModelLoadError."""
    material = Material.load(settings.mqtt)
    outbox = open_outbox(settings.outbox)
    backend = select_backend(prefer_runtime)
    try:
        models = {name: load_model(name, cfg, backend) for name, cfg in settings.models.items()}
    except BaseException:
        outbox.close()
        raise
    return Loaded(backend, models, material, outbox)


def open_outbox(config: OutboxConfig) -> Outbox:
    """Raises ConfigError when the spool cannot be opened."""
    try:
        return Outbox(config)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError("outbox.spool_path", [f"cannot open {config.spool_path}: {exc}"]
                          ) from exc


MakeTransport = Callable[[Callable[[Inbound], None]], BrokerSide]


class Server:
    """One edged process: ``start``, ``serve``, ``shutdown``; ``run`` does all three.

    ``config_path`` is the file SIGHUP re-reads; without it a reload is refused.
    """

    def __init__(self, settings: Settings, loaded: Loaded, config_path: Path | None = None,
                 notifier: Notifier | None = None,
                 make_transport: MakeTransport | None = None) -> None:
        self.settings = settings
        self.loaded = loaded
        self.config_path = config_path
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.stats = Stats()
        self.notifier = notifier or Notifier()
        self._fingerprints = {n: reload.fingerprint(m.config) for n, m in loaded.models.items()}
        prefix = settings.mqtt.topic_prefix
        device = topics.safe_level(settings.device_id)
        self.status_topic = f"{prefix}/{device}/status"
        self.stats_topic = f"{prefix}/{device}/stats"
        self.stats_request_topic = f"{self.stats_topic}/request"
        """A message here asks for a stats snapshot now (``edged status`` and ``top``)."""
        self._stats_answered_at = 0.0
        routes = [Route.bind(r, loaded.models) for r in settings.routes]
        for route in routes:
            self.stats.add_route(route.name, route.model.name)
        announced = discovery.plan(settings)
        self._not_announced = announced.skipped
        make = make_transport or self._mqtt_client(announced.messages)
        self.mqtt = make(self._on_message)
        self.responder = Responder(self.mqtt, settings.device_id, prefix, self.stats)
        self.mqtt.on_undeliverable = self.responder.undeliverable
        self.pipeline = Pipeline(routes, self.responder, self.mqtt, self.stats,
                                 niceness=settings.worker_niceness)
        self.watchdog: Watchdog | None = None
        self._retiring: list[threading.Thread] = []
        self._signals = 0

    def _mqtt_client(self, announce: list[Outbound]) -> MakeTransport:
        settings, loaded = self.settings, self.loaded
        device = topics.safe_level(settings.device_id)

        def make(on_message: Callable[[Inbound], None]) -> BrokerSide:
            return MqttClient(
                settings.mqtt,
                client_id=settings.mqtt.client_id or f"edged-{device}",
                status_topic=self.status_topic,
                subscriptions=self._filters(r.subscribe for r in settings.routes),
                on_message=on_message,
                outbox=loaded.outbox or open_outbox(settings.outbox),
                material=loaded.material,
                announce=announce,
                probe_topic=f"{settings.mqtt.topic_prefix}/{device}/probe",
                publish_qos={r.name: r.publish_qos for r in settings.routes},
            )
        return make

    def _filters(self, routes: Iterable[str]) -> list[str]:
        return [*routes, self.stats_request_topic]

    def _on_message(self, message: Inbound) -> None:
        # The transport is built before the pipeline, which publishes through it.
        if message.topic == self.stats_request_topic:
            self._stats_asked()
            return
        self.pipeline.submit(message)

    def _stats_asked(self) -> None:
        """A snapshot for a watcher, at most every STATS_ASKED_S however many ask."""
        now = time.monotonic()
        if now - self._stats_answered_at >= STATS_ASKED_S:
            self._stats_answered_at = now
            self.publish_stats()

    def heartbeats(self) -> dict[str, float]:
        """Every thread the watchdog vouches for: the workers and the MQTT loop."""
        return {**self.pipeline.heartbeats(), "mqtt": self.mqtt.loop_beat}

    def start(self) -> None:
        # Workers release the GIL while invoking; when one returns it must get the GIL back
        # quickly even while the MQTT thread is parsing a large frame. The default 5 ms switch
        # interval put whole milliseconds on the answer's latency (see docs/benchmarks.md).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        # Everything loaded so far lives as long as the process: keep the collector from
        # walking it again and again, which would show as pauses in the answers' latency.
        gc.collect()
        gc.freeze()
        metrics_cfg = self.settings.metrics
        if metrics_cfg.port is not None:  # first: a port in use fails before anything runs
            metrics.serve(self.stats, self.pipeline, metrics_cfg.host, metrics_cfg.port)
            log.info("metrics endpoint", url=f"http://{metrics_cfg.host}:{metrics_cfg.port}/")
        self.pipeline.start()
        for skipped in self._not_announced:
            log.warning("route left out of Home Assistant discovery", route=skipped.route,
                        reason=skipped.reason)
        self.mqtt.start()
        log.info(
            "edged started",
            device_id=self.settings.device_id,
            runtime=self.loaded.backend.describe(),
            models={n: m.config.workers for n, m in self.loaded.models.items()},
            routes=[r.name for r in self.settings.routes],
        )
        # Models are loaded and warmed up by now (phase two); the broker may still be down,
        # which edged rides out on its own: that is no reason to hold back READY.
        self.notifier.ready(self.status_line())
        if self.notifier.watchdog_s:
            self.watchdog = Watchdog(self.notifier, self.heartbeats, self.notifier.watchdog_s)
            self.watchdog.start()

    def serve(self) -> None:
        """Block until a stop is requested: publish stats, update the systemd status and
        act on reload requests."""
        interval = self.settings.stats_interval_s
        now = time.monotonic()
        next_stats, next_status = now + interval, now + STATUS_INTERVAL_S
        while not self.stop_requested.wait(0.2):
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload()
                interval = self.settings.stats_interval_s
            now = time.monotonic()
            if interval and now >= next_stats:
                next_stats = now + interval
                self.publish_stats()
            if now >= next_status:
                next_status = now + STATUS_INTERVAL_S
                self.notifier.status(self.status_line())

    def status_line(self) -> str:
        totals = self.stats.totals()
        outbox = self.mqtt.snapshot()["outbox"]
        on_fallback = [r.name for m in self.pipeline.models.values() for r in m.runners
                       if r.session.on_fallback]
        fallback = f"; on CPU fallback: {', '.join(on_fallback)}" if on_fallback else ""
        return (f"broker {self.mqtt.summary()}; {len(self.pipeline.routes)} routes; "
                f"received {totals['received']}, answered {totals['succeeded']}, "
                f"failed {totals['failed']}; outbox {outbox['waiting']} waiting, "
                f"{outbox['dropped_full']} dropped{fallback}")

    def publish_stats(self) -> None:
        body = {"device_id": self.settings.device_id, "time": time.time(),
                **self.stats.snapshot(self.pipeline), "mqtt": self.mqtt.snapshot()}
        self.mqtt.publish(Outbound(self.stats_topic, json.dumps(body).encode(), qos=0))

    def reload(self) -> bool:
        """Re-read the config, load changed models, swap them in; keep the old ones on any
        error. The connection stays up and queued messages are finished, not dropped."""
        if self.config_path is None:
            log.error("reload refused: edged was not given its config file's path")
            return False
        self.notifier.reloading()
        log.info("reloading", config=str(self.config_path))
        try:
            plan = reload.prepare(self.config_path, self.settings, self.loaded.models,
                                  self._fingerprints, self.loaded.backend)
            running = {r.name: r for r in self.pipeline.routes}
            routes = [Route.bind(r, plan.models).carrying_state_of(running.get(r.name))
                      for r in plan.settings.routes]
        except (EdgedError, ValueError) as exc:
            log.error("reload rejected; the running configuration keeps serving",
                      config=str(self.config_path), error=str(exc))
            self.notifier.ready(self.status_line())
            return False
        if not self._swap(routes, plan.settings.worker_niceness):
            log.error("reload rejected: the MQTT thread did not take the new routes in time; "
                      "the running configuration keeps serving")
            self.notifier.ready(self.status_line())
            return False
        self._announce(plan.settings)
        self.settings, self._fingerprints = plan.settings, plan.fingerprints
        self.loaded = replace(self.loaded, models=plan.models)
        logs.configure(plan.settings.logging.level, plan.settings.logging.format)
        if plan.restart_needed:
            log.warning("changed sections take effect at the next restart",
                        sections=list(plan.restart_needed))
        log.info("reloaded", models_loaded=list(plan.loaded),
                 routes=[r.name for r in routes])
        self.notifier.ready(self.status_line())
        return True

    def _announce(self, new: Settings) -> None:
        """Remove the discovery entries of deleted routes and publish the current ones."""
        messages = discovery.discovery_messages(new)
        for message in (*discovery.removal_messages(self.settings, new), *messages):
            self.mqtt.publish(message)
        self.mqtt.set_announce(messages)

    def _swap(self, routes: list[Route], niceness: int) -> bool:
        # Interpreters open here, on this thread; the MQTT thread only swaps references.
        models = self.pipeline.prepare(routes, niceness)
        retired: list[ModelWorkers] = []
        lock, outcome = threading.Lock(), {"done": False, "abandoned": False}

        def swap() -> None:  # on the MQTT thread: no message is mid-submit meanwhile
            with lock:
                if outcome["abandoned"]:
                    return
                retired.extend(self.pipeline.replace(routes, models))
                self.mqtt.set_subscriptions(self._filters(r.config.subscribe for r in routes))
                outcome["done"] = True

        self.mqtt.call_in_loop(swap)
        with lock:
            if not outcome["done"]:  # too late now: the swap must not happen behind our back
                outcome["abandoned"] = True
        if not outcome["done"]:
            for name, workers in models.items():
                if self.pipeline.models.get(name) is not workers:
                    workers.discard()
            return False
        for workers in retired:
            thread = threading.Thread(target=self._retire, args=(workers,),
                                      name=f"retire-{workers.model.name}", daemon=True)
            thread.start()
            self._retiring.append(thread)
        return True

    def _retire(self, workers: ModelWorkers) -> None:
        """Let replaced workers finish what they had queued; reject only what is left."""
        for job in workers.stop(self.settings.shutdown_timeout_s):
            self.responder.error(job.identity, job.message, "shutdown",
                                 "its model was replaced by a reload before it could run")

    def shutdown(self) -> None:
        """Stop taking messages, finish or reject what is queued, deliver the outbox (or
        keep it in the spool), say ``stopped``."""
        timeout = self.settings.shutdown_timeout_s
        log.info("shutting down", timeout_s=timeout)
        self.notifier.stopping()
        if self.watchdog is not None:
            self.watchdog.stop()
        self.mqtt.hold_input()
        self.pipeline.stop(timeout)
        for thread in self._retiring:
            thread.join(timeout)
        self.publish_stats()
        self.mqtt.stop(self.settings.outbox.flush_timeout_s)
        log.info("stopped", **self.stats.totals())

    def install_signal_handlers(self) -> None:
        """TERM and INT ask for a clean stop (a second one forces the exit); HUP asks for
        a reload."""

        def handle(signum: int, frame: FrameType | None) -> None:
            self._signals += 1
            if self._signals > 1:
                raise KeyboardInterrupt
            self.stop_requested.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGHUP, lambda signum, frame: self.reload_requested.set())

    def run(self) -> None:
        self.install_signal_handlers()
        self.start()
        try:
            self.serve()
        finally:
            self.shutdown()
