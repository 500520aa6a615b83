"""Lifecycle: load (phase two), start, serve until told to stop, reload on SIGHUP, shut
down cleanly. Signal handlers only set flags; the main thread acts on them."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import structlog

from edged import discovery, handshake, logs, metrics, reload, topics
from edged.config import OutboxConfig, Settings
from edged.entities import Entities
from edged.errors import ConfigError, EdgedError
from edged.frigate import serve as frigate_serve
from edged.frigate import uploads as frigate_uploads
from edged.mqtt import Material, MqttClient
from edged.outbox import Outbox
from edged.pipeline import ModelWorkers, Pipeline
from edged.responder import Responder
from edged.routes import Route
from edged.runtime import Backend, LoadedModel, load_model
from edged.runtime.probe import Choice, choose_backend
from edged.stats import Stats
from edged.systemd import Notifier, Watchdog
from edged.transport import BrokerSide, Fork, Transport
from edged.types import Inbound, Outbound

if TYPE_CHECKING:
    from edged.frigate.door import FrigateDoor

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
    runtime: Choice | None = None
    """How the runtime was chosen (``edged check`` reports it); None: handed in."""


def load(settings: Settings, prefer_runtime: str | None = None,
         on_loaded: Callable[[str, LoadedModel], None] | None = None) -> Loaded:
    """Read the connection's material, open the spool, pick the runtime, load and warm up
    every model (``on_loaded`` hears of each as it is ready). Raises ConfigError or
    ModelLoadError."""
    material = Material.load(settings.mqtt)
    outbox = open_outbox(settings.outbox)
    choice = choose_backend(prefer_runtime)
    for attempt in choice.attempts:
        if not attempt.ok:
            log.warning("TFLite runtime failed its probe; falling back", runtime=attempt.runtime,
                        reason=attempt.detail)
    backend = choice.backend
    try:
        models = {}
        for name, cfg in settings.models.items():
            models[name] = load_model(name, cfg, backend)
            if on_loaded is not None:
                on_loaded(name, models[name])
    except BaseException:
        outbox.close()
        raise
    return Loaded(backend, models, material, outbox, choice)


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
                 make_transport: MakeTransport | None = None,
                 door: FrigateDoor | None = None) -> None:
        """``door``: the Frigate door, opened before the models loaded (``early_door``);
        without one, it is opened here when the config has a frigate section."""
        self.settings = settings
        self.loaded = loaded
        self.config_path = config_path
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.stats = Stats()
        self.notifier = notifier or Notifier()
        self.runtime_dir = handshake.runtime_dir()
        """Where reload outcomes go (``$RUNTIME_DIRECTORY``); None outside such a unit."""
        self._fingerprints = {n: reload.fingerprint(m.config) for n, m in loaded.models.items()}
        prefix = settings.mqtt.topic_prefix
        device = topics.safe_level(settings.device_id)
        self.status_topic = f"{prefix}/{device}/status"
        self.stats_topic = f"{prefix}/{device}/stats"
        self.stats_request_topic = f"{self.stats_topic}/request"
        """A message here asks for a stats snapshot now (``edged status`` and ``top``)."""
        self._stats_answered_at = 0.0
        routes = [Route.bind(r, loaded.models) for r in settings.routes]
        served = frigate_serve.bind(settings, loaded.models)
        routes += [s.route for s in served]
        for route in routes:
            self.stats.add_route(route.name, route.model.name, route.windowed)
        catalog = discovery.Catalog(settings)
        self._ha_topics(catalog)
        make = make_transport or self._mqtt_client()
        self.mqtt = make(self._on_message)
        self.entities = Entities(catalog, self.mqtt.publish)
        self.door: FrigateDoor | None = None
        sink: Transport = self.mqtt
        if settings.frigate is not None:
            self.door = door or open_door(settings, [], self.stats)
            self.door.update(settings.frigate, served)
            self.door.serve(self._submit_shared, self.reload_requested.set, self.stats)
            self.stats.add_door("frigate", self.door.snapshot)
            sink = Fork(self.mqtt, {frigate_serve.REPLY_TOPIC: self.door})
        self.responder = Responder(sink, settings.device_id, prefix, self.stats,
                                   entities=self.entities)
        self.mqtt.on_undeliverable = self.responder.undeliverable
        self.pipeline = Pipeline(routes, self.responder, sink, self.stats,
                                 niceness=settings.worker_niceness)
        # Two doors feed the pipeline from two threads: then one message at a time.
        self._submit = (self.pipeline.submit if self.door is None
                        else self.pipeline.submit_shared)
        self.watchdog: Watchdog | None = None
        self._retiring: list[threading.Thread] = []
        self._signals = 0

    def _ha_topics(self, catalog: discovery.Catalog) -> None:
        """What edged hears from Home Assistant: its status, and the configs of this box's
        entities (an earlier run's among them)."""
        self._ha_status = catalog.config.birth_topic if catalog.enabled else None
        self._ha_configs = catalog.config_filter() if catalog.enabled else None

    def _mqtt_client(self) -> MakeTransport:
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
                announce=lambda: self.entities.everything(),
                probe_topic=f"{settings.mqtt.topic_prefix}/{device}/probe",
                publish_qos={r.name: r.publish_qos for r in settings.routes},
            )
        return make

    def _filters(self, routes: Iterable[str]) -> list[str]:
        ha = [f for f in (self._ha_status, self._ha_configs) if f is not None]
        return [*routes, self.stats_request_topic, *ha]

    def _on_message(self, message: Inbound) -> None:
        # The transport is built before the pipeline, which publishes through it.
        if message.topic == self.stats_request_topic:
            self._stats_asked()
            return
        if self._ha_configs is not None and self._from_home_assistant(message):
            return
        self._submit(message)

    def _submit_shared(self, message: Inbound) -> None:
        self.pipeline.submit_shared(message)

    def _from_home_assistant(self, message: Inbound) -> bool:
        if message.topic == self._ha_status:
            self.entities.home_assistant_status(message.payload)
            return True
        if self._ha_configs is not None and topics.matches(self._ha_configs, message.topic):
            self.entities.config_seen(message.topic, message.payload)
            return True
        return False

    def _stats_asked(self) -> None:
        """A snapshot for a watcher, at most every STATS_ASKED_S however many ask."""
        now = time.monotonic()
        if now - self._stats_answered_at >= STATS_ASKED_S:
            self._stats_answered_at = now
            self.publish_stats()

    def heartbeats(self) -> dict[str, float]:
        """Every thread the watchdog vouches for: the workers and the MQTT loop."""
        beats = {**self.pipeline.heartbeats(), "mqtt": self.mqtt.loop_beat}
        if self.door is not None:
            beats["frigate"] = self.door.beat
        return beats

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
        if self.door is not None:  # an endpoint that cannot bind fails before anything runs
            self.door.bind()
        self.pipeline.start()
        if self.door is not None:
            self.door.start()
        for skipped in self.entities.catalog.skipped:
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
            self.entities.tick()
            if now >= next_status:
                next_status = now + STATUS_INTERVAL_S
                self.notifier.status(self.status_line())

    def status_line(self) -> str:
        totals = self.stats.totals()
        outbox = self.mqtt.snapshot()["outbox"]
        on_fallback = [r.name for m in self.pipeline.models.values() for r in m.runners
                       if r.session.on_fallback]
        fallback = f"; on CPU fallback: {', '.join(on_fallback)}" if on_fallback else ""
        if self.door is not None:
            fallback += f"; frigate: {self.door.snapshot()['detectors']} detector(s)"
        return (f"broker {self.mqtt.summary()}; {len(self.pipeline.routes)} routes; "
                f"received {totals['received']}, answered {totals['succeeded']}, "
                f"failed {totals['failed']}; outbox {outbox['waiting']} waiting, "
                f"{outbox['dropped_full']} dropped{fallback}")

    def publish_stats(self) -> None:
        body = {"device_id": self.settings.device_id, "time": time.time(),
                **self.stats.snapshot(self.pipeline), "mqtt": self.mqtt.snapshot()}
        if self.entities.catalog.enabled:
            body["home_assistant"] = self.entities.snapshot()
        self.mqtt.publish(Outbound(self.stats_topic, json.dumps(body).encode(), qos=0))

    def reload(self) -> bool:
        """Re-read the config, load changed models, swap them in; keep the old ones on any
        error. The connection stays up and queued messages are finished, not dropped. The
        outcome goes to the runtime directory for ``edged reload`` (edged.handshake)."""
        began = handshake.monotonic_usec()
        error = self._reload()
        if self.runtime_dir is not None:
            outcome = handshake.Outcome(os.getpid(), began, error is None, error or "")
            try:
                handshake.write(self.runtime_dir, outcome)
            except OSError as exc:
                log.warning("cannot report the reload's outcome", directory=str(
                    self.runtime_dir), error=str(exc))
        return error is None

    def _reload(self) -> str | None:
        """The reload itself: None once the new configuration serves, else why not."""
        if self.config_path is None:
            log.error("reload refused: edged was not given its config file's path")
            return "edged was not given its config file's path"
        self.notifier.reloading()
        log.info("reloading", config=str(self.config_path))
        try:
            plan = reload.prepare(self.config_path, self.settings, self.loaded.models,
                                  self._fingerprints, self.loaded.backend,
                                  extend=frigate_uploads.extend)
            running = {r.name: r for r in self.pipeline.routes}
            if (self.door is None) != (plan.settings.frigate is None):
                log.warning("the frigate section was added or removed: that takes a "
                            "restart; the door keeps its running settings")
                plan = replace(plan, settings=plan.settings.model_copy(
                    update={"frigate": self.settings.frigate}))
            routes = [Route.bind(r, plan.models).carrying_state_of(running.get(r.name))
                      for r in plan.settings.routes]
            served = frigate_serve.bind(plan.settings, plan.models)
            routes += [s.route for s in served]
        except (EdgedError, ValueError) as exc:
            log.error("reload rejected; the running configuration keeps serving",
                      config=str(self.config_path), error=str(exc))
            self.notifier.ready(self.status_line())
            return str(exc)
        catalog = discovery.Catalog(plan.settings)
        self._ha_topics(catalog)  # the swap subscribes to them
        if not self._swap(routes, plan.settings.worker_niceness):
            self._ha_topics(self.entities.catalog)
            log.error("reload rejected: the MQTT thread did not take the new routes in time; "
                      "the running configuration keeps serving")
            self.notifier.ready(self.status_line())
            return "the MQTT thread did not take the new routes in time"
        if self.door is not None and plan.settings.frigate is not None:
            self.door.update(plan.settings.frigate, served)
        self.entities.replace(catalog)
        self.settings, self._fingerprints = plan.settings, plan.fingerprints
        self.loaded = replace(self.loaded, models=plan.models)
        logs.configure(plan.settings.logging.level, plan.settings.logging.format)
        if plan.restart_needed:
            log.warning("changed sections take effect at the next restart",
                        sections=list(plan.restart_needed))
        log.info("reloaded", models_loaded=list(plan.loaded),
                 routes=[r.name for r in routes])
        self.notifier.ready(self.status_line())
        return None

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
                self.mqtt.set_subscriptions(self._filters(
                    r.config.subscribe for r in routes
                    if not r.config.subscribe.startswith(frigate_serve.TOPIC_PREFIX)))
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
        self.pipeline.stop(timeout)  # the door goes on: new requests get zeros meanwhile
        for thread in self._retiring:
            thread.join(timeout)
        if self.door is not None:
            self.door.stop(2.0)
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


def open_door(settings: Settings, served: list[frigate_serve.Served],
              stats: Stats) -> FrigateDoor:
    """The Frigate door (not yet bound, nothing to submit to yet). Raises ConfigError when
    pyzmq is missing."""
    assert settings.frigate is not None
    try:
        from edged.frigate.door import FrigateDoor
    except ImportError as exc:
        raise ConfigError("frigate", [f"the Frigate door needs pyzmq ({exc}): install "
                                      "edged[frigate]"]) from None
    return FrigateDoor(settings.frigate, served, None, stats)


def early_door(settings: Settings) -> tuple[FrigateDoor, Callable[[str, LoadedModel], None]]:
    """The Frigate door, bound and serving handshakes before the models load (Frigate
    waits 30 s for its answer), and the ``on_loaded`` for ``load`` that answers each served
    model's handshakes as soon as it is loaded and checked. Raises ConfigError."""
    assert settings.frigate is not None
    config = settings.frigate
    door = open_door(settings, [], Stats())  # the server's own stats replace these
    door.loading([settings.served_name(m.model, m.name) for m in config.models])
    door.bind()
    door.start()

    def on_loaded(name: str, model: LoadedModel) -> None:
        for entry in config.models:
            if entry.model == name:
                # A model that cannot serve is reported by start-up with the rest.
                with contextlib.suppress(ConfigError):
                    door.ready(frigate_serve.bind_one(settings, entry, {name: model}))
    return door, on_loaded
