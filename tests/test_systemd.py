"""systemd integration: the notify protocol against a socket the test opens, the watchdog's
heartbeat rule, the real daemon's READY/RELOADING/STOPPING, and the unit file itself."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.systemd import Notifier, Watchdog
from tests.support.broker import Broker
from tests.support.daemon import REPO, Edged, digits_config
from tests.support.tools import require_tool

UNIT = REPO / "systemd" / "edged.service"


class NotifySocket:
    """What systemd listens on: a datagram socket; ``messages`` are the datagrams."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.received: list[dict[str, str]] = []

    def read_until(self, key: str, value: str, timeout: float) -> list[dict[str, str]]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.splitlines())
            self.received.append(fields)
            if fields.get(key) == value:
                return self.received
        raise AssertionError(f"no {key}={value} within {timeout} s; got {self.received}")


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, NotifySocket]]:
    path = str(tmp_path / "notify.sock")
    s = NotifySocket(path)
    yield path, s
    s.sock.close()


def test_notifier_sends_the_protocol_fields(notify_socket: tuple[str, NotifySocket]) -> None:
    path, sock = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready("serving 2 routes\nbroker up")
    got = sock.read_until("READY", "1", 2)
    assert got[-1]["STATUS"] == "serving 2 routes broker up"  # one line, always
    notifier.reloading()
    reloading = sock.read_until("RELOADING", "1", 2)[-1]
    assert int(reloading["MONOTONIC_USEC"]) > 0
    notifier.stopping()
    assert sock.read_until("STOPPING", "1", 2)[-1]["STATUS"] == "stopping"


def test_abstract_namespace_socket() -> None:
    name = f"edged-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).status("hello")
        assert s.recv(100) == b"STATUS=hello"


def test_without_systemd_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and not notifier.ready("x") and notifier.watchdog_s is None


def test_watchdog_interval_comes_from_the_environment() -> None:
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_s == 30.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_s is None
    assert Notifier({"WATCHDOG_USEC": "junk"}).watchdog_s is None


def test_watchdog_pings_only_while_every_heartbeat_is_recent(
    notify_socket: tuple[str, NotifySocket]
) -> None:
    path, sock = notify_socket
    now = [100.0]
    beats = {"worker-digits-0": 100.0, "mqtt": 100.0}
    dog = Watchdog(Notifier({"NOTIFY_SOCKET": path}), lambda: beats, interval_s=10.0,
                   clock=lambda: now[0])
    assert dog.check()
    assert sock.read_until("WATCHDOG", "1", 2)
    now[0] = 104.9
    assert dog.check()  # 4.9 s old: under half the interval
    now[0] = 106.0  # the worker is stuck in an invoke; the MQTT loop still beats
    beats["mqtt"] = 106.0
    assert dog.stale(now[0]) == {"worker-digits-0": 6.0}
    assert not dog.check()
    beats["worker-digits-0"] = 106.0  # it came back
    assert dog.check()
    assert dog.pings == 3


@pytest.mark.integration
def test_daemon_says_ready_pings_reloads_and_stops(
    tmp_path: Path, broker: Broker, notify_socket: tuple[str, NotifySocket],
    daemons: list[Edged], monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    edged = Edged(tmp_path, digits_config(broker.port))
    daemons.append(edged)
    edged.start()
    ready = sock.read_until("READY", "1", 30)[-1]
    assert "routes" in ready["STATUS"]
    sock.read_until("WATCHDOG", "1", 3)
    assert edged.proc is not None
    edged.proc.send_signal(signal.SIGHUP)
    sock.read_until("RELOADING", "1", 10)
    sock.read_until("READY", "1", 10)
    assert edged.stop(signal.SIGTERM) == 0
    sock.read_until("STOPPING", "1", 2)
    assert "reloaded" in edged.log()


def test_unit_is_hardened_and_type_notify() -> None:
    text = UNIT.read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    # The reload waits for the outcome (edged.handshake; tests/test_handshake.py).
    assert settings["Type"] == "notify"
    assert settings["ExecReload"] == "/opt/edged/bin/edged reload --pid $MAINPID"
    assert settings["RuntimeDirectory"] == "edged"
    assert set(settings["RestartPreventExitStatus"].split()) == {"66", "69", "78"}
    assert settings["NoNewPrivileges"] == "yes" and settings["ProtectSystem"] == "strict"
    assert settings["PrivateTmp"] == "yes" and settings["DynamicUser"] == "yes"
    # Without a path the credential is optional: systemd looks for it in the credstore.
    assert settings["LoadCredential"] == "mqtt-password:edged.mqtt-password"
    assert settings["StateDirectory"] == "edged" and settings["DevicePolicy"] == "closed"
    assert int(settings["WatchdogSec"]) > 0
    devices = re.findall(r"^DeviceAllow=(\S+)", text, re.M)
    assert devices and all("usb" in d or "apex" in d for d in devices)


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = require_tool("systemd-analyze", "systemd")
    # verify checks that ExecStart exists: point it at this checkout's edged.
    edged_bin = Path(sys.executable).with_name("edged")
    unit = tmp_path / "edged.service"
    unit.write_text(UNIT.read_text().replace("/opt/edged/bin/edged", str(edged_bin)))
    done = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True,
                          text=True, timeout=60)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 0 and output == "", output
