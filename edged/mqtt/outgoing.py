"""What edged sends: packet identifiers, the QoS 1/2 handshakes of its publishes and
subscriptions, the broker's Receive Maximum, and the outbox for what cannot go now.

Publishing works from any thread; acknowledgements are handled on the MQTT thread.
"""

from __future__ import annotations

import threading

import structlog

from edged.delivery import Pending, Refusals, Tracker
from edged.mqtt import packets
from edged.mqtt.link import Link
from edged.mqtt.packets import Ack, SubAck
from edged.outbox import Outbox
from edged.types import Outbound

log = structlog.get_logger("edged.mqtt")
FLUSH_WINDOW = 100  # outbox entries in flight at once, so a backlog cannot flood the broker


class Outgoing:
    def __init__(self, v5: bool, outbox: Outbox, refusals: Refusals) -> None:
        self._v5 = v5
        self.outbox = outbox
        self.refusals = refusals
        self.link: Link | None = None
        """The connection's link while connected; None: publishes wait in the outbox."""
        self.dropped_offline = 0
        self._tracker = Tracker()
        self._released: dict[int, Pending] = {}  # QoS 2 publishes between PUBREC and PUBCOMP
        self._sub_mids: dict[int, list[str]] = {}  # SUBSCRIBE/UNSUBSCRIBE awaiting their ack
        self._in_flight_max = 65535
        self._mid_lock = threading.Lock()
        self._mid = 0

    def attach(self, link: Link, receive_maximum: int) -> None:
        """A new connection: what the last one left unacknowledged goes out again."""
        self.requeue_unacked()
        self._sub_mids.clear()
        self._in_flight_max = receive_maximum
        self.link = link

    def detach(self) -> None:
        self.link = None
        self.requeue_unacked()

    def publish(self, message: Outbound) -> None:
        """Send ``message``, or queue it; never blocks. QoS 0 is dropped (and counted) while
        disconnected; QoS 1 and 2 wait in the outbox."""
        if message.qos == 0:
            if not self.send(message, None):
                self.dropped_offline += 1
            return
        if self.link is None or len(self.outbox) or not self.send(message, None):
            self.outbox.put(message)

    def send(self, message: Outbound, entry_id: int | None) -> bool:
        """Encode and send ``message``; False while disconnected or when the broker's
        Receive Maximum leaves no room for another QoS 1/2 message now."""
        link = self.link
        if link is None:
            return False
        qos = max(message.qos, 1) if entry_id is not None else message.qos
        mid = 0
        if qos:
            if self._tracker.outstanding() + len(self._released) >= self._in_flight_max:
                return False
            mid = self._next_mid()
        try:
            data = packets.encode_publish(
                message.topic, message.payload, v5=self._v5, qos=qos, mid=mid,
                retain=message.retain, correlation_data=message.correlation_data,
                user_properties=message.user_properties)
        except ValueError as exc:  # e.g. a Response Topic holding wildcards: never valid
            log.warning("cannot publish", topic=message.topic[:200], error=str(exc))
            if entry_id is not None:
                self.outbox.ack(entry_id)
            return True
        if qos:
            direct = message if entry_id is None else None
            self._tracker.sent(mid, Pending(message.topic, qos, entry_id, direct))
        link.send(data)
        return True

    def subscribe(self, link: Link, filters: list[str], qos: int) -> None:
        mid = self._next_mid()
        self._sub_mids[mid] = filters
        link.send(packets.encode_subscribe(mid, filters, qos, v5=self._v5))

    def unsubscribe(self, link: Link, filters: list[str]) -> None:
        mid = self._next_mid()
        self._sub_mids[mid] = []  # its UNSUBACK frees the id; nothing to report
        link.send(packets.encode_unsubscribe(mid, filters, v5=self._v5))

    def _next_mid(self) -> int:
        with self._mid_lock:
            for _ in range(65535):
                self._mid = self._mid % 65535 + 1
                mid = self._mid
                if not (self._tracker.has(mid) or mid in self._released or mid in self._sub_mids):
                    return mid
        raise RuntimeError("no MQTT packet identifier free")  # bounded by Receive Maximum

    # on the MQTT thread

    def on_ack(self, link: Link, ack: Ack) -> None:
        if ack.kind == packets.PUBREC and not packets.is_failure(ack.reason):
            record = self._tracker.acked(ack.mid)
            if record is not None:
                self._released[ack.mid] = record
            link.send(packets.encode_ack(packets.PUBREL, ack.mid, v5=self._v5))
            return
        record = (self._released.pop(ack.mid, None) if ack.kind == packets.PUBCOMP
                  else self._tracker.acked(ack.mid))
        if record is None:
            return
        if record.entry_id is not None:
            self.outbox.ack(record.entry_id)
        if packets.is_failure(ack.reason):
            self.refusals.refused("publish", record.topic,
                                  packets.reason_text(ack.reason, ack.kind))

    def on_suback(self, ack: SubAck) -> None:
        filters = self._sub_mids.pop(ack.mid, [])
        for topic_filter, reason in zip(filters, ack.reasons, strict=False):
            if packets.is_failure(reason):
                self.refusals.refused("subscribe", topic_filter,
                                      packets.reason_text(reason, ack.kind))

    def flush_outbox(self) -> None:
        """Send the oldest waiting entries, as many as the broker and the window allow."""
        if not len(self.outbox):
            return
        room = min(FLUSH_WINDOW - self._tracker.in_flight_entries(),
                   self._in_flight_max - self._tracker.outstanding() - len(self._released))
        for entry_id, message in self.outbox.take(max(room, 0)):
            if not self.send(message, entry_id):
                self.outbox.release([entry_id])
                break

    def all_delivered(self) -> bool:
        link = self.link
        return (not len(self.outbox) and not self._tracker.outstanding()
                and not self._released and not (link is not None and link.wants_write()))

    def requeue_unacked(self) -> None:
        """QoS 1/2 messages not acknowledged go out again after the reconnect (or in the
        next session, from the spool), through the outbox: at least once, as the broker may
        already have them."""
        messages, entries = self._tracker.take_all()
        entries += [r.entry_id for r in self._released.values() if r.entry_id is not None]
        messages += [r.message for r in self._released.values() if r.message is not None]
        self._released.clear()
        self.outbox.release(entries)
        for message in messages:
            self.outbox.put(message)
