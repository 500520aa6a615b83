"""A read-only MQTT client for ``edged status`` and ``edged top``: it subscribes to one
box's status and stats topics with the daemon's own connection settings and hands what
arrives over as plain values. Part of the MQTT adapter: paho's types stop here.

It takes a clean session of its own (a random client id, nothing kept at the broker) and
publishes nothing, so watching a box changes nothing on it.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from edged import auth
from edged.config import MqttConfig
from edged.errors import BrokerError
from edged.mqtt import wire


@dataclass(frozen=True)
class Heard:
    """One message the watcher received."""

    topic: str
    payload: bytes
    retained: bool
    at: float
    """Wall-clock time of arrival."""


class Watcher:
    """Subscribes to ``topics`` on the broker ``config`` names; ``next`` returns what came."""

    def __init__(self, config: MqttConfig, topics: Sequence[str]) -> None:
        self._config = config
        self._topics = list(topics)
        self._v5 = config.protocol == "5"
        self._heard: queue.SimpleQueue[Heard] = queue.SimpleQueue()
        self._connected = threading.Event()
        self._refused: str | None = None
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"edged-watch-{uuid.uuid4().hex[:12]}",
            protocol=MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if self._v5 else True,
        )
        self._client.enable_logger(None)
        if config.username is not None:
            self._client.username_pw_set(config.username, auth.password(config))
        if config.tls is not None:
            self._client.tls_set_context(auth.tls_context(config.tls))
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message

    def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe. Raises BrokerError when that fails within ``timeout``."""
        cfg = self._config
        try:
            self._client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s,
                                 clean_start=True if self._v5 else paho.MQTT_CLEAN_START_FIRST_ONLY)
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot reach the broker at {cfg.host}:{cfg.port}: "
                              f"{wire.describe_connect_error(exc)}") from exc
        self._client.loop_start()
        if not self._connected.wait(timeout) or self._refused is not None:
            self.stop()
            why = self._refused or f"no answer within {timeout:g} s"
            raise BrokerError(f"the broker at {cfg.host}:{cfg.port} did not let edged in: "
                              f"{why}")

    def next(self, timeout: float) -> Heard | None:
        """The oldest message not yet taken, waiting up to ``timeout`` s; None if none came."""
        try:
            return self._heard.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any,
                    reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
        else:
            for topic in self._topics:
                client.subscribe(topic, qos=0)
        self._connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self._heard.put(Heard(msg.topic, bytes(msg.payload), bool(msg.retain), time.time()))
