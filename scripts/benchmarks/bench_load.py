"""The bench's instruments: an open-loop raw-socket sender and a receiver of answers (plain
paho, or a raw-socket reader).

They know nothing of edged's internals, so the same instruments measure edged and the
seed-style peer. The sender and the receiver are separate processes, so a busy sender
cannot delay the reading of answers (which would show up as latency the server did not
cause). Both stamp wall-clock time on the same machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing import Pipe, Process
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion


def renice(niceness: int) -> None:
    """Run this process at ``niceness`` when allowed (a negative one needs root)."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, niceness)


@dataclass(frozen=True)
class Answer:
    arrived: float
    reason: str | None  # the refusal's reason, None for a result
    server_received: float | None  # wall time the server read the request, when it says
    server_timings_ms: dict[str, float]  # edged's stages, as its answer gave them
    label: Any = None  # the answer's label, as it gave it

    @property
    def server_total_ms(self) -> float | None:
        return self.server_timings_ms.get("total")

    @property
    def server_queue_ms(self) -> float:
        return self.server_timings_ms.get("queue", 0.0)


def hand_over(conn: Connection, lock: threading.Lock,
              raw: dict[int, tuple[float, bytes]]) -> None:
    """Until told to stop: on each ``take``, hand the answers so far to the bench, parsed."""
    while (command := conn.recv()) != "stop":
        if command == "take":
            with lock:
                taken = dict(raw)
                raw.clear()
            conn.send({seq: parse_answer(*item) for seq, item in taken.items()})


def parse_answer(arrived: float, payload: bytes) -> Answer:
    """edged's answers say when it read the request and where the time went; the peer's
    say only the label and the score."""
    try:
        body = json.loads(payload)
    except ValueError:
        return Answer(arrived, "unparsable_answer", None, {})
    if not isinstance(body, dict):
        return Answer(arrived, None, None, {})
    received = body.get("received_at")
    when = (datetime.fromisoformat(received.replace("Z", "+00:00")).timestamp()
            if isinstance(received, str) else None)
    error = body.get("error")
    reason = str(error.get("reason")) if isinstance(error, dict) else None
    timings = body.get("timings_ms")
    return Answer(arrived, reason, when, timings if isinstance(timings, dict) else {},
                  body.get("label"))


def receive(port: int, topic: str, conn: Connection, niceness: int) -> None:
    """Receiver process: collect answers until told to hand them over or stop."""
    renice(niceness)
    lock = threading.Lock()
    raw: dict[int, tuple[float, bytes]] = {}

    def on_message(client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Stamp and keep; parse later, so a busy phase does not delay the stamps.
        now = time.time()
        corr = getattr(msg.properties, "CorrelationData", None)
        if corr is not None:
            with lock:
                raw[int(corr)] = (now, bytes(msg.payload))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-rx-{os.getpid()}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.subscribe(topic, qos=0)
    client.loop_start()
    time.sleep(0.3)
    conn.send("ready")
    hand_over(conn, lock, raw)
    client.disconnect()
    client.loop_stop()


# MQTT 5 property identifiers by how their value is laid out (OASIS MQTT 5.0, 2.2.2.2).
_PROP_FIXED = {0x01: 1, 0x17: 1, 0x19: 1, 0x24: 1, 0x25: 1, 0x28: 1, 0x29: 1, 0x2A: 1,
               0x13: 2, 0x21: 2, 0x22: 2, 0x23: 2, 0x02: 4, 0x11: 4, 0x18: 4, 0x27: 4}
_CORRELATION_DATA, _SUBSCRIPTION_ID, _USER_PROPERTY = 0x09, 0x0B, 0x26


def _read_varint(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """(value, position after it), or None when the buffer ends inside it."""
    value, shift = 0, 0
    while pos < len(buf):
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None


def publish_correlation(packet: bytes | bytearray, flags: int) -> tuple[bytes, bytes] | None:
    """(Correlation Data, payload) of a PUBLISH packet's variable header and payload."""
    pos = 2 + int.from_bytes(packet[0:2], "big")  # the topic
    if (flags >> 1) & 3:
        pos += 2  # packet identifier
    props = _read_varint(packet, pos)
    if props is None:
        return None
    length, pos = props
    end, corr = pos + length, None
    while pos < end:
        ident = packet[pos]
        pos += 1
        if ident in _PROP_FIXED:
            pos += _PROP_FIXED[ident]
        elif ident == _SUBSCRIPTION_ID:
            pos = (_read_varint(packet, pos) or (0, end))[1]
        else:  # a string or binary data, or two strings for a user property
            for _ in range(2 if ident == _USER_PROPERTY else 1):
                size = int.from_bytes(packet[pos:pos + 2], "big")
                if ident == _CORRELATION_DATA:
                    corr = bytes(packet[pos + 2:pos + 2 + size])
                pos += 2 + size
    return (corr, bytes(packet[end:])) if corr is not None else None


def receive_raw(port: int, topic: str, conn: Connection, niceness: int) -> None:
    """Receiver process without paho: MQTT 5 on a plain socket, large reads, each read's
    PUBLISHes stamped with the time it returned. It costs a few microseconds a message,
    where paho's loop and property decoding cost tens: at thousands of answers a second
    on two cores that is CPU the servers under test get back."""
    renice(niceness)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = _utf8("MQTT") + bytes([5, 0x02]) + (0).to_bytes(2, "big") + b"\x00"
    body += _utf8(f"bench-rx-{os.getpid()}")
    sock.sendall(b"\x10" + _varint(len(body)) + body)
    sub = (1).to_bytes(2, "big") + b"\x00" + _utf8(topic) + b"\x00"  # id 1, QoS 0
    sock.sendall(b"\x82" + _varint(len(sub)) + sub)
    lock = threading.Lock()
    raw: dict[int, tuple[float, bytes]] = {}
    subscribed = threading.Event()

    def read() -> None:
        buf = bytearray()
        while data := sock.recv(1 << 20):
            now = time.time()
            buf += data
            pos, got = 0, []
            while (head := _read_varint(buf, pos + 1)) is not None:
                length, start = head
                if start + length > len(buf):
                    break
                kind = buf[pos]
                if kind >> 4 == 3:
                    found = publish_correlation(buf[start:start + length], kind & 0x0F)
                    if found is not None:
                        got.append((int(found[0]), (now, found[1])))
                elif kind >> 4 == 9:
                    subscribed.set()
                pos = start + length
            del buf[:pos]
            with lock:
                raw.update(got)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    subscribed.wait(10)
    conn.send("ready")
    hand_over(conn, lock, raw)
    with contextlib.suppress(OSError):
        sock.sendall(b"\xe0\x00")
    sock.close()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


class RawPublisher:
    """A minimal MQTT 5 QoS 0 publisher on a plain socket. A load generator must cost far
    less than what it measures: paho spends tens of microseconds of Python per message,
    this writes one pre-built header and the payload with one sendmsg call."""

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # CONNECT: protocol MQTT v5, clean start, keepalive 0 (off), no properties.
        body = _utf8("MQTT") + bytes([5, 0x02]) + (0).to_bytes(2, "big") + b"\x00"
        body += _utf8(client_id)
        self.sock.sendall(b"\x10" + _varint(len(body)) + body)
        connack = self.sock.recv(16)
        if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"broker refused the load generator: {connack!r}")

    def publish(self, topic: str, payload: bytes, response_topic: str, correlation: bytes,
                user: tuple[str, str]) -> None:
        props = (b"\x08" + _utf8(response_topic) + b"\x09" + _utf8(correlation)
                 + b"\x26" + _utf8(user[0]) + _utf8(user[1]))
        head = _utf8(topic) + _varint(len(props)) + props
        header = b"\x30" + _varint(len(head) + len(payload)) + head
        views = [memoryview(header), memoryview(payload)]
        while views:
            sent = self.sock.sendmsg(views)
            while views and sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            if views and sent:
                views[0] = views[0][sent:]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        self.sock.close()


@dataclass
class Phase:
    rate: float
    topic: str
    sent_at: dict[int, float] = field(default_factory=dict)
    answers: dict[int, Answer] = field(default_factory=dict)
    strays: int = 0  # answers to requests of an earlier phase, left out


class Loader:
    """Sends requests open-loop and collects their answers, phase by phase.

    ``absolute`` deadlines carry the user property ``deadline`` (send wall time + the
    budget, epoch ms); otherwise ``deadline_ms`` (the budget, counted from receipt)."""

    def __init__(self, port: int, payload: bytes, niceness: int, absolute: bool,
                 raw_receiver: bool = False) -> None:
        self.payload = payload
        self.absolute = absolute
        self.reply_topic = f"bench/replies/{uuid.uuid4().hex[:8]}"
        self._conn, child = Pipe()
        self._receiver = Process(target=receive_raw if raw_receiver else receive,
                                 args=(port, self.reply_topic, child, niceness), daemon=True)
        self._receiver.start()
        self._conn.recv()
        self.sender = RawPublisher(port, f"bench-sender-{uuid.uuid4().hex[:6]}")
        self._seq = 0

    @property
    def receiver_pid(self) -> int:
        return self._receiver.pid or 0

    def close(self) -> None:
        self._conn.send("stop")
        self._receiver.join(10)
        self.sender.close()

    def _send(self, topic: str, sent: float, deadline_ms: float) -> None:
        user = (("deadline", str(int(sent * 1000 + deadline_ms))) if self.absolute
                else ("deadline_ms", f"{deadline_ms:g}"))
        self.sender.publish(topic, self.payload, self.reply_topic, str(self._seq).encode(),
                            user)
        self._seq += 1

    def _take(self) -> dict[int, Answer]:
        self._conn.send("take")
        answers: dict[int, Answer] = self._conn.recv()
        return answers

    def wait_ready(self, topic: str, timeout: float = 60.0, deadline_ms: float = 5000) -> bool:
        """Send a request every 0.2 s until one is answered: the server has subscribed and
        warmed up. The probes' answers are thrown away."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self._send(topic, time.time(), deadline_ms)
            time.sleep(0.2)
            if self._take():
                time.sleep(0.5)
                self._take()
                return True
        return False

    def run(self, phase: Phase, seconds: float, deadline_ms: float, poisson: bool,
            on_sent: Callable[[], None] | None = None, settle_s: float = 1.0) -> float:
        """Send open-loop for ``seconds``, then collect the answers; return the send rate.
        ``on_sent`` runs once the last message is sent, before waiting for late answers."""
        rng = np.random.default_rng(1)
        gap = 1.0 / phase.rate
        start = time.monotonic()
        due, next_report, first = start, start + 1.0, self._seq
        while (now := time.monotonic()) - start < seconds:
            if due > now:
                time.sleep(min(due - now, 0.002))
                continue
            sent = time.time()
            phase.sent_at[self._seq] = sent
            self._send(phase.topic, sent, deadline_ms)
            due += rng.exponential(gap) if poisson else gap
            if now >= next_report:
                next_report += 1.0
                print(f"\r  {phase.rate:8.0f}/s: sent {self._seq - first:7d} "
                      f"t={now - start:3.0f}s", end="", file=sys.stderr)
        achieved = (self._seq - first) / (time.monotonic() - start)
        if on_sent is not None:
            on_sent()
        time.sleep(deadline_ms / 1000 + settle_s)  # let the last answers come in
        answers = self._take()
        phase.answers = {k: v for k, v in answers.items() if k in phase.sent_at}
        phase.strays = len(answers) - len(phase.answers)
        print(f"\r  {phase.rate:8.0f}/s: sent {self._seq - first:7d}, answers "
              f"{len(phase.answers)}", file=sys.stderr)
        return achieved
