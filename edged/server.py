"""Lifecycle: load (phase two), start, serve until told to stop, shut down cleanly."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType

import structlog

from edged import metrics, topics
from edged.config import Settings
from edged.mqtt import MqttClient
from edged.pipeline import Pipeline, Route
from edged.responder import Responder
from edged.runtime import Backend, LoadedModel, load_model, select_backend
from edged.stats import Stats
from edged.types import Inbound, Outbound

log = structlog.get_logger("edged.server")
SWITCH_INTERVAL_S = 0.0005


@dataclass(frozen=True)
class Loaded:
    """Everything phase two produced: the runtime and every model, ready to serve."""

    backend: Backend
    models: dict[str, LoadedModel]


def load(settings: Settings, prefer_runtime: str | None = None) -> Loaded:
    """Pick the runtime and load and warm up every model. Raises ModelLoadError."""
    backend = select_backend(prefer_runtime)
    models = {name: load_model(name, cfg, backend) for name, cfg in settings.models.items()}
    return Loaded(backend, models)


class Server:
    """One edged process: ``start``, ``serve``, ``shutdown``; ``run`` does all three."""

    def __init__(self, settings: Settings, loaded: Loaded) -> None:
        self.settings = settings
        self.loaded = loaded
        self.stop_requested = threading.Event()
        self.stats = Stats()
        prefix = settings.mqtt.topic_prefix
        device = topics.safe_level(settings.device_id)
        self.status_topic = f"{prefix}/{device}/status"
        self.stats_topic = f"{prefix}/{device}/stats"
        routes = [Route.bind(r, loaded.models[r.model]) for r in settings.routes]
        for route in routes:
            self.stats.add_route(route.name, route.model.name)
        self.mqtt = MqttClient(
            settings.mqtt,
            client_id=settings.mqtt.client_id or f"edged-{device}",
            status_topic=self.status_topic,
            subscriptions=[r.subscribe for r in settings.routes],
            on_message=self._on_message,
        )
        self.responder = Responder(self.mqtt.publish, settings.device_id, prefix, self.stats)
        self.pipeline = Pipeline(routes, self.responder, self.stats)
        self._signals = 0

    def _on_message(self, message: Inbound) -> None:
        # The MQTT client is built before the pipeline, which publishes through it.
        self.pipeline.submit(message)

    def start(self) -> None:
        # Workers release the GIL while invoking; when one returns it must get the GIL back
        # quickly even while the MQTT thread is parsing a large frame. The default 5 ms switch
        # interval put whole milliseconds on the answer's latency (see docs/benchmarks.md).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.pipeline.start()
        metrics_cfg = self.settings.metrics
        if metrics_cfg.port is not None:
            metrics.serve(self.stats, metrics_cfg.host, metrics_cfg.port)
            log.info("metrics endpoint", url=f"http://{metrics_cfg.host}:{metrics_cfg.port}/")
        self.mqtt.start()
        log.info(
            "edged started",
            device_id=self.settings.device_id,
            runtime=self.loaded.backend.describe(),
            models={n: m.config.workers for n, m in self.loaded.models.items()},
            routes=[r.name for r in self.settings.routes],
        )

    def serve(self) -> None:
        """Block until a stop is requested, publishing stats on the configured interval."""
        interval = self.settings.stats_interval_s
        next_stats = time.monotonic() + interval
        while not self.stop_requested.wait(0.5):
            if interval and time.monotonic() >= next_stats:
                next_stats += interval
                self.publish_stats()

    def publish_stats(self) -> None:
        body = {"device_id": self.settings.device_id, "time": time.time(),
                **self.stats.snapshot()}
        self.mqtt.publish(Outbound(self.stats_topic, json.dumps(body).encode(), qos=0))

    def shutdown(self) -> None:
        """Stop taking messages, finish or reject what is queued, say ``stopped``."""
        timeout = self.settings.shutdown_timeout_s
        log.info("shutting down", timeout_s=timeout)
        self.pipeline.stop(timeout)
        self.publish_stats()
        self.mqtt.stop()
        log.info("stopped", **self.stats.totals())

    def install_signal_handlers(self) -> None:
        """TERM and INT ask for a clean stop; a second INT or TERM forces the exit."""

        def handle(signum: int, frame: FrameType | None) -> None:
            self._signals += 1
            if self._signals > 1:
                raise KeyboardInterrupt
            self.stop_requested.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def run(self) -> None:
        self.install_signal_handlers()
        self.start()
        try:
            self.serve()
        finally:
            self.shutdown()
