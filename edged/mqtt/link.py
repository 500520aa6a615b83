"""One connection's socket: open it (TCP, TLS, CONNECT and CONNACK), read packets in batches,
and write with as few system calls as the traffic allows.

Writes come from two kinds of thread. The MQTT thread (answers of models run inline, acks)
only appends to a buffer that it sends in one ``send()`` after each batch of reads. Any other
thread (workers) sends straight away on a plain TCP socket when nothing is waiting before it,
so its answer needs no wake-up of the MQTT thread; what the socket does not take waits in the
buffer for the MQTT thread. A TLS socket is written by the MQTT thread alone: an SSL object
must not be written by one thread while another reads it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable

from edged.mqtt import packets
from edged.mqtt.packets import ConnAck, Decoder, Packet

READ_CHUNK = 256 * 1024
READ_BUDGET = READ_CHUNK  # read in one pass before the answers so far are written: a backlog
# read whole would hold back the answers of its first messages until its last one ran


class LinkClosed(Exception):
    """The broker closed the connection, or it failed."""


class AfterConnect(ConnectionError):
    """The broker was reached, and closed the connection (``closed``) or said nothing after
    CONNECT: how a 3.1.1-only broker may refuse MQTT 5, or any broker a client it will not
    serve."""

    def __init__(self, text: str, closed: bool = True) -> None:
        super().__init__(text)
        self.closed = closed


class Link:
    def __init__(self, sock: socket.socket | ssl.SSLSocket, v5: bool, keepalive_s: int,
                 loop_thread: int) -> None:
        self.sock = sock
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.decoder = Decoder(v5)
        self.keepalive_s = keepalive_s
        self._loop_thread = loop_thread
        self._lock = threading.Lock()
        self._out = bytearray()
        self._out_since = 0.0  # when the oldest unsent byte was queued (monotonic s)
        self.last_write = self.last_read = time.monotonic()
        self.bytes_read = 0
        self.early: list[Packet] = []
        """Packets that came after the CONNACK in the handshake's read, for the loop."""
        self.wake: Callable[[], None] = lambda: None
        """Called when bytes from another thread wait for the MQTT thread to send them."""

    @classmethod
    def open(cls, host: str, port: int, connect: bytes, *, v5: bool, keepalive_s: int,
             tls: ssl.SSLContext | None, timeout: float) -> tuple[Link, ConnAck]:
        """Connect, say CONNECT and wait for the CONNACK (blocking, up to ``timeout`` s each
        step). Raises OSError or ssl.SSLError while the broker cannot be reached (TCP, TLS),
        AfterConnect once it was reached, and packets.MalformedPacket."""
        raw = socket.create_connection((host, port), timeout=timeout)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock: socket.socket | ssl.SSLSocket = raw
            if tls is not None:
                sock = tls.wrap_socket(raw, server_hostname=host)
            link = cls(sock, v5, keepalive_s, threading.get_ident())
            connack = link._handshake(connect, timeout)
            sock.setblocking(False)
            return link, connack
        except BaseException:
            raw.close()
            raise

    def _handshake(self, connect: bytes, timeout: float) -> ConnAck:
        first: list[Packet] = []
        try:
            self.sock.sendall(connect)
            while not first:
                data = self.sock.recv(READ_CHUNK)
                if not data:
                    raise AfterConnect("the broker closed the connection after CONNECT")
                first = self.decoder.feed(data)
        except TimeoutError as exc:
            raise AfterConnect(f"no CONNACK within {timeout:g} s of CONNECT",
                               closed=False) from exc
        except (ssl.SSLError, AfterConnect):
            raise
        except OSError as exc:  # a reset: the broker refused what CONNECT said
            raise AfterConnect(f"the broker closed the connection after CONNECT "
                               f"({type(exc).__name__})") from exc
        connack = first[0]
        if not isinstance(connack, ConnAck):
            raise packets.MalformedPacket("the broker's first packet is not a CONNACK")
        # A resumed session's messages may come in the same read as the CONNACK.
        self.early = first[1:]
        return connack

    # reading (MQTT thread)

    def pending(self) -> bool:
        """TLS: decrypted bytes wait inside the SSL object, where select() cannot see them."""
        return self.tls and self.sock.pending() > 0  # type: ignore[union-attr]

    def read(self) -> list[Packet]:
        """Every packet the socket has now, up to ``READ_BUDGET`` bytes. Raises LinkClosed."""
        out: list[Packet] = []
        budget = READ_BUDGET
        while budget > 0:
            try:
                data = self.sock.recv(READ_CHUNK)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except OSError as exc:
                raise LinkClosed(f"{type(exc).__name__}: {exc}") from exc
            if not data:
                raise LinkClosed("the broker closed the connection")
            self.last_read = time.monotonic()
            self.bytes_read += len(data)
            try:
                out += self.decoder.feed(data)
            except packets.MalformedPacket as exc:
                raise LinkClosed(f"malformed packet from the broker: {exc}") from exc
            budget -= len(data)
            if len(data) < READ_CHUNK and not (self.tls and self.pending()):
                break
        return out

    # writing

    def send(self, data: bytes) -> None:
        """Queue ``data``; from a thread other than the MQTT thread, on plain TCP, try to
        send it at once."""
        on_loop = threading.get_ident() == self._loop_thread
        with self._lock:
            if on_loop or self.tls or self._out:
                if not self._out:
                    self._out_since = time.monotonic()
                self._out += data
                if not on_loop:
                    self.wake()
                return
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                return  # the MQTT thread sees the failure on its next read
            self.last_write = time.monotonic()
            if sent < len(data):
                self._out_since = self.last_write
                self._out += memoryview(data)[sent:]
                self.wake()

    def set_low_water(self, nbytes: int) -> None:
        """``poll`` reports the socket readable once ``nbytes`` bytes wait (SO_RCVLOWAT)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)

    def wants_write(self) -> bool:
        return bool(self._out)

    def lag(self) -> float:
        """How long the oldest byte waiting to be sent has waited (s)."""
        return time.monotonic() - self._out_since if self._out else 0.0

    def flush(self) -> None:
        """Send what waits, as far as the socket takes it (MQTT thread). Raises LinkClosed."""
        with self._lock:
            if not self._out:
                return
            try:
                sent = self.sock.send(self._out)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError,
                    ssl.SSLWantReadError):
                return
            except OSError as exc:
                raise LinkClosed(f"{type(exc).__name__}: {exc}") from exc
            self.last_write = time.monotonic()
            del self._out[:sent]
            if self._out:
                self._out_since = self.last_write

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
