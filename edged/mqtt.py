"""The paho adapter: connect, reconnect, subscribe, publish. paho's types stop here; the rest
of edged sees ``Inbound`` and ``Outbound``."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edged.config import MqttConfig
from edged.errors import ConfigError
from edged.types import Inbound, Outbound

log = structlog.get_logger("edged.mqtt")
MAX_QUEUED_OUTBOUND = 10_000  # paho's own buffer of QoS>0 messages while disconnected


def _no_delay(client: paho.Client) -> None:
    """Turn off Nagle's algorithm: answers are small and must not wait for the next ACK."""
    sock = client.socket()
    if sock is not None and hasattr(sock, "setsockopt"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MqttClient:
    """One connection to the broker, kept up by paho's network thread.

    ``on_message`` is called on that thread for every message on ``subscriptions``; it must
    return quickly. The status topic carries ``online`` (retained) while connected, the
    broker publishes the last will ``offline`` if the connection is lost, and ``stop``
    publishes ``stopped``.
    """

    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        status_topic: str,
        subscriptions: Sequence[str],
        on_message: Callable[[Inbound], None],
    ) -> None:
        self._config = config
        self._status_topic = status_topic
        self._subscriptions = list(dict.fromkeys(subscriptions))
        self._on_message_cb = on_message
        self._v5 = config.protocol == "5"
        self.connected = threading.Event()
        self.last_activity = time.monotonic()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311,
        )
        self._client.enable_logger(None)
        self._client.max_queued_messages_set(MAX_QUEUED_OUTBOUND)
        self._client.reconnect_delay_set(
            min_delay=max(1, round(config.reconnect_min_s)), max_delay=round(config.reconnect_max_s)
        )
        self._client.will_set(status_topic, b"offline", qos=1, retain=True)
        self._configure_auth()
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_connect_fail = self._on_connect_fail
        self._down_logged = False

    def _configure_auth(self) -> None:
        cfg = self._config
        if cfg.username is not None:
            password = None
            if cfg.password_file is not None:
                try:
                    password = cfg.password_file.read_text(encoding="utf-8").splitlines()[0]
                except (OSError, IndexError) as exc:
                    raise ConfigError(
                        "mqtt.password_file", [f"cannot read {cfg.password_file}: {exc}"]
                    ) from exc
            self._client.username_pw_set(cfg.username, password)
        if cfg.tls is not None:
            tls = cfg.tls
            try:
                self._client.tls_set(
                    ca_certs=str(tls.ca_file) if tls.ca_file else None,
                    certfile=str(tls.cert_file) if tls.cert_file else None,
                    keyfile=str(tls.key_file) if tls.key_file else None,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError("mqtt.tls", [f"cannot load TLS material: {exc}"]) from exc
            self._client.tls_insecure_set(not tls.check_hostname)

    def start(self) -> None:
        """Connect in the background; paho retries until the broker answers."""
        properties = None
        if self._v5:
            properties = Properties(PacketTypes.CONNECT)
        self._client.connect_async(
            self._config.host,
            self._config.port,
            keepalive=self._config.keepalive_s,
            clean_start=True if self._v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self._client.loop_start()
        log.info("connecting", host=self._config.host, port=self._config.port,
                 protocol=self._config.protocol)

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``stopped``, disconnect cleanly (no last will) and stop the thread."""
        if self.connected.is_set():
            info = self._client.publish(self._status_topic, b"stopped", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, message: Outbound) -> None:
        """Queue ``message``; never blocks. Problems are logged, never raised."""
        properties = None
        if self._v5 and message.correlation_data is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = message.correlation_data
        try:
            info = self._client.publish(
                message.topic, message.payload, qos=message.qos, retain=message.retain,
                properties=properties,
            )
        except ValueError as exc:  # e.g. a Response Topic holding wildcards
            log.warning("cannot publish", topic=message.topic[:200], error=str(exc))
            return
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            log.warning("publish failed", topic=message.topic, rc=paho.error_string(info.rc))

    # paho callbacks, on paho's network thread

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            log.error("broker refused the connection", reason=str(reason))
            return
        self.last_activity = time.monotonic()
        self._down_logged = False
        _no_delay(client)
        qos = self._config.subscribe_qos
        if self._subscriptions:
            client.subscribe([(topic, qos) for topic in self._subscriptions])
        client.publish(self._status_topic, b"online", qos=1, retain=True)
        self.connected.set()
        log.info("connected", host=self._config.host, port=self._config.port,
                 subscriptions=self._subscriptions)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Properties | None) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected:
            log.warning("disconnected from broker; reconnecting", reason=str(reason))

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        if not self._down_logged:
            log.warning("broker unreachable; retrying with backoff",
                        host=self._config.host, port=self._config.port)
            self._down_logged = True

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        now = time.monotonic()
        self.last_activity = now
        props = getattr(msg, "properties", None)
        response_topic = correlation = expiry = None
        user: tuple[tuple[str, str], ...] = ()
        if props is not None:
            response_topic = getattr(props, "ResponseTopic", None) or None
            correlation = getattr(props, "CorrelationData", None)
            expiry = getattr(props, "MessageExpiryInterval", None)
            user = tuple((str(k), str(v)) for k, v in getattr(props, "UserProperty", ()))
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            log.warning("dropped a message whose topic is not UTF-8")
            return
        inbound = Inbound(
            topic=topic,
            payload=bytes(msg.payload),  # already bytes: no copy
            qos=msg.qos,
            received_wall=time.time(),
            received_mono=now,
            response_topic=response_topic,
            correlation_data=correlation,
            user_properties=user,
            expiry_interval_s=expiry,
        )
        try:
            self._on_message_cb(inbound)
        except Exception:  # the network thread must survive any one message
            log.exception("error handling a message", topic=topic)
