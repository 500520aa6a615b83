"""``edged top`` and ``edged status`` as an operator uses them: a real edged serving the
digits model under load through a real mosquitto, ``edged top`` in a terminal (tmux), and
the figures on the screen checked against the stats topic that edged publishes."""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.broker import Broker
from tests.support.daemon import MODELS, REPO, Edged, digits_config
from tests.support.probe import Probe

pytestmark = pytest.mark.integration
STATUS, STATS = "edged/test-box/status", "edged/test-box/stats"
RATE = 80  # frames a second while loaded
BAD_EVERY = 20  # one undecodable payload in this many: refusals with a reason to show


def tmux_binary() -> str:
    found = shutil.which("tmux")
    if found is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("tmux is missing: scripts/setup.sh installs it")
        pytest.skip("tmux is not installed (scripts/setup.sh installs it)")
    return found


class Terminal:
    """A tmux server of this test's own (its own socket), one window of 160x45."""

    def __init__(self, workdir: Path) -> None:
        self.tmux = tmux_binary()
        self.socket = str(workdir / "tmux.sock")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.tmux, "-S", self.socket, *args], capture_output=True,
                              text=True, timeout=10)

    def start(self, command: list[str]) -> None:
        done = self.run("new-session", "-d", "-s", "top", "-x", "160", "-y", "45",
                        "-c", str(REPO), shlex.join(command))
        assert done.returncode == 0, done.stderr

    def screen(self) -> list[str]:
        done = self.run("capture-pane", "-p", "-t", "top")
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    def alive(self) -> bool:
        return self.run("has-session", "-t", "top").returncode == 0

    def close(self) -> None:
        self.run("kill-server")


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path)
    yield term
    term.close()


def frame() -> bytes:
    image = np.load(MODELS / "digits_holdout.npz")["images"][0]
    return bytes(np.rint(image * 255).astype(np.uint8).tobytes())


def load(port: int, seconds: float, sent: list[int]) -> None:
    """Publish frames at RATE a second (every BAD_EVERY-th one undecodable)."""
    sender = Probe(port)
    good, start = frame(), time.monotonic()
    try:
        n = 0
        while time.monotonic() - start < seconds:
            n += 1
            sender.publish("sensors/cam1/frame", b"not a frame" if n % BAD_EVERY == 0 else good)
            sent[0] = n
            time.sleep(max(0.0, start + n / RATE - time.monotonic()))
    finally:
        sender.close()


class StatsLog:
    """Every stats snapshot edged published, by the clock text the screen shows."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.snapshots: list[dict[str, Any]] = []

    def drain(self) -> None:
        while True:
            try:
                self.snapshots.append(self.probe.next(timeout=0.01, topic=STATS).json())
            except TimeoutError:
                return

    def find(self, clock_text: str) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """The snapshot with that time, and the one before it."""
        self.drain()
        for i, snap in enumerate(self.snapshots):
            if clock(snap["time"]) == clock_text:
                return snap, self.snapshots[i - 1] if i else None
        return None


def clock(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall).strftime("%H:%M:%S.%f")[:-3]


def cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def table(lines: list[str], heading: str) -> dict[str, dict[str, str]]:
    """The rows under the header line starting with ``heading``, by first cell."""
    for i, line in enumerate(lines):
        if line.startswith(heading):
            columns = cells(line)
            rows = {}
            for row in lines[i + 1:]:
                if not row.strip():
                    break
                values = cells(row)
                rows[values[0]] = dict(zip(columns, values, strict=True))
            return rows
    raise AssertionError(f"no {heading!r} table on the screen:\n" + "\n".join(lines))


def shown_snapshot(lines: list[str]) -> str | None:
    for line in lines:
        match = re.match(r"stats of (\d\d:\d\d:\d\d\.\d{3}) ", line)
        if match:
            return match.group(1)
    return None


def refused_text(failed: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(failed.items()) if v) or "-"


def check_route_row(row: dict[str, str], snap: dict[str, Any]) -> None:
    r = snap["routes"]["cam"]
    assert row["MODEL"] == r["model"] == "digits"
    assert int(row["RECEIVED"]) == r["received"]
    assert int(row["ON TIME"]) == r["succeeded"]
    assert int(row["LATE"]) == r["late"]
    assert int(row["QUEUE"]) == r["queue_depth"]
    assert float(row["P50 MS"]) == pytest.approx(r["total_ms"]["p50"], abs=0.006)
    assert float(row["P99 MS"]) == pytest.approx(r["total_ms"]["p99"], abs=0.006)
    assert row.get("REFUSED") == refused_text(r["failed"]), str(list(row.items()))


def check_workers(lines: list[str], snap: dict[str, Any]) -> None:
    rows = table(lines, "WORKER")
    workers = snap["models"]["digits"]["workers"]
    assert set(rows) == {w["name"] for w in workers} and len(rows) == len(workers) >= 1
    for w in workers:
        row = rows[w["name"]]
        assert row["BACKEND"] == w["backend"] == "cpu", "\n".join(lines)
        assert row["ON FALLBACK"] == "no"
        assert int(row["INVOKES"]) == w["invokes"]


def read_screen(terminal: Terminal, stats: StatsLog, timeout: float = 10.0,
                with_rates: bool = True
                ) -> tuple[list[str], dict[str, Any], dict[str, Any] | None]:
    """A screen showing a snapshot (and rates, if asked), and that snapshot and the one
    before it as published."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        lines = terminal.screen()
        shown = shown_snapshot(lines)
        found = stats.find(shown) if shown else None
        rates = any("rates over the last" in line for line in lines)
        if (found is not None and any(line.startswith("ROUTE") for line in lines)
                and (rates or not with_rates)):
            return lines, *found
        time.sleep(0.2)
    raise AssertionError("the screen never showed a published snapshot:\n"
                         + "\n".join(terminal.screen()))


def test_top_shows_what_the_stats_topic_says_live(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged], terminal: Terminal
) -> None:
    config = digits_config(broker.port)
    config["stats_interval_s"] = 1
    edged = Edged(tmp_path, config)
    daemons.append(edged)
    probe.subscribe(STATUS, STATS)
    edged.start()
    edged.wait_online(probe, STATUS)
    stats = StatsLog(probe)
    terminal.start([sys.executable, "-m", "edged", "top", "--config", str(edged.config_path)])
    idle, _, _ = read_screen(terminal, stats, timeout=30, with_rates=False)
    assert table(idle, "ROUTE")["cam"]["RECEIVED"] == "0"

    sent = [0]
    sender = threading.Thread(target=load, args=(broker.port, 6.0, sent))
    sender.start()
    try:
        time.sleep(3.5)  # two snapshots into the load: rates over a loaded interval
        lines, snap, before = read_screen(terminal, stats)
    finally:
        sender.join()
    assert lines[0].startswith("edged test-box: online, broker connected (MQTT 5), up ")
    assert before is not None, "the first snapshot top saw has no rates to compare"
    row = table(lines, "ROUTE")["cam"]
    check_route_row(row, snap)
    span = snap["time"] - before["time"]
    route, old = snap["routes"]["cam"], before["routes"]["cam"]
    assert float(row["IN/S"]) == pytest.approx((route["received"] - old["received"]) / span,
                                               abs=0.051)
    assert float(row["OK/S"]) == pytest.approx(
        (route["succeeded"] - old["succeeded"]) / span, abs=0.051)
    assert float(row["IN/S"]) > RATE / 4  # loaded: a real rate, not a leftover zero
    assert f"rates over the last {span:.1f} s" in lines[1]
    check_workers(lines, snap)

    # Once the load is over and counted: every frame received, the rates back to zero.
    end = time.monotonic() + 15
    while time.monotonic() < end:
        lines, snap, before = read_screen(terminal, stats)
        row = table(lines, "ROUTE")["cam"]
        if int(row["RECEIVED"]) == sent[0] and row["IN/S"] == "0.0":
            break
        time.sleep(0.5)
    assert int(row["RECEIVED"]) == sent[0], lines
    assert row["IN/S"] == "0.0" and row["OK/S"] == "0.0"
    check_route_row(row, snap)
    bad = sent[0] // BAD_EVERY
    assert row["REFUSED"].startswith(f"bad_input {bad}")
    assert int(row["ON TIME"]) + int(row["LATE"]) + bad <= sent[0]
    check_workers(lines, snap)
    assert "outbox 0 waiting" in "\n".join(lines)

    terminal.run("send-keys", "-t", "top", "q")
    end = time.monotonic() + 5
    while terminal.alive() and time.monotonic() < end:
        time.sleep(0.1)
    assert not terminal.alive(), "q did not quit edged top"


def edged_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edged", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=60)


def test_status_prints_one_snapshot_as_published(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    config = digits_config(broker.port)
    config["stats_interval_s"] = 1
    edged = Edged(tmp_path, config)
    daemons.append(edged)
    probe.subscribe(STATUS, STATS)
    edged.start()
    edged.wait_online(probe, STATUS)
    stats = StatsLog(probe)
    sent = [0]
    load(broker.port, 1.5, sent)
    time.sleep(1.5)  # a snapshot after the last frame was answered

    done = edged_cli("status", "--config", str(edged.config_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("edged test-box: online, broker connected (MQTT 5), up ")
    shown = shown_snapshot(lines)
    assert shown is not None, done.stdout
    found = stats.find(shown)
    if found is None:  # published just as status printed it; the probe hears it a moment later
        time.sleep(0.5)
        found = stats.find(shown)
    assert found is not None, done.stdout
    snap = found[0]
    row = table(lines, "ROUTE")["cam"]
    assert "IN/S" not in row  # one snapshot: no rates
    check_route_row(row, snap)
    assert int(row["RECEIVED"]) == sent[0]
    check_workers(lines, snap)

    as_json = edged_cli("status", "--json", "--config", str(edged.config_path))
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert body["status"] == "online"
    assert body["stats"]["routes"]["cam"]["received"] == sent[0]
    time.sleep(0.3)
    stats.drain()
    assert body["stats"] in stats.snapshots  # exactly what edged published

    assert edged.stop() == 0
    down = edged_cli("status", "--config", str(edged.config_path), "--timeout", "5")
    assert down.returncode == 1
    assert down.stdout.splitlines()[:2] == ["edged test-box: stopped",
                                            "no stats snapshot yet (the box is stopped)"]


def test_status_names_an_unreachable_broker(tmp_path: Path) -> None:
    from tests.support.broker import free_port

    config = tmp_path / "edged.yaml"
    config.write_text(json.dumps(digits_config(free_port())))  # JSON is YAML
    done = edged_cli("status", "--config", str(config))
    assert done.returncode == 1
    assert "cannot reach the broker at 127.0.0.1:" in done.stderr
    assert "connection refused" in done.stderr


def test_status_gets_a_snapshot_at_once_whatever_the_stats_interval(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    config = digits_config(broker.port)
    config["stats_interval_s"] = 3600  # left to itself, the box would say nothing for an hour
    edged = Edged(tmp_path, config)
    daemons.append(edged)
    probe.subscribe(STATUS)
    edged.start()
    edged.wait_online(probe, STATUS)
    sent = [0]
    load(broker.port, 1.0, sent)
    started = time.monotonic()
    done = edged_cli("status", "--json", "--timeout", "20", "--config", str(edged.config_path))
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["stats"]["routes"]["cam"]["received"] == sent[0]
    assert took < 15, f"the snapshot came after {took:.1f} s: it was not asked for"
