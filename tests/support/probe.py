"""A small paho client for tests: publish requests, collect what edged publishes."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    correlation_data: bytes | None
    arrived_wall: float = 0.0
    qos: int = 0

    def json(self) -> Any:
        return json.loads(self.payload)


class Probe:
    """Subscribes to filters and queues every message it gets."""

    def __init__(self, port: int, protocol: str = "5", *, client_id: str | None = None,
                 session_expiry: int | None = None, username: str | None = None,
                 password: str | None = None) -> None:
        """``session_expiry`` (MQTT 5): a persistent session, so the probe gets what was
        published for it while a broker restart kept it away."""
        self.v5 = protocol == "5"
        self._messages: list[Received] = []
        self._cond = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311,
        )
        self.client.on_message = self._on_message
        if username is not None:
            self.client.username_pw_set(username, password)
        props = None
        if session_expiry is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry
            self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        if self.v5:
            self.client.connect("127.0.0.1", port, clean_start=session_expiry is None,
                                properties=props)
        else:
            self.client.connect("127.0.0.1", port)
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        with self._cond:
            self._messages.append(
                Received(msg.topic, bytes(msg.payload), bool(msg.retain), corr, time.time(),
                         msg.qos)
            )
            self._cond.notify_all()

    def subscribe(self, *filters: str, qos: int = 1) -> None:
        for f in filters:
            result, _ = self.client.subscribe(f, qos=qos)
            assert result == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.2)  # let the SUBACKs arrive before anything is published

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        user_properties: list[tuple[str, str]] | None = None,
    ) -> None:
        props = None
        if self.v5 and (response_topic or correlation_data or user_properties):
            props = Properties(PacketTypes.PUBLISH)
            if response_topic:
                props.ResponseTopic = response_topic
            if correlation_data is not None:
                props.CorrelationData = correlation_data
            if user_properties:
                props.UserProperty = user_properties
        self.client.publish(topic, payload, qos=qos, properties=props)

    def pending(self) -> int:
        """Messages received and not yet taken."""
        with self._cond:
            return len(self._messages)

    def next(self, timeout: float = 10.0, topic: str | None = None) -> Received:
        """The oldest message not yet taken (on ``topic`` if given; others stay for later)."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, msg in enumerate(self._messages):
                    if topic is None or msg.topic == topic:
                        return self._messages.pop(i)
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no message on {topic or 'any topic'} within {timeout} s")
                self._cond.wait(remaining)

    def collect(self, count: int, timeout: float, topic: str | None = None) -> list[Received]:
        """``count`` messages (on ``topic`` if given), or fewer if ``timeout`` passes."""
        out: list[Received] = []
        end = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < end:
            try:
                out.append(self.next(timeout=max(0.01, end - time.monotonic()), topic=topic))
            except TimeoutError:
                break
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
