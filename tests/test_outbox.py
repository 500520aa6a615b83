"""The outbox: bounded in memory, spooled to SQLite across restarts, flushed with QoS 1
once the broker is back (the last tests with a real mosquitto)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from edged.config import MqttConfig, OutboxConfig
from edged.mqtt import MqttClient
from edged.outbox import Outbox
from edged.types import Outbound
from tests.support.broker import Broker
from tests.support.probe import Probe


def msg(i: int, size: int = 10) -> Outbound:
    return Outbound(f"results/{i}", bytes([i % 256]) * size, qos=1,
                    correlation_data=f"c{i}".encode(), user_properties=(("k", str(i)),))


def test_memory_bound_drops_the_oldest_and_counts_them() -> None:
    box = Outbox(OutboxConfig(memory_limit=3))
    for i in range(5):
        box.put(msg(i))
    assert len(box) == 3 and box.dropped_full == 2 and box.queued == 5
    assert [m.topic for _, m in box.take(10)] == ["results/2", "results/3", "results/4"]


def test_byte_bound_counts_payloads() -> None:
    box = Outbox(OutboxConfig(memory_limit=1000, memory_limit_bytes=2048))
    for i in range(5):
        box.put(msg(i, size=1000))
    assert len(box) == 2 and box.dropped_full == 3


def test_entries_in_flight_are_not_offered_twice_nor_evicted() -> None:
    box = Outbox(OutboxConfig(memory_limit=2))
    box.put(msg(0))
    box.put(msg(1))
    handed = box.take(2)
    assert box.take(2) == []
    # Over the bound with both older ones awaiting their PUBACK: the bound still holds,
    # so the newcomer is the one dropped (and counted).
    box.put(msg(2))
    assert len(box) == 2 and box.dropped_full == 1
    box.release([handed[1][0]])
    assert [m.topic for _, m in box.take(5)] == ["results/1"]
    for entry_id, _ in handed:
        box.ack(entry_id)
    assert box.delivered == 2 and len(box) == 0


def test_spool_survives_a_restart_and_keeps_every_field(tmp_path: Path) -> None:
    spool = tmp_path / "state" / "outbox.sqlite"
    box = Outbox(OutboxConfig(spool_path=spool))
    for i in range(4):
        box.put(msg(i))
    first = box.take(1)
    box.ack(first[0][0])
    assert box.close() == 3
    with sqlite3.connect(spool) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = Outbox(OutboxConfig(spool_path=spool))
    entries = again.take(10)
    assert [m for _, m in entries] == [msg(1), msg(2), msg(3)]
    assert again.snapshot()["spool"] is True


def test_spool_bound_drops_the_oldest(tmp_path: Path) -> None:
    box = Outbox(OutboxConfig(spool_path=tmp_path / "o.sqlite", spool_limit=2))
    for i in range(4):
        box.put(msg(i))
    assert box.dropped_full == 2
    assert [m.topic for _, m in box.take(5)] == ["results/2", "results/3"]


def test_put_from_many_threads_loses_nothing(tmp_path: Path) -> None:
    box = Outbox(OutboxConfig(spool_path=tmp_path / "o.sqlite"))
    def put(t: int) -> None:
        for i in range(100):
            box.put(msg(t * 100 + i))

    threads = [threading.Thread(target=put, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(box) == 400 and len({m.topic for _, m in box.take(500)}) == 400


def test_relative_spool_path_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="absolute"):
        OutboxConfig(spool_path=Path("outbox.sqlite"))


def client(port: int, spool: Path) -> MqttClient:
    cfg = MqttConfig(port=port, reconnect_min_s=0.1, reconnect_max_s=0.5)
    return MqttClient(cfg, "edged-outbox-test", "edged/outbox-test/status", [],
                      lambda m: None, outbox=Outbox(OutboxConfig(spool_path=spool)))


@pytest.mark.integration
def test_results_made_while_the_broker_is_down_survive_an_edged_restart(
    tmp_path: Path, private_broker: Broker
) -> None:
    spool = tmp_path / "outbox.sqlite"
    first = client(private_broker.port, spool)
    first.start()  # the broker is not running: every publish goes to the spool
    started = time.monotonic()
    for i in range(50):
        first.publish(msg(i))
    assert time.monotonic() - started < 0.5, "publish must never wait for the broker"
    first.publish(Outbound("stats", b"{}", qos=0))  # QoS 0 is not kept: counted instead
    first.stop(timeout=0.5)
    assert first.snapshot()["dropped_offline_qos0"] == 1
    private_broker.start()
    probe = Probe(private_broker.port)
    try:
        probe.subscribe("results/#")
        second = client(private_broker.port, spool)
        second.start()
        got = probe.collect(50, timeout=10)
        second.stop(timeout=5)
    finally:
        probe.close()
    assert sorted(int(m.topic.split("/")[1]) for m in got) == list(range(50))
    assert {m.correlation_data for m in got} == {f"c{i}".encode() for i in range(50)}
    assert Outbox(OutboxConfig(spool_path=spool)).close() == 0  # acknowledged, so deleted
