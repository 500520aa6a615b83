"""Fault injection against a real mosquitto and the real daemon: the broker killed with -9
and restarted, the broker frozen for longer than the keep-alive, edged restarted while a
publisher keeps sending QoS 1. Each test accounts for every message: answered, refused for
its deadline, or lost; lost must be zero. What each test asserts follows from its scenario
whatever the machine's speed: every phase holds requests (counted, not timed), and each
refusal is checked against the times edged put in its payload (``received_at`` and the
time left, ``deadline_ms``), never against how many were answered. (The reconnect policy's
unit tests come first.)
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edged.backoff import Backoff
from tests.support.broker import Broker
from tests.support.daemon import Edged, digits_config
from tests.support.ledger import FIGURES, REPLIES, Ledger, Publisher
from tests.support.probe import Probe

CLIENT_ID = "edged-faults"
PROBE_ID = "fault-probe"
PHASE = 25  # requests sent in each phase of a scenario, at the least
DEADLINE_MS = 1500


def test_backoff_doubles_up_to_the_cap_with_jitter_and_resets() -> None:
    highest = Backoff(0.5, 4.0, rand=lambda: 1.0)
    assert [highest.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    lowest = Backoff(0.5, 4.0, rand=lambda: 0.0)
    assert {lowest.next() for _ in range(6)} == {0.25}  # never zero: no hammering
    highest.reset()
    assert highest.next() == 0.5
    long_outage = Backoff(1.0, 30.0)
    for _ in range(10_000):  # no overflow after a week of retries
        assert 0.5 <= long_outage.next() <= 30.0


def test_jitter_spreads_a_fleet_that_lost_the_same_broker() -> None:
    fleet = [Backoff(1.0, 30.0) for _ in range(200)]
    for box in fleet:
        for _ in range(4):
            box.next()
    fifth = sorted(box.next() for box in fleet)
    assert fifth[-1] - fifth[0] > 5.0  # not all at once


@pytest.fixture(scope="module", autouse=True)
def report_figures() -> Iterator[None]:
    yield
    if FIGURES:
        print("\nfault-test figures:\n  " + "\n  ".join(FIGURES))


def fault_config(port: int, **mqtt: Any) -> dict[str, Any]:
    config = digits_config(port, queue_size=1024, deadline_ms=10_000)
    config["mqtt"].update({"reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
                           "session_expiry_s": 600, "client_id": CLIENT_ID, **mqtt})
    return config


def forget_sessions(broker: Broker) -> None:
    """Connect with a clean start under the persistent clients' ids, so the shared broker
    keeps nothing for later tests."""
    for client_id in (CLIENT_ID, PROBE_ID):
        Probe(broker.port, client_id=client_id).close()


def start(tmp_path: Path, broker: Broker, daemons: list[Edged], **mqtt: Any
          ) -> tuple[Edged, Probe]:
    probe = Probe(broker.port, client_id=PROBE_ID, session_expiry=600)
    probe.subscribe(REPLIES, "edged/test-box/status")
    edged = Edged(tmp_path, fault_config(broker.port, **mqtt))
    daemons.append(edged)
    edged.start()
    wait_status(probe, edged, b"online")
    return edged, probe


def wait_status(probe: Probe, edged: Edged, status: bytes, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if probe.next(timeout=0.5, topic="edged/test-box/status").payload == status:
                time.sleep(0.3)
                return
        except TimeoutError:
            assert edged.proc is not None and edged.proc.poll() is None, edged.log()
    raise AssertionError(f"edged never said {status!r}:\n{edged.log()}")


@pytest.fixture
def clean_broker(broker: Broker) -> Iterator[Broker]:
    """The shared broker, left without the persistent sessions this test made."""
    yield broker
    forget_sessions(broker)


@pytest.fixture
def durable_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker that saves its state on every change, as a field broker with persistence."""
    (tmp_path / "broker").mkdir()
    b = Broker(tmp_path / "broker", persistence=True)
    b.start()
    yield b
    b.stop()


@pytest.mark.integration
def test_broker_killed_mid_stream_and_restarted_loses_nothing(
    tmp_path: Path, durable_broker: Broker, daemons: list[Edged]
) -> None:
    edged, probe = start(tmp_path, durable_broker, daemons)
    ledger = Ledger()
    publisher = Publisher(probe, ledger, rate=100)
    try:
        publisher.start()
        publisher.wait_sent(PHASE)
        ledger.mark("kill")
        durable_broker.kill()
        time.sleep(2.0)  # edged's answers to what it already had go to the outbox
        publisher.wait_sent(ledger.marks["kill"] + PHASE)  # paho queues them meanwhile
        ledger.mark("back")
        durable_broker.start()
        publisher.wait_sent(ledger.marks["back"] + PHASE)
        publisher.stop()
        ledger.take(probe, timeout=30)
    finally:
        publisher.stop()
        probe.close()
    print(ledger.figures("kill -9 broker for 2 s"))
    assert ledger.lost == 0, edged.log()[-3000:]
    # 10 s from receipt is far more than the outage costs a request inside edged.
    assert ledger.answered == set(range(ledger.sent)), ledger.figures("not all answered")
    assert not ledger.errors and not ledger.deadline_problems()
    log = edged.log()
    assert log.count("broker disconnected") == 1, log  # one line per state change
    assert edged.stop() == 0


@pytest.mark.integration
def test_broker_frozen_longer_than_the_keepalive_loses_nothing(
    tmp_path: Path, private_broker: Broker, daemons: list[Edged]
) -> None:
    private_broker.start()
    edged, probe = start(tmp_path, private_broker, daemons, keepalive_s=5)
    ledger = Ledger()
    publisher = Publisher(probe, ledger, rate=50)
    try:
        publisher.start()
        publisher.wait_sent(PHASE)
        ledger.mark("freeze")
        private_broker.pause()  # sockets stay open; only the keep-alive can tell
        time.sleep(12.0)
        publisher.wait_sent(ledger.marks["freeze"] + PHASE)
        ledger.mark("thaw")
        private_broker.resume()
        publisher.wait_sent(ledger.marks["thaw"] + PHASE)
        publisher.stop()
        ledger.take(probe, timeout=30)
    finally:
        publisher.stop()
        probe.close()
    print(ledger.figures("broker frozen 12 s, keepalive 5 s"))
    assert ledger.lost == 0, edged.log()[-3000:]
    # The deadline counts from receipt: what waited in the frozen broker still has 10 s.
    assert ledger.answered == set(range(ledger.sent)), ledger.figures("not all answered")
    assert not ledger.errors and not ledger.deadline_problems()
    assert "broker disconnected" in edged.log()  # the keep-alive noticed
    assert edged.stop() == 0


@pytest.mark.integration
def test_edged_restarted_while_qos1_input_keeps_coming(
    tmp_path: Path, clean_broker: Broker, daemons: list[Edged]
) -> None:
    broker = clean_broker
    edged, probe = start(tmp_path, broker, daemons)
    ledger = Ledger()
    # Absolute deadlines: what waits at the broker longer than 1.5 s is due before it runs.
    publisher = Publisher(probe, ledger, rate=50, deadline_ms=DEADLINE_MS)
    try:
        publisher.start()
        publisher.wait_sent(PHASE)
        assert edged.stop(signal.SIGTERM) == 0
        ledger.mark("down")
        time.sleep(2.5)  # the broker keeps edged's session and queues its QoS 1 input
        publisher.wait_sent(ledger.marks["down"] + PHASE)
        restarted_ms = time.time() * 1000
        again = Edged(tmp_path, fault_config(broker.port))
        daemons.append(again)
        again.start()
        wait_status(probe, again, b"online")
        ledger.mark("online")
        publisher.wait_sent(ledger.marks["online"] + PHASE)
        publisher.stop()
        ledger.take(probe, timeout=30)
    finally:
        publisher.stop()
        probe.close()
    print(ledger.figures("edged restarted, 2.5 s down"))
    assert ledger.lost == 0, again.log()[-3000:]
    assert not ledger.errors and not ledger.deadline_problems(), ledger.deadline_problems()
    # Sent while edged was down and due before it was even started again: edged read each
    # one past its deadline, so each must be refused, none run. The scenario guarantees
    # some (2.5 s down, 1.5 s deadlines), however slow edged is to come back.
    stale = {i for i in ledger.between("down", "online")
             if ledger.deadlines[i] < restarted_ms}
    assert stale, "no request was due while edged was down"
    assert stale <= ledger.dropped and not stale & ledger.answered
    # A refusal with time left is only for what piled up at the broker while edged was
    # down; once edged is back, what it reads with 1.5 s to go is answered.
    for reply in ledger.replies:
        if reply.reason is not None and (reply.left_ms or 0.0) > 0:
            assert reply.index < ledger.marks["online"], reply.body
    assert set(range(ledger.marks["online"], ledger.sent)) <= ledger.answered
    assert '"session_present": true' in again.log()
    assert again.stop() == 0
