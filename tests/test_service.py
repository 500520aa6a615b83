"""The package under a real systemd: a Debian 12 root booted with systemd 252 as its PID 1
(systemd-nspawn, tests/support/booted.py), with mosquitto running inside, as on a box.

One scenario, in the order a field engineer meets it: the first install with no password
file starts the service (READY) and it answers over MQTT; it stays up past a watchdog
interval; ``systemctl reload`` returns once a changed route serves, and fails (the old
config serving on) for a broken one; ``systemctl stop`` publishes ``stopped`` within
TimeoutStopSec; an unattended upgrade whose shipped config changed keeps the engineer's
config and brings the service back, at the new version; a model the service cannot read
stops the unit at once, with the file named in the journal, instead of restarting it, and
``edged check`` as root names that file with the fix, which then works. On the way, the
spool (StateDirectory) and the metrics port serve under the unit's sandbox.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.booted import BootedRoot
from tests.support.debroot import BOOTABLE, DebianRoot, cached_tarball
from tests.support.packages import SHIPPED_CHANGE, UPGRADE, VERSION
from tests.support.tools import require_root, require_tool

pytestmark = [pytest.mark.integration, pytest.mark.package, pytest.mark.timeout(2400)]

DEBS = "/var/cache/edged-test"
CONFIG = "/etc/edged/edged.yaml"
SPOOL = "/var/lib/private/edged/outbox.sqlite"  # /var/lib/edged under DynamicUser=yes
# The digits model takes 64 bytes (uint8[1x8x8x1]): 64 ASCII digits are such a frame.
FRAME = "0" * 64
ROUTE_EDIT = ("subscribe: sensors/+/frame", "subscribe: cameras/+/frame")


@pytest.fixture
def box(tmp_path: Path) -> Iterator[BootedRoot]:
    require_root("systemd-nspawn")
    nspawn = require_tool("systemd-nspawn", "systemd-container")
    require_tool("nsenter", "util-linux")
    tarball = cached_tarball(require_tool("debootstrap", "debootstrap"), BOOTABLE, "booted")
    root = DebianRoot.unpack(tarball, tmp_path / "root")
    booted = BootedRoot(root.path, nspawn, tmp_path / "console.log")
    try:
        booted.boot()
        yield booted
    finally:
        booted.shutdown()
        root.remove()


def test_the_package_starts_serves_reloads_stops_and_upgrades_under_systemd(
    box: BootedRoot, debs: tuple[Path, Path]
) -> None:
    box.file(DEBS).mkdir(parents=True)
    for deb in debs:
        (box.file(DEBS) / deb.name).write_bytes(deb.read_bytes())
    first_install_starts_without_a_password(box, debs[0])
    reload_waits_for_the_new_config(box)
    stays_up_past_a_watchdog_interval(box)
    stop_says_stopped_in_time(box)
    unattended_upgrade_keeps_the_config_and_comes_back(box, debs[1])
    unreadable_model_stops_the_unit_with_its_name(box)


def seconds(span: str) -> float:
    """A time span as ``systemctl show`` prints it: "30s", "1min 30s", "500ms"."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
    total = 0.0
    for part in span.split():
        number = part.rstrip("abcdefghijklmnopqrstuvwxyz")
        total += float(number) * units[part[len(number):] or "s"]
    return total


def journal(box: BootedRoot) -> str:
    return box.run("journalctl", "-u", "edged", "-o", "cat", "--no-pager").stdout


def ask(box: BootedRoot, topic: str, wait_s: int = 10) -> dict[str, Any] | None:
    """One MQTT 5 request with a Response Topic, from inside the box; the answer or None."""
    done = box.run("mosquitto_rr", "-h", "127.0.0.1", "-V", "5", "-t", topic,
                   "-e", "replies/test", "-m", FRAME, "-W", str(wait_s), check=False)
    return json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else None


def answered(box: BootedRoot, topic: str, within_s: float = 60) -> dict[str, Any]:
    """The first answer on ``topic``, asking again until edged has subscribed."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        answer = ask(box, topic, wait_s=3)
        if answer is not None:
            return answer
    raise AssertionError(f"no answer on {topic} in {within_s} s:\n{journal(box)[-3000:]}")


def first_install_starts_without_a_password(box: BootedRoot, deb: Path) -> None:
    assert not box.file("/etc/credstore/edged.mqtt-password").exists()
    box.run("apt-get", "install", "-y", f"{DEBS}/{deb.name}")
    unit = box.show("edged", "ActiveState", "SubState", "NRestarts", "StatusText",
                    "UnitFileState")
    # Type=notify: active (running) only once edged said READY=1, with its STATUS= line.
    assert unit["ActiveState"] == "active" and unit["SubState"] == "running", (
        unit, journal(box))
    assert unit["NRestarts"] == "0" and unit["UnitFileState"] == "enabled"
    assert "routes" in unit["StatusText"], unit
    answer = answered(box, "sensors/a/frame")
    assert answer["route"] == "cam" and answer["result"]["label"] in "0123456789", answer
    assert box.run("edged", "--version").stdout.split() == ["edged", VERSION]
    assert f'"version": "{VERSION}"' in journal(box)


def reload_waits_for_the_new_config(box: BootedRoot) -> None:
    """The reload returns once the new route serves: the first request after it is
    answered. A broken config fails the reload, and the old config serves on."""
    config = box.file(CONFIG)
    good = config.read_text()
    assert ROUTE_EDIT[0] in good
    config.write_text(good.replace(*ROUTE_EDIT))
    box.run("systemctl", "reload", "edged")
    answer = ask(box, "cameras/a/frame")
    assert answer is not None and "result" in answer, journal(box)[-3000:]

    config.write_text(config.read_text().replace("model: digits", "model: no-such-model"))
    refused = box.run("systemctl", "reload", "edged", check=False)
    assert refused.returncode != 0
    assert "reload refused" in journal(box)
    assert box.show("edged", "ActiveState")["ActiveState"] == "active"
    answer = ask(box, "cameras/a/frame")
    assert answer is not None and "result" in answer
    config.write_text(good.replace(*ROUTE_EDIT))
    box.run("systemctl", "reload", "edged")


def stays_up_past_a_watchdog_interval(box: BootedRoot) -> None:
    unit = box.show("edged", "WatchdogUSec", "ActiveEnterTimestampMonotonic", "MainPID")
    watchdog_s = seconds(unit["WatchdogUSec"])
    assert watchdog_s > 0, unit
    up_s = time.clock_gettime(time.CLOCK_MONOTONIC) - int(
        unit["ActiveEnterTimestampMonotonic"]) / 1e6
    time.sleep(max(0.0, watchdog_s + 3 - up_s))  # the container shares the host's clock
    after = box.show("edged", "ActiveState", "NRestarts", "MainPID")
    assert after == {"ActiveState": "active", "NRestarts": "0", "MainPID": unit["MainPID"]}, (
        after, journal(box)[-3000:])
    assert ask(box, "cameras/a/frame") is not None


def stop_says_stopped_in_time(box: BootedRoot) -> None:
    timeout_s = seconds(box.show("edged", "TimeoutStopUSec")["TimeoutStopUSec"])
    # The retained "online", then what the stop publishes.
    watcher = box.spawn("mosquitto_sub", "-h", "127.0.0.1", "-V", "5", "-t", "edged/+/status",
                        "-C", "2", "-W", "120")
    try:
        time.sleep(1.0)  # subscribed before the stop
        started = time.monotonic()
        box.run("systemctl", "stop", "edged")
        took = time.monotonic() - started
        out, _ = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert out.decode().split() == ["online", "stopped"], out
    assert took < timeout_s
    assert box.show("edged", "Result", "ActiveState") == {"Result": "success",
                                                          "ActiveState": "inactive"}


def unattended_upgrade_keeps_the_config_and_comes_back(box: BootedRoot, deb: Path) -> None:
    # The spool in the unit's StateDirectory and the metrics port, which need a restart:
    # the sandbox lets both work.
    config = box.file(CONFIG)
    config.write_text(config.read_text()
                      .replace("  # spool_path: /var/lib/edged/outbox.sqlite",
                               "  spool_path: /var/lib/edged/outbox.sqlite")
                      .replace("  port: null ", "  port: 9101 "))
    box.run("systemctl", "start", "edged")
    assert box.file(SPOOL).exists(), journal(box)[-3000:]
    metrics = box.run("python3", "-c", "import urllib.request; print(urllib.request.urlopen("
                      "'http://127.0.0.1:9101/metrics', timeout=10).read().decode())").stdout
    assert 'edged_requests_received_total{model="digits",route="cam"}' in metrics
    edited = box.file(CONFIG).read_text()
    done = box.run("apt-get", "install", "-y", f"{DEBS}/{deb.name}")  # standard input empty
    assert "Configuration file" not in done.stdout
    assert box.file(CONFIG).read_text() == edited
    assert SHIPPED_CHANGE[1] in box.file("/usr/share/edged/edged.yaml").read_text()
    unit = box.show("edged", "ActiveState", "NRestarts")
    assert unit == {"ActiveState": "active", "NRestarts": "0"}, (unit, journal(box)[-3000:])
    assert box.run("edged", "--version").stdout.split() == ["edged", UPGRADE]
    assert f'"version": "{UPGRADE}"' in journal(box)
    assert "result" in answered(box, "cameras/a/frame")


def unreadable_model_stops_the_unit_with_its_name(box: BootedRoot) -> None:
    """A model only root can read: the service cannot, and a restart would not help."""
    box.run("install", "-m", "0600", "/opt/edged/models/digits_int8.tflite",
            "/etc/edged/secret.tflite")
    config = box.file(CONFIG)
    config.write_text(config.read_text().replace("/opt/edged/models/digits_int8.tflite",
                                                 "/etc/edged/secret.tflite"))
    box.run("systemctl", "restart", "edged", check=False)
    end = time.monotonic() + 60
    while box.show("edged", "ActiveState")["ActiveState"] not in ("failed", "inactive"):
        assert time.monotonic() < end, journal(box)[-3000:]
        time.sleep(0.5)
    unit = box.show("edged", "ActiveState", "NRestarts", "ExecMainStatus")
    assert unit == {"ActiveState": "failed", "NRestarts": "0", "ExecMainStatus": "66"}, unit
    assert "cannot read /etc/edged/secret.tflite: Permission denied" in journal(box)
    # edged check, as root, sees what the service saw, and says what to do.
    check = box.run("edged", "check", "--no-broker", check=False)
    assert check.returncode == 78, check.stdout + check.stderr
    assert ("error    models.digits.path: the service (user edged) cannot read "
            "/etc/edged/secret.tflite: Permission denied; (mode 0600, owner root:root) "
            "chgrp edged /etc/edged/secret.tflite && chmod g+r") in check.stdout, check.stdout
    box.run("chgrp", "edged", "/etc/edged/secret.tflite")
    box.run("chmod", "g+r", "/etc/edged/secret.tflite")
    assert box.run("edged", "check", "--no-broker").stdout.rstrip().endswith("ok")
    box.run("systemctl", "reset-failed", "edged")
    box.run("systemctl", "start", "edged")  # the fix check named is the fix
    assert "result" in answered(box, "cameras/a/frame")
