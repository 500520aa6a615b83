"""edged's MQTT client: one connection kept up by one thread of its own, speaking MQTT 5 or
3.1.1 through edged's own codec (``packets``) over a socket loop (``link``).

Why not paho's client: on a small box the CPU spent per message decides what edged can
serve. paho reads a packet with three or more ``recv()`` calls, builds a message object and
a property table for each, and takes locks and a wake-up per publish; the loop a user would
write around it spends 240-320 us of CPU per request on this project's machine, most of it
there (docs/benchmarks.md). This loop reads everything the socket has in one ``recv()``,
hands each message to edged on this thread (small models run right here), and sends every
answer and acknowledgement of a batch in one ``send()``.

The session is persistent (MQTT 5 clean start off with a session expiry, or 3.1.1 clean
session off) under a stable client id, so QoS 1 input sent while edged is away waits at the
broker. Input is acknowledged by edged itself, and left unacknowledged once ``hold_input``
is called (the SIGTERM drain), so the broker delivers it again to the next session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import select
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from edged.auth import Material
from edged.backoff import Backoff
from edged.config import MqttConfig, OutboxConfig
from edged.delivery import ConnectionState, Refusals
from edged.mqtt import packets, wire
from edged.mqtt.announced import Announced, findings
from edged.mqtt.coalesce import Coalescer
from edged.mqtt.link import Link, LinkClosed
from edged.mqtt.negotiate import Negotiator, Refused, Unreachable
from edged.mqtt.outgoing import Outgoing, Undeliverable
from edged.mqtt.packets import Ack, ConnAck, Disconnect, PingResp, Publish, SubAck
from edged.mqtt.wakeup import Wakeup
from edged.mqtt.wayback import WayBack
from edged.outbox import Outbox
from edged.types import Inbound, Outbound

log = structlog.get_logger("edged.mqtt")
LOOP_S = 0.1  # longest sleep: how soon outbox entries, calls and timers are served
TIMERS_S = 0.01  # keep-alive, probes and the outbox, at most this often (and after acks)
_POLL_IN, _POLL_OUT = select.POLLIN | select.POLLPRI, select.POLLOUT


class MqttClient:
    """One connection to the broker, kept up by edged's MQTT thread.

    ``on_message`` is called on that thread for every message on ``subscriptions``; models
    that take microseconds run inside it, slower ones hand over to workers. The status
    topic carries ``online`` (retained) while connected, the broker publishes the last
    will ``offline`` if the connection is lost, and ``stop`` publishes ``stopped``. QoS 1
    messages published while the broker is unreachable wait in the outbox and go out,
    oldest first, once it is back.
    """

    def __init__(self, config: MqttConfig, client_id: str, status_topic: str,
                 subscriptions: Sequence[str], on_message: Callable[[Inbound], None],
                 outbox: Outbox | None = None, material: Material | None = None,
                 announce: Callable[[], Sequence[Outbound]] | None = None,
                 probe_topic: str | None = None,
                 publish_qos: dict[str, int] | None = None) -> None:
        self._config = config
        self._client_id = client_id
        self._negotiator = Negotiator(config.protocol)
        self._v5 = self._negotiator.v5
        self._publish_qos = publish_qos or {}
        self.announced: Announced | None = None
        """What the broker said in the CONNACK of the current (or last) connection."""
        self._keepalive = config.keepalive_s
        self._will_retain = True  # until a broker says it keeps no retained messages
        self._material = material if material is not None else Material.load(config)
        self._status_topic = status_topic
        self._probe_topic = probe_topic or status_topic.rsplit("/", 1)[0] + "/probe"
        self._subscriptions = list(dict.fromkeys(subscriptions))
        self._on_message_cb = on_message
        self.refusals = Refusals()
        self._out = Outgoing(self._v5, outbox if outbox is not None else Outbox(OutboxConfig()),
                             self.refusals, config.publish_attempts)
        self.outbox = self._out.outbox
        self.publish: Callable[[Outbound], None] = self._out.publish
        """Send a message, or queue it; never blocks (any thread). QoS 0 is dropped (and
        counted) while disconnected; QoS 1 and 2 wait in the outbox. Outgoing's own method:
        every answer goes through it, and a method here passing it on would add a frame."""
        self.announce: Callable[[], Sequence[Outbound]] = announce or tuple
        """What to publish on every connect, after ``online`` (Home Assistant discovery):
        asked afresh each time."""
        self.connected = threading.Event()
        self.loop_beat = time.monotonic()
        """When the MQTT thread last went round its loop (for the systemd watchdog)."""
        self.state = ConnectionState()
        self.wayback = WayBack()
        self.held_for_next_session = 0
        """QoS 1 messages left unacknowledged on shutdown for the next session."""
        self.reads = 0
        """Reads of the socket that brought packets (with ``packets_read``: how many
        messages a wake-up serves, which read coalescing raises at high rates)."""
        self.packets_read = 0
        self._holding = False
        self._backoff = Backoff(config.reconnect_min_s, config.reconnect_max_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._qos2_in: set[int] = set()  # inbound QoS 2 ids between PUBREC and PUBREL
        self._acked = False  # acknowledgements came: the outbox may go on
        self._ping_sent: float | None = None
        self._nagle_told = False
        self._probe_lost_told = False
        self._told_findings: set[str] = set()
        self._status_at = 0.0  # when `online` was last published (retain unavailable)
        self._wakeup = Wakeup()

    @property
    def on_undeliverable(self) -> Undeliverable:
        """Told of each message that the broker will never take (too large for it, or
        refused): the server reports it on the errors topic and to its requester."""
        return self._out.on_undeliverable

    @on_undeliverable.setter
    def on_undeliverable(self, hook: Undeliverable) -> None:
        self._out.on_undeliverable = hook

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
            self.publish(Outbound(self._status_topic, b"stopped", qos=1, retain=True))
            self.flush(2.0)
        self.call_in_loop(self._disconnect, timeout=2.0)
        self._stop.set()
        self._wakeup.wake()
        if self._thread is not None:
            self._thread.join(5.0)
            if not self._thread.is_alive():
                self._wakeup.close()
        self._out.requeue_unacked()
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
            if self._out.all_delivered():
                return True
            self._wakeup.wake()
            time.sleep(0.02)
        return self._out.all_delivered()

    def call_in_loop(self, fn: Callable[[], None], timeout: float = 10.0) -> bool:
        """Run ``fn`` on the MQTT thread between two batches of messages (so it never runs
        while ``on_message`` does); True once it ran."""
        if self._thread is None or not self._thread.is_alive():
            fn()
            return True
        return self._wakeup.call(fn).wait(timeout)

    def set_subscriptions(self, filters: Sequence[str]) -> None:
        """Subscribe to new filters and drop old ones. Call it through ``call_in_loop``."""
        new = list(dict.fromkeys(filters))
        added = [f for f in new if f not in self._subscriptions]
        removed = [f for f in self._subscriptions if f not in new]
        self._subscriptions = new
        link = self._out.link
        if link is not None and self.connected.is_set():
            if removed:
                self._out.unsubscribe(link, removed)
            if added:
                self._out.subscribe(link, added, self._config.subscribe_qos)

    def summary(self) -> str:
        return self.state.summary()

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.state.summary(), "protocol": self._negotiator.version,
                "broker": self.announced.snapshot() if self.announced is not None else None,
                **self._out.snapshot(), "outbox": self.outbox.snapshot(),
                "dropped_offline_qos0": self._out.dropped_offline,
                "way_back": self.wayback.snapshot(),
                "packets_per_read": round(self.packets_read / self.reads, 2) if self.reads
                else None,
                **self.refusals.snapshot()}

    def hold_input(self) -> bool:
        """Stop taking QoS 1 input without losing it: from now on it is left unacknowledged,
        and the broker delivers it again when edged's session resumes. Only with a
        persistent session (``session_expiry_s`` > 0); True if input is now held. QoS 0 and
        QoS 2 input still reach edged (the broker would not deliver them again)."""
        self._holding = self._config.session_expiry_s > 0
        return self._holding

    # publishing (any thread)

    def reply_time(self, margin_ms: float | None) -> float:
        """How long (s) an answer needs after it is ready to reach its sender: how long the
        oldest answer not yet written has waited in edged, then ``margin_ms`` or, unset,
        the broker's round trip as edged's probes measure it. While disconnected, results
        go to the outbox instead (delivered late by design, not by congestion): 0 then,
        or the fixed margin. Read for every message: the link is there from the connection's
        acceptance until its end, which tells "connected" without ``Event.is_set()``."""
        fixed = 0.0 if margin_ms is None else margin_ms / 1000.0
        link = self._out.link
        if link is None:
            return fixed
        return link.lag() + (self.wayback.margin_s() if margin_ms is None else fixed)

    # the MQTT thread

    def _run(self) -> None:
        while not self._stop.is_set():
            link = self._connect()
            if link is not None:
                self._serve(link)
            if not self._stop.is_set():
                self._wait(self._backoff.next())

    def _connect(self) -> Link | None:
        cfg = self._config
        self.state.attempts += 1
        try:
            link, connack = self._negotiator.open(cfg, self._material, self._connect_packet)
        except Unreachable as exc:
            self.state.change("unreachable", str(exc), host=cfg.host, port=cfg.port)
            return None
        except Refused as exc:
            if exc.reason == packets.RETAIN_NOT_SUPPORTED and self._will_retain:
                # MQTT-3.2.2-13: the broker keeps no retained messages, so not the will.
                log.warning("the broker keeps no retained messages: the will and `online` "
                            "are sent without retain, and `online` again every keep-alive")
                self._will_retain = False
                return self._connect()
            self.state.change("refused the connection", str(exc), host=cfg.host,
                              port=cfg.port, protocol=self._negotiator.version)
            return None
        except ValueError as exc:  # MalformedPacket
            self.state.change("refused the connection", f"a malformed CONNACK: {exc}",
                              host=cfg.host, port=cfg.port)
            return None
        self._accepted(link, connack)
        return link

    def _connect_packet(self, v5: bool) -> bytes:
        cfg = self._config
        return packets.encode_connect(
            self._client_id, v5=v5, keepalive=cfg.keepalive_s,
            clean_start=cfg.session_expiry_s == 0, session_expiry_s=cfg.session_expiry_s,
            receive_maximum=cfg.receive_maximum if v5 else None,
            username=cfg.username,
            password=self._material.password.encode() if self._material.password else None,
            will_topic=self._status_topic, will_payload=b"offline", will_qos=1,
            will_retain=self._will_retain)

    def _accepted(self, link: Link, connack: ConnAck) -> None:
        self._backoff.reset()
        self._v5 = self._negotiator.v5
        announced = Announced.of(connack, self._negotiator.version)
        self.announced = announced
        if not announced.retain_available:
            self._will_retain = False
        self._keepalive = announced.keepalive(self._config.keepalive_s)  # MQTT-3.2.2-21
        link.wake = self._wakeup.wake
        if not connack.session_present:
            self._qos2_in.clear()
        self._ping_sent = None
        self._out.attach(link, announced)
        self._out.subscribe(link, [*self._subscriptions, self._probe_topic],
                            self._config.subscribe_qos)
        self._announce_status(link)
        self.connected.set()
        self.state.change("connected", host=self._config.host, port=self._config.port,
                          protocol=announced.version, session_present=connack.session_present,
                          waiting_in_outbox=len(self.outbox),
                          subscriptions=self._subscriptions)
        self._tell_findings(announced)

    def _announce_status(self, link: Link) -> None:
        """``online`` and the announcements (discovery), on every connect, and every
        keep-alive where the broker keeps no retained messages. QoS 0 while publishes are
        on probation, so that they do not wait behind it."""
        self._status_at = time.monotonic()
        qos = 0 if self._out.on_probation else 1
        for message in [Outbound(self._status_topic, b"online", qos=1, retain=True),
                        *self.announce()]:  # each time: the broker may have lost retained ones
            if qos < message.qos:
                message = dataclasses.replace(message, qos=qos)
            if not self._out.send(message, None):
                self.outbox.put(message)

    def _tell_findings(self, announced: Announced) -> None:
        """Log once what the broker announced that changes what edged does."""
        for finding in findings(announced, keepalive_s=self._config.keepalive_s,
                                publish_qos=self._publish_qos, filters=self._subscriptions):
            if (finding.warning or finding.fatal) and finding.line() not in self._told_findings:
                self._told_findings.add(finding.line())
                log.warning("the broker's announcement changes what edged does",
                            property=finding.name, announced=finding.value,
                            action=finding.action)

    def _serve(self, link: Link) -> None:
        # One pass per wake-up: at low rates every message pays for a pass, so the pass does
        # only what is due (the timers every TIMERS_S, calls when queued).
        poller = select.poll()
        poller.register(link.sock, _POLL_IN)
        poller.register(self._wakeup.fd, _POLL_IN)
        fd, writing, low_water = link.sock.fileno(), False, 1
        coalesce = Coalescer(self._config.coalesce_ms / 1000.0)
        wakeup, stop, tls = self._wakeup, self._stop, link.tls
        idle_ms, window_ms = LOOP_S * 1000, coalesce.window_s * 1000
        timers_at = 0.0
        try:
            if link.early:  # what the broker sent right behind its CONNACK
                self._handle(link, link.early)
            while not stop.is_set():
                wakeup.asleep = True
                if link.wants_write() != writing:
                    writing = not writing
                    poller.modify(fd, _POLL_IN | _POLL_OUT if writing else _POLL_IN)
                mark = coalesce.low_water()
                if mark != low_water:
                    low_water = mark
                    link.set_low_water(mark)
                waiting = tls and link.pending()
                events = [] if waiting else poller.poll(window_ms if mark > 1 else idle_ms)
                wakeup.woke()
                # While coalescing, what came before the mark is read when the window ends.
                readable = waiting or mark > 1
                for event_fd, _ in events:
                    readable = readable or event_fd == fd
                now = time.monotonic()
                if readable:
                    before = link.bytes_read
                    incoming = link.read()
                    coalesce.observe(now, len(incoming), link.bytes_read - before)
                    if incoming:
                        self.reads += 1
                        self.packets_read += len(incoming)
                        self._handle(link, incoming)
                elif not events:
                    coalesce.observe(now, 0, 0)
                link.flush()
                self.loop_beat = now
                if wakeup.queued():
                    wakeup.run_calls()
                if now >= timers_at or self._acked:
                    timers_at = now + TIMERS_S
                    self._timers(link, now)
                    link.flush()
        except LinkClosed as exc:
            self._lost(link, str(exc))
        finally:
            link.close()
            if self._out.link is link:
                self._out.detach(closed_by_broker=False)

    def _handle(self, link: Link, incoming: list[packets.Packet]) -> None:
        now = time.monotonic()
        wall = time.time()
        for packet in incoming:
            if isinstance(packet, Publish):
                self._on_publish(link, packet, now, wall)
            elif isinstance(packet, Ack) and packet.kind == packets.PUBREL:
                # the broker's QoS 2 message to edged is complete
                self._qos2_in.discard(packet.mid)
                link.send(packets.encode_ack(packets.PUBCOMP, packet.mid, v5=self._v5))
            elif isinstance(packet, Ack):
                self._out.on_ack(link, packet)
                self._acked = True  # room for what waits in the outbox
            elif isinstance(packet, SubAck):
                self._out.on_suback(packet)
            elif isinstance(packet, PingResp):
                self._ping_sent = None
            elif isinstance(packet, Disconnect):
                text = packets.reason_text(packet.reason, packets.DISCONNECT)
                raise LinkClosed(f"the broker disconnected edged: {text}"
                                 + (f" ({packet.reason_string})" if packet.reason_string
                                    else ""))
            else:
                raise LinkClosed(f"unexpected {type(packet).__name__} from the broker")

    def _on_publish(self, link: Link, msg: Publish, now: float, wall: float) -> None:
        if msg.qos == 1:
            if self._holding:
                # Not acknowledged: the broker delivers it again to edged's next session.
                self.held_for_next_session += 1
                return
            link.send(packets.encode_ack(packets.PUBACK, msg.mid, v5=self._v5))
        elif msg.qos == 2:
            link.send(packets.encode_ack(packets.PUBREC, msg.mid, v5=self._v5))
            if msg.mid in self._qos2_in:
                return  # a duplicate the broker sent again before our PUBREC reached it
            self._qos2_in.add(msg.mid)
        if msg.topic == self._probe_topic:
            self.wayback.returned_probe(msg.payload, now)
            return
        try:
            self._on_message_cb(wire.inbound(msg, now, wall))
        except Exception:  # the network thread must survive any one message
            log.exception("error handling a message", topic=msg.topic[:200])

    def _timers(self, link: Link, now: float) -> None:
        """Keep-alive, probes, the outbox: what the loop does besides messages, every
        TIMERS_S and after acknowledgements."""
        self._acked = False
        keepalive = self._keepalive
        if self._ping_sent is not None and keepalive and now - self._ping_sent > keepalive:
            raise LinkClosed(f"no answer to a ping within the keep-alive of {keepalive} s")
        # A ping when edged has been quiet, as the keep-alive asks, and when the broker has:
        # a broker that stopped answering while edged kept writing shows only this way.
        if self._ping_sent is None and keepalive and (
                now - link.last_write >= keepalive * 0.75
                or now - link.last_read >= keepalive * 0.75):
            link.send(packets.PINGREQ)
            self._ping_sent = now
        if self.wayback.due(now):
            self._probe(link, now)
        if not self._will_retain and now - self._status_at >= (keepalive or 60):
            self._announce_status(link)  # nothing retained: late subscribers learn it so
        self._out.flush_outbox()

    def _probe(self, link: Link, now: float) -> None:
        data = b"".join(packets.encode_publish(self._probe_topic, payload, v5=self._v5)
                        for payload in self.wayback.burst(now))
        link.send(data)
        if self.wayback.nagle_suspected and not self._nagle_told:
            self._nagle_told = True
            log.warning("the broker delays small messages (Nagle's algorithm): answers reach "
                        "their senders tens of ms late; set `set_tcp_nodelay true` in "
                        "mosquitto.conf", **self.wayback.snapshot())
        if self.wayback.lost(now) and not self._probe_lost_told:
            self._probe_lost_told = True
            log.warning("edged's probes do not come back through the broker (is "
                        f"{self._probe_topic!r} allowed by its ACL?); the reply margin stays "
                        "at its initial guess", margin_ms=self.wayback.margin_s() * 1000)

    def _lost(self, link: Link, why: str) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        self._out.detach(closed_by_broker=not self._stop.is_set())
        self.wayback.connection_lost()
        if was_connected and not self._stop.is_set():
            self.state.change("disconnected", why)

    def _disconnect(self) -> None:
        link = self._out.link
        if link is None:
            return
        with contextlib.suppress(LinkClosed):
            link.send(packets.encode_disconnect(v5=self._v5))
            link.flush()
        self.connected.clear()
        self._stop.set()

    def _wait(self, seconds: float) -> None:
        """Sleep between attempts, still serving queued calls and showing a heartbeat."""
        end = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < end:
            self._stop.wait(min(LOOP_S, max(0.0, end - time.monotonic())))
            self.loop_beat = time.monotonic()
            self._wakeup.run_calls()
