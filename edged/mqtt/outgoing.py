"""What edged sends: packet identifiers, the QoS 1/2 handshakes of its publishes and
subscriptions, the broker's announced limits, the session's resends, and the outbox for what
cannot go now.

Publishing works from any thread; acknowledgements are handled on the MQTT thread.

Sessions (MQTT 5 and 3.1.1 4.4): publishes the broker has not acknowledged outlive a lost
connection. When the next CONNACK says the session is present they go out again with their
original packet identifiers and DUP set, and PUBREL again for QoS 2 publishes past PUBREC
(MQTT-4.4.0-1, MQTT-3.3.1-1). When the session is gone they go out as new messages (at least
once: the broker may have delivered them before it lost the session).

Probation: a broker that refuses a publish without a reason code (every 3.1.1 broker, and NATS
for QoS 2) closes the connection, and resending the same publish on every reconnect would
close every connection after it. So when a connection is lost with publishes in flight, the
next connections send those publishes one at a time, and nothing new, until each is
acknowledged. A publish that is alone in flight when a connection is lost within
BLAME_WINDOW_S of its sending is blamed; blamed
``publish_attempts`` times it is set aside and reported (a QoS 2 publish first goes once more
at QoS 1, and edged publishes at QoS 1 from then on: the broker does not take QoS 2).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable

import structlog

from edged.delivery import Pending, Refusals, Tracker, split
from edged.mqtt import packets
from edged.mqtt.announced import NO_LIMIT, Announced
from edged.mqtt.link import Link
from edged.mqtt.packets import Ack, SubAck
from edged.outbox import Outbox
from edged.types import Outbound

log = structlog.get_logger("edged.mqtt")
FLUSH_WINDOW = 100  # outbox entries in flight at once, so a backlog cannot flood the broker
BLAME_WINDOW_S = 5.0  # a broker refusing a publish closes the connection on reading it: a
# connection lost longer after the publish on trial was sent is not blamed on it

Undeliverable = Callable[[Outbound, str, str], None]
"""Told of a message that will never be delivered: the message, a reason (``too_large``,
``refused``) and a sentence saying why."""


def _dup(data: bytes) -> bytes:
    """The same PUBLISH with DUP set (MQTT-3.3.1-1)."""
    return bytes((data[0] | 0x08,)) + data[1:]


class Outgoing:
    def __init__(self, v5: bool, outbox: Outbox, refusals: Refusals,
                 publish_attempts: int = 3,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._v5 = v5
        self.outbox = outbox
        self.refusals = refusals
        self.publish_attempts = publish_attempts
        self.link: Link | None = None
        """The connection's link while connected; None: publishes wait in the outbox."""
        self.dropped_offline = 0
        self.on_undeliverable: Undeliverable = lambda message, reason, text: None
        self.undeliverable: Counter[str] = Counter()
        self.downgraded = 0
        """Publishes sent at a lower QoS than asked, for the broker's Maximum QoS."""
        self.resent = 0
        """Publishes sent again with their original identifiers (session present)."""
        self._tracker = Tracker()
        self._released: dict[int, Pending] = {}  # QoS 2 publishes between PUBREC and PUBCOMP
        self._sub_mids: dict[int, list[str]] = {}  # SUBSCRIBE/UNSUBSCRIBE awaiting their ack
        self._carried: deque[tuple[int, Pending]] = deque()  # from the last connection
        self._reserved: set[int] = set()  # ids of carried publishes the session still holds
        self._in_flight_max = 65535
        self._max_qos = 2
        self._qos2_refused = False  # learned: the broker closes the connection on QoS 2
        self._retain = True
        self._packet_limit = NO_LIMIT
        self._probation = False
        self._trial: int | None = None  # the one publish in flight during probation
        self._trial_at = 0.0
        self._clock = clock
        self._blamed: Counter[int] = Counter()  # by id() of the message
        self._reporting = False
        self._told: set[str] = set()
        self._mid_lock = threading.Lock()
        self._mid = 0

    @property
    def on_probation(self) -> bool:
        return self._probation

    # the connection

    def attach(self, link: Link, announced: Announced) -> None:
        """A new connection, and what its broker announced: what the last one left
        unacknowledged goes out again (``flush_outbox`` sends it)."""
        self._sub_mids.clear()
        self._in_flight_max = announced.receive_maximum
        self._max_qos = min(announced.maximum_qos, 1 if self._qos2_refused else 2)
        self._retain = announced.retain_available
        self._packet_limit = announced.packet_limit()
        if announced.session_present:
            # MQTT-4.4.0-1: PUBREL again for what passed PUBREC; the publishes follow.
            for mid in self._released:
                link.send(packets.encode_ack(packets.PUBREL, mid, v5=self._v5))
        else:
            # The broker forgot the session: every carried publish is a new message,
            # including those it had taken (PUBREC) but not yet released: at least once.
            carried = [(0, record) for _, record in self._carried]
            carried += [(0, record) for record in self._released.values()]
            self._released.clear()
            self._carried = deque(carried)
            self._reserved.clear()
        self._v5 = announced.version == "5"
        self.link = link

    def detach(self, closed_by_broker: bool) -> None:
        """The connection is gone: what it left unacknowledged is carried to the next one;
        if the broker closed it with publishes in flight, the next one starts on probation."""
        self.link = None
        in_flight = self._tracker.take_records()
        if closed_by_broker and in_flight:
            if (self._probation and len(in_flight) == 1 and in_flight[0][0] == self._trial
                    and self._clock() - self._trial_at <= BLAME_WINDOW_S
                    and not self._blame(*in_flight[0])):
                in_flight = []
            self._probation = True
        self._trial = None
        self._carried.extendleft(reversed(in_flight))
        self._reserved.update(mid for mid, _ in in_flight if mid)
        if not self._carried:  # the one under suspicion was set aside: nothing else is
            self._end_probation()

    def _end_probation(self) -> None:
        self._probation = False
        self._blamed.clear()

    def _blame(self, mid: int, record: Pending) -> bool:
        """The broker closed the connection with ``record`` alone in flight: False once it
        is set aside (or resent anew at QoS 1), True while it may be tried again."""
        key = id(record.message)  # the same object on every resend, alive while carried
        self._blamed[key] += 1
        if self._blamed[key] < self.publish_attempts:
            return True
        del self._blamed[key]
        self._reserved.discard(mid)
        if record.qos == 2 and not self._qos2_refused:
            self._qos2_refused = True
            self._max_qos = min(self._max_qos, 1)
            log.warning("the broker closes the connection on QoS 2 publishes: edged "
                        "publishes at QoS 1 from now on (set the routes' publish_qos to 1)",
                        topic=record.topic[:200], attempts=self.publish_attempts)
            self._carried.appendleft((0, record))  # anew, with a new id, at QoS 1
            return False
        text = (f"the broker closed the connection each of the {self.publish_attempts} "
                "times this message was sent alone; it was set aside so that the messages "
                "behind it can flow")
        if record.entry_id is not None:
            self.outbox.ack(record.entry_id)
        self._undeliverable(record.message, "refused", text)
        return False

    # publishing (any thread)

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
        """Encode and send ``message``; False while disconnected, on probation, or when the
        broker's Receive Maximum leaves no room for another QoS 1/2 message now."""
        link = self.link
        if link is None:
            return False
        qos = max(message.qos, 1) if entry_id is not None else message.qos
        if qos > self._max_qos:  # MQTT-3.2.2-11
            qos = self._max_qos
            self.downgraded += 1
        mid = 0
        if qos:
            if (self._probation or self._carried or self._tracker.outstanding()
                    + len(self._released) >= self._in_flight_max):
                return False
            mid = self._next_mid()
        try:
            data = packets.encode_publish(
                message.topic, message.payload, v5=self._v5, qos=qos, mid=mid,
                retain=message.retain and self._retain,  # MQTT-3.2.2-14
                correlation_data=message.correlation_data,
                user_properties=message.user_properties)
        except ValueError as exc:  # e.g. a Response Topic holding wildcards: never valid
            log.warning("cannot publish", topic=message.topic[:200], error=str(exc))
            if entry_id is not None:
                self.outbox.ack(entry_id)
            return True
        if len(data) > self._packet_limit:  # MQTT-3.2.2-15
            if entry_id is not None:
                self.outbox.ack(entry_id)
            self._undeliverable(message, "too_large", (
                f"the message is {len(data)} bytes and the broker's Maximum Packet Size is "
                f"{self._packet_limit} bytes"))
            return True
        if qos:
            self._tracker.sent(mid, Pending(message, qos, entry_id, data))
        link.send(data)
        return True

    def _undeliverable(self, message: Outbound, reason: str, text: str) -> None:
        """Count, log once per reason, and tell (the errors topic, the requester): never
        about the messages that tell, which could loop."""
        self.undeliverable[reason] += 1
        if reason not in self._told:
            self._told.add(reason)
            log.error("a message cannot be delivered through this broker", reason=reason,
                      topic=message.topic[:200], error=text)
        if self._reporting:
            return
        self._reporting = True
        try:
            self.on_undeliverable(message, reason, text)
        finally:
            self._reporting = False

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
                if not (self._tracker.has(mid) or mid in self._released or mid in self._sub_mids
                        or mid in self._reserved):
                    return mid
        raise RuntimeError("no MQTT packet identifier free")  # bounded by Receive Maximum

    # on the MQTT thread

    def on_ack(self, link: Link, ack: Ack) -> None:
        if ack.kind == packets.PUBREC and not packets.is_failure(ack.reason):
            record = self._tracker.acked(ack.mid)
            if record is not None:
                self._released[ack.mid] = record
            link.send(packets.encode_ack(packets.PUBREL, ack.mid, v5=self._v5))
            self._trial_done(ack.mid)
            return
        record = (self._released.pop(ack.mid, None) if ack.kind == packets.PUBCOMP
                  else self._tracker.acked(ack.mid))
        if record is None:
            return
        if self._probation:
            self._trial_done(ack.mid)
        if record.entry_id is not None:
            self.outbox.ack(record.entry_id)
        if packets.is_failure(ack.reason):
            text = packets.reason_text(ack.reason, ack.kind)
            self.refusals.refused("publish", record.topic, text)
            self._undeliverable(record.message, "refused", f"the broker refused it: {text}")

    def _trial_done(self, mid: int) -> None:
        if mid == self._trial:
            self._trial = None
            if not self._carried:  # every publish under suspicion went through
                self._end_probation()

    def on_suback(self, ack: SubAck) -> None:
        filters = self._sub_mids.pop(ack.mid, [])
        for topic_filter, reason in zip(filters, ack.reasons, strict=False):
            if packets.is_failure(reason):
                self.refusals.refused("subscribe", topic_filter,
                                      packets.reason_text(reason, ack.kind))

    def flush_outbox(self) -> None:
        """Send what the last connection left first, then the oldest waiting entries, as
        many as the broker, the window and probation allow."""
        if self._carried:
            self._resend()
        if self._carried or self._probation or not len(self.outbox):
            return
        room = min(FLUSH_WINDOW - self._tracker.in_flight_entries(),
                   self._in_flight_max - self._tracker.outstanding() - len(self._released))
        taken = self.outbox.take(max(room, 0))
        for i, (entry_id, message) in enumerate(taken):
            if not self.send(message, entry_id):
                self.outbox.release([entry for entry, _ in taken[i:]])
                break

    def _resend(self) -> None:
        link = self.link
        if link is None:
            return
        while self._carried:
            if self._probation and self._tracker.outstanding():
                return  # one at a time
            if self._tracker.outstanding() + len(self._released) >= self._in_flight_max:
                return
            mid, record = self._carried.popleft()
            if mid and record.qos > self._max_qos:  # refused at QoS 2: anew, at QoS 1
                self._reserved.discard(mid)
                mid = 0
            if mid:  # the session holds it: the same id, DUP set (MQTT-4.4.0-1)
                self._reserved.discard(mid)
                data = _dup(record.data)
                self.resent += 1
            else:
                mid = self._next_mid()
                qos = min(record.qos, self._max_qos)
                data = packets.encode_publish(
                    record.topic, record.message.payload, v5=self._v5, qos=qos, mid=mid,
                    retain=record.message.retain and self._retain,
                    correlation_data=record.message.correlation_data,
                    user_properties=record.message.user_properties)
                record = Pending(record.message, qos, record.entry_id, data)
            self._tracker.sent(mid, record)
            if self._probation:
                self._trial, self._trial_at = mid, self._clock()
            link.send(data)

    def all_delivered(self) -> bool:
        link = self.link
        return (not len(self.outbox) and not self._tracker.outstanding() and not self._carried
                and not self._released and not (link is not None and link.wants_write()))

    def requeue_unacked(self) -> None:
        """At shutdown: QoS 1/2 messages not acknowledged go to the outbox (the spool, when
        there is one), for the next run of edged. At least once: the broker may have them."""
        records = [record for _, record in self._tracker.take_records()]
        records += [record for _, record in self._carried]
        records += self._released.values()
        self._carried.clear()
        self._released.clear()
        self._reserved.clear()
        messages, entries = split(records)
        self.outbox.release(entries)
        for message in messages:
            self.outbox.put(message)

    def snapshot(self) -> dict[str, object]:
        return {"qos_downgraded": self.downgraded, "resent_in_session": self.resent,
                "undeliverable": dict(self.undeliverable), "on_probation": self._probation,
                "qos2_refused_by_broker": self._qos2_refused}
