"""A read-only MQTT client for ``edged status`` and ``edged top``: it subscribes to one
box's status and stats topics with the daemon's own connection settings and hands what
arrives over as plain values, over the same link and codec as the daemon.

It takes a clean session of its own (a random client id, nothing kept at the broker) and
publishes nothing but requests for a stats snapshot, so watching a box changes nothing on
it.
"""

from __future__ import annotations

import queue
import select
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from edged.auth import Material
from edged.config import MqttConfig
from edged.errors import BrokerError
from edged.mqtt import packets
from edged.mqtt.link import Link, LinkClosed
from edged.mqtt.negotiate import Negotiator, Refused, Unreachable


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
        self._v5 = True
        self._material = Material.load(config)
        self._heard: queue.SimpleQueue[Heard] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._link: Link | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe. Raises BrokerError when that fails within ``timeout``."""
        cfg = self._config
        password = self._material.password
        client_id = f"edged-watch-{uuid.uuid4().hex[:12]}"

        def connect(v5: bool) -> bytes:
            return packets.encode_connect(
                client_id, v5=v5, keepalive=cfg.keepalive_s, clean_start=True,
                username=cfg.username, password=password.encode() if password else None)

        negotiator = Negotiator(cfg.protocol)
        try:
            link, _ = negotiator.open(cfg, self._material, connect)
        except (Unreachable, ValueError) as exc:
            raise BrokerError(f"cannot reach the broker at {cfg.host}:{cfg.port}: "
                              f"{exc}") from exc
        except Refused as exc:
            raise BrokerError(f"the broker at {cfg.host}:{cfg.port} did not let edged in: "
                              f"{exc}") from exc
        self._v5 = negotiator.v5
        link.send(packets.encode_subscribe(1, self._topics, 0, v5=self._v5))
        self._link = link
        self._thread = threading.Thread(target=self._read, args=(link,), name="watch",
                                        daemon=True)
        self._thread.start()

    def ask(self, topic: str) -> None:
        """Publish an empty QoS 0 message to ``topic`` (a request for a stats snapshot)."""
        if self._link is not None:
            self._link.send(packets.encode_publish(topic, b"", v5=self._v5))

    def next(self, timeout: float) -> Heard | None:
        """The oldest message not yet taken, waiting up to ``timeout`` s; None if none came."""
        try:
            return self._heard.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def _read(self, link: Link) -> None:
        try:
            while not self._stop.is_set():
                link.flush()
                if link.pending() or select.select([link.sock], [], [], 0.2)[0]:
                    for packet in link.read():
                        if isinstance(packet, packets.Publish):
                            self._heard.put(Heard(packet.topic, packet.payload, packet.retain,
                                                  time.time()))
                if time.monotonic() - link.last_write >= link.keepalive_s * 0.75:
                    link.send(packets.PINGREQ)
            link.send(packets.encode_disconnect(v5=self._v5))
            link.flush()
        except LinkClosed:
            pass  # the view goes stale; ``top`` says how old its figures are
        finally:
            link.close()
