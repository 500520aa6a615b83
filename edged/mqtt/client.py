"""The paho adapter: connect, reconnect, subscribe, publish. paho's types stop here; the rest
of edged sees ``Inbound`` and ``Outbound``.

edged runs paho's network loop on a thread of its own rather than ``loop_start``: paho's
reconnect has no jitter, cannot say why a broker refused, and hides its heartbeat. The
session is persistent (MQTT 5 clean start off with a session expiry, or 3.1.1 clean session
off) under a stable client id, so QoS 1 input sent while edged is away waits at the broker.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edged import auth
from edged.backoff import Backoff
from edged.config import MqttConfig, OutboxConfig
from edged.delivery import ConnectionState, Pending, Refusals, Tracker
from edged.mqtt import fastpath, wire
from edged.outbox import Outbox
from edged.types import Inbound, Outbound

log = structlog.get_logger("edged.mqtt")
MAX_QUEUED_OUTBOUND = 10_000  # paho's own buffer of QoS>0 messages
LOOP_S = 0.1  # network loop tick: how soon outbox entries and queued calls are served
FLUSH_WINDOW = 100  # outbox entries in flight at once, so a backlog cannot flood paho
READ_BATCH = 32  # packets read back to back before the loop selects again

class MqttClient:
    """One connection to the broker, kept up by edged's MQTT thread.

    ``on_message`` is called on that thread for every message on ``subscriptions``; it must
    return quickly. The status topic carries ``online`` (retained) while connected, the
    broker publishes the last will ``offline`` if the connection is lost, and ``stop``
    publishes ``stopped``. QoS 1 messages published while the broker is unreachable wait
    in the outbox and go out, oldest first, once it is back.
    """

    def __init__(self, config: MqttConfig, client_id: str, status_topic: str,
                 subscriptions: Sequence[str], on_message: Callable[[Inbound], None],
                 outbox: Outbox | None = None) -> None:
        fastpath.install()
        self._config = config
        self._status_topic = status_topic
        self._subscriptions = list(dict.fromkeys(subscriptions))
        self._on_message_cb = on_message
        self._v5 = config.protocol == "5"
        self.outbox = outbox if outbox is not None else Outbox(OutboxConfig())
        self.connected = threading.Event()
        self.loop_beat = time.monotonic()
        """When the MQTT thread last went round its loop (for the systemd watchdog)."""
        self.state = ConnectionState()
        self.refusals = Refusals()
        self.dropped_offline = 0
        self._messages_in = 0  # PUBLISH packets handed to edged, for batched reading
        self._holding = False
        self.held_for_next_session = 0
        """QoS 1 messages left unacknowledged on shutdown for the next session."""
        self._tracker = Tracker()
        self.announce: list[Outbound] = []
        """Published on every connect, after ``online`` (Home Assistant discovery)."""
        self._backoff = Backoff(config.reconnect_min_s, config.reconnect_max_s)
        self._stop = threading.Event()
        self._closing = False
        self._calls: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = (
            queue.SimpleQueue())
        self._sub_mids: dict[int, list[str]] = {}
        self._thread: threading.Thread | None = None
        self._client = self._make_client(client_id)

    def _make_client(self, client_id: str) -> paho.Client:
        cfg = self._config
        client = fastpath.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if self._v5 else cfg.session_expiry_s == 0,
            manual_ack=True,  # acknowledged in _on_message, except input held on shutdown
        )
        client.enable_logger(None)
        client.max_queued_messages_set(MAX_QUEUED_OUTBOUND)
        client.will_set(self._status_topic, b"offline", qos=1, retain=True)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, auth.password(cfg))
        if cfg.tls is not None:
            client.tls_set_context(auth.tls_context(cfg.tls))
        # Every socket write must happen on the MQTT thread: an SSL connection corrupts its
        # records (SSL BAD_LENGTH) when a worker writes while that thread reads. Without
        # loop_start, paho writes inline in the publishing thread unless an external loop
        # registers for writes; these no-op hooks make it only queue and wake our loop.
        client.on_socket_register_write = lambda c, u, sock: None
        client.on_socket_unregister_write = lambda c, u, sock: None
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        return client

    # lifecycle

    def start(self) -> None:
        """Connect in the background; retried with backoff until the broker answers."""
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()
        log.info("connecting", host=self._config.host, port=self._config.port,
                 protocol=self._config.protocol, tls=self._config.tls is not None)

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what waits (for up to ``timeout`` s), publish ``stopped``, disconnect
        cleanly (no last will), and keep what is still undelivered in the spool when
        there is one."""
        flush = self.flush(timeout)
        if self.connected.is_set():
            info = self._client.publish(self._status_topic, b"stopped", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2.0)
        self._closing = True
        self._client.disconnect()
        # The loop thread writes the DISCONNECT; stopping it first could leave the packet
        # unsent, and the broker would then publish the will (offline) over "stopped".
        end = time.monotonic() + 2.0
        while self.connected.is_set() and time.monotonic() < end:
            time.sleep(0.01)
        # After the DISCONNECT: the thread's backoff wait ends on this, never reconnects.
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        for message in self._tracker.take_unacked():
            self.outbox.put(message)
        left = self.outbox.close()
        self.state.change("stopped", delivered_on_stop=flush, undelivered=left,
                          kept_in_spool=self.outbox.spooled,
                          held_for_next_session=self.held_for_next_session)
        if left and not self.outbox.spooled:
            log.error("results not delivered and lost: no outbox.spool_path", count=left)

    def flush(self, timeout: float) -> bool:
        """Wait while connected until the outbox is empty and every QoS 1 publish is
        acknowledged, for up to ``timeout`` s; True if everything was delivered."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.connected.is_set():
            if not len(self.outbox) and not self._tracker.outstanding():
                return True
            time.sleep(0.02)
        return not len(self.outbox) and not self._tracker.outstanding()

    def call_in_loop(self, fn: Callable[[], None], timeout: float = 10.0) -> bool:
        """Run ``fn`` on the MQTT thread between two messages (so it never runs while
        ``on_message`` does); True once it ran."""
        if self._thread is None or not self._thread.is_alive():
            fn()
            return True
        done = threading.Event()
        self._calls.put((fn, done))
        return done.wait(timeout)

    def set_subscriptions(self, filters: Sequence[str]) -> None:
        """Subscribe to new filters and drop old ones. Call it through ``call_in_loop``."""
        new = list(dict.fromkeys(filters))
        added = [f for f in new if f not in self._subscriptions]
        removed = [f for f in self._subscriptions if f not in new]
        self._subscriptions = new
        if self.connected.is_set():
            if removed:
                self._client.unsubscribe(removed)
            if added:
                self._subscribe(added)

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.state.summary(), "outbox": self.outbox.snapshot(),
                "dropped_offline_qos0": self.dropped_offline, **self.refusals.snapshot()}

    # the MQTT thread

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._connect():
                self._serve()
            if not self._stop.is_set():
                self._wait(self._backoff.next())

    def _connect(self) -> bool:
        cfg = self._config
        self.state.attempts += 1
        properties = None
        if self._v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = cfg.session_expiry_s
            properties.ReceiveMaximum = cfg.receive_maximum
        try:
            self._client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s,
                                 clean_start=cfg.session_expiry_s == 0 if self._v5 else
                                 paho.MQTT_CLEAN_START_FIRST_ONLY,
                                 properties=properties)
        except (OSError, ValueError) as exc:
            self.state.change("unreachable", wire.describe_connect_error(exc),
                              host=cfg.host, port=cfg.port)
            return False
        return True

    def _serve(self) -> None:
        while not self._stop.is_set():
            rc = self._client.loop(timeout=LOOP_S)
            if rc == paho.MQTT_ERR_SUCCESS:
                rc = self._read_on()
            self.loop_beat = time.monotonic()
            self._run_calls()
            if rc != paho.MQTT_ERR_SUCCESS:
                return
            if self.connected.is_set():
                self._flush_outbox()

    def _read_on(self) -> MQTTErrorCode:
        """paho's loop reads one packet per select(). While messages keep coming, read on
        without selecting again (up to READ_BATCH), writing whatever answers are waiting
        between them; stop at the first read that brings no message."""
        rc = paho.MQTT_ERR_SUCCESS
        for _ in range(READ_BATCH):
            before = self._messages_in
            rc = self._client.loop_read()
            if rc == paho.MQTT_ERR_SUCCESS and self._client.want_write():
                rc = self._client.loop_write()
            if rc != paho.MQTT_ERR_SUCCESS or self._messages_in == before:
                break
        return rc

    def _wait(self, seconds: float) -> None:
        """Sleep between attempts, still serving queued calls and showing a heartbeat."""
        end = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < end:
            self._stop.wait(min(LOOP_S, max(0.0, end - time.monotonic())))
            self.loop_beat = time.monotonic()
            self._run_calls()

    def _run_calls(self) -> None:
        while True:
            try:
                fn, done = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                fn()
            except Exception:
                log.exception("error in a call on the MQTT thread")
            finally:
                done.set()

    def _flush_outbox(self) -> None:
        if not len(self.outbox):  # the common case, and no query of the spool each tick
            return
        room = FLUSH_WINDOW - self._tracker.in_flight_entries()
        if room <= 0:
            return
        for entry_id, message in self.outbox.take(room):
            if not self._send(message, entry_id):
                break

    # publishing

    def outbound_lag(self) -> float:
        """Seconds a publish now waits before it leaves; 0 while disconnected, when results
        go to the outbox instead (delivered late by design, not by congestion)."""
        return self._tracker.lag() if self.connected.is_set() else 0.0

    def publish(self, message: Outbound) -> None:
        """Queue ``message``; never blocks. QoS 0 is dropped (and counted) while
        disconnected; QoS 1 and 2 wait in the outbox."""
        if message.qos == 0:
            if self.connected.is_set():
                self._send(message, None)
            else:
                self.dropped_offline += 1
            return
        if self.connected.is_set() and not len(self.outbox):
            self._send(message, None)
        else:
            self.outbox.put(message)

    def _send(self, message: Outbound, entry_id: int | None) -> bool:
        """Hand ``message`` to paho; False if paho's buffer is full (try again later)."""
        properties = None
        if self._v5 and (message.correlation_data is not None or message.user_properties):
            properties = fastpath.reply_properties(message.correlation_data,
                                                   message.user_properties)
        qos = max(message.qos, 1) if entry_id is not None else message.qos
        try:
            info = self._client.publish(message.topic, message.payload, qos=qos,
                                        retain=message.retain, properties=properties)
        except ValueError as exc:  # e.g. a Response Topic holding wildcards: never valid
            log.warning("cannot publish", topic=message.topic[:200], error=str(exc))
            if entry_id is not None:
                self.outbox.ack(entry_id)
            return True
        if info.rc == paho.MQTT_ERR_QUEUE_SIZE:
            if entry_id is None:
                self.outbox.put(message)
            else:
                self.outbox.release([entry_id])
            return False
        direct = message if entry_id is None and qos > 0 else None
        if self._tracker.sent(info.mid, Pending(message.topic, qos, entry_id, direct)):
            self._delivered(Pending(message.topic, qos, entry_id, direct), None)
        return True

    def _delivered(self, record: Pending, reason: ReasonCode | None) -> None:
        if record.entry_id is not None:
            self.outbox.ack(record.entry_id)
        if reason is not None and reason.is_failure:
            self.refusals.refused("publish", record.topic, str(reason))

    # paho callbacks, on the MQTT thread

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            text = str(reason)
            hint = wire.REFUSAL_HINTS.get(text, "")
            self.state.change("refused the connection", f"{text}: {hint}" if hint else text,
                              host=self._config.host, port=self._config.port)
            return
        self._backoff.reset()
        wire.no_delay(client)
        if self._subscriptions:
            self._subscribe(self._subscriptions)
        client.publish(self._status_topic, b"online", qos=1, retain=True)
        for message in self.announce:  # retained each time: the consumer may have restarted
            self._send(message, None)
        self.connected.set()
        self.state.change("connected", host=self._config.host, port=self._config.port,
                          session_present=bool(getattr(flags, "session_present", False)),
                          waiting_in_outbox=len(self.outbox),
                          subscriptions=self._subscriptions)

    def _subscribe(self, filters: list[str]) -> None:
        qos = self._config.subscribe_qos
        rc, mid = self._client.subscribe([(f, qos) for f in filters])
        if rc == paho.MQTT_ERR_SUCCESS and mid is not None:
            self._sub_mids[mid] = filters

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Properties | None) -> None:
        filters = self._sub_mids.pop(mid, [])
        for topic_filter, reason in zip(filters, reasons, strict=False):
            if reason.is_failure:
                self.refusals.refused("subscribe", topic_filter, str(reason))

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Properties | None) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        self._tracker.connection_lost()
        if was_connected and not self._closing:
            self.state.change("disconnected", str(reason))

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int,
                    reason: ReasonCode, properties: Properties | None) -> None:
        record = self._tracker.acked(mid)
        if record is not None:
            self._delivered(record, reason)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        now = time.monotonic()
        self._messages_in += 1
        if self._holding and msg.qos == 1:
            # Not acknowledged: the broker delivers it again to edged's next session.
            self.held_for_next_session += 1
            return
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            log.warning("dropped a message whose topic is not UTF-8")
            return
        finally:
            if msg.qos:
                client.ack(msg.mid, msg.qos)
        try:
            self._on_message_cb(wire.inbound(msg, topic, now))
        except Exception:  # the network thread must survive any one message
            log.exception("error handling a message", topic=topic[:200])

    def hold_input(self) -> bool:
        """Stop taking QoS 1 input without losing it: from now on it is left unacknowledged,
        and the broker delivers it again when edged's session resumes. Only with a
        persistent session (``session_expiry_s`` > 0); True if input is now held. QoS 0 and
        QoS 2 input still reach edged (the broker would not deliver them again)."""
        self._holding = self._config.session_expiry_s > 0
        return self._holding


