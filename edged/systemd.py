"""systemd's notify protocol with the standard library: READY, RELOADING, STOPPING,
STATUS and a watchdog that pings only while every thread that matters shows a heartbeat.

Without ``$NOTIFY_SOCKET`` (not started by systemd) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger("edged.systemd")
Heartbeats = Callable[[], Mapping[str, float]]


class Notifier:
    """Sends ``KEY=value`` datagrams to the socket systemd named in ``$NOTIFY_SOCKET``."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        # An address starting with '@' is in Linux's abstract namespace.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_s = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """Send one notification; False (never an exception) if it could not be sent."""
        if not self.address:
            return False
        data = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self.address)
                s.sendall(data)
        except OSError as exc:
            log.warning("cannot notify systemd", socket=self.address, error=str(exc))
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={_one_line(status)}")

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd (253+, Type=notify-reload) match this to the reload.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:512]


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """``WatchdogSec`` as systemd passes it, or None when no watchdog is asked for."""
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        seconds = int(usec) / 1_000_000
    except ValueError:
        return None
    return seconds if seconds > 0 else None


class Watchdog:
    """Pings ``WATCHDOG=1`` only while every heartbeat is recent.

    A heartbeat older than half the watchdog interval means that thread is stuck (a hung
    interpreter, a wedged network loop): edged then stops pinging and systemd restarts it
    once ``WatchdogSec`` passes. ``check`` is pure given ``now``, for tests.
    """

    def __init__(self, notifier: Notifier, heartbeats: Heartbeats, interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._notifier = notifier
        self._heartbeats = heartbeats
        self.interval_s = interval_s
        self.stale_after_s = interval_s / 2
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reported: frozenset[str] = frozenset()
        self.pings = 0

    def stale(self, now: float) -> dict[str, float]:
        """Threads whose last heartbeat is too old, with its age in seconds."""
        return {name: round(now - beat, 3) for name, beat in self._heartbeats().items()
                if now - beat > self.stale_after_s}

    def check(self) -> bool:
        """Ping if healthy; log (once per set of stuck threads) if not. True if pinged."""
        stuck = self.stale(self._clock())
        if stuck:
            if frozenset(stuck) != self._reported:
                log.error("threads show no heartbeat; not pinging the systemd watchdog",
                          stale_s=stuck, stale_after_s=self.stale_after_s)
                self._reported = frozenset(stuck)
            return False
        if self._reported:
            log.info("every thread shows a heartbeat again")
            self._reported = frozenset()
        self.pings += 1
        return self._notifier.send("WATCHDOG=1")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="systemd-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Four checks per half interval: a healthy process never comes close to the limit.
        period = max(0.05, self.interval_s / 8)
        while not self._stop.wait(period):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
