"""The outbox: bounded in memory, spooled to SQLite across restarts, flushed with QoS 1
once the broker is back (the last tests with a real mosquitto)."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from edged.config import MqttConfig, OutboxConfig
from edged.mqtt import MqttClient
from edged.outbox import MemoryStore, Outbox, SqliteStore
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


# -- the byte and entry counts: what a put adds, an ack or an eviction takes back --------


def test_spool_byte_count_returns_to_zero_when_everything_is_delivered(tmp_path: Path) -> None:
    # Correlation data counts on the way in; it must count on the way out too, or a
    # long-running box comes to believe its spool is fuller than it is.
    box = Outbox(OutboxConfig(spool_path=tmp_path / "o.sqlite"))
    for i in range(3):
        box.put(msg(i))
    assert box.snapshot()["bytes"] == recount(box)
    for entry_id, _ in box.take(3):
        box.ack(entry_id)
    assert box.snapshot()["bytes"] == 0 and len(box) == 0


def test_spool_byte_count_after_a_restart_is_what_it_was_before(tmp_path: Path) -> None:
    spool = tmp_path / "o.sqlite"
    box = Outbox(OutboxConfig(spool_path=spool))
    for i in range(3):
        box.put(Outbound(f"résultats/{i}", b"\x00" * 7, qos=1, correlation_data=b"corr"))
    before = box.snapshot()["bytes"]
    box.close()
    assert Outbox(OutboxConfig(spool_path=spool)).snapshot()["bytes"] == before


def test_an_ack_for_an_entry_no_longer_held_is_not_a_delivery() -> None:
    box = Outbox(OutboxConfig(memory_limit=10))
    box.put(msg(0))
    [(entry_id, _)] = box.take(1)
    box.ack(entry_id)
    box.ack(entry_id)  # a second PUBACK for it, or one for a message never spooled
    assert box.delivered == 1 and box.snapshot()["bytes"] == 0


def recount(box: Outbox) -> int:
    """The bytes held, counted afresh from what the store holds, outside the code under
    test: payload, topic (UTF-8) and correlation data of every entry."""
    store = box._store
    if isinstance(store, SqliteStore):
        rows = store._db.execute("SELECT topic, payload, correlation FROM outbox").fetchall()
    else:
        assert isinstance(store, MemoryStore)
        rows = [(m.topic, m.payload, m.correlation_data) for m in store._entries.values()]
    return sum(len(t.encode()) + len(p) + len(c or b"") for t, p, c in rows)


def held(box: Outbox) -> int:
    store = box._store
    if isinstance(store, SqliteStore):
        return int(store._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    assert isinstance(store, MemoryStore)
    return len(store._entries)


outbound = st.builds(
    Outbound,
    topic=st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
                  min_size=1, max_size=12),
    payload=st.binary(max_size=400),
    qos=st.just(1),
    correlation_data=st.one_of(st.none(), st.binary(max_size=16)),
    user_properties=st.lists(st.tuples(st.text(max_size=4), st.text(max_size=4)),
                             max_size=2).map(tuple),
)


class OutboxCounts(RuleBasedStateMachine):
    """Any sequence of puts, takes, acks, releases (and restarts of a spool): the byte and
    entry counts always equal a recount, and every entry put is waiting, delivered or
    dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="edged-outbox-"))
        self.config = OutboxConfig(memory_limit=5, memory_limit_bytes=1024, spool_limit=5)
        self.box = Outbox(self.config)
        self.handed: list[int] = []
        self.acked: list[int] = []
        self.before = 0  # entries a restart found in the spool
        self.puts = self.delivered = self.dropped = 0

    @initialize(spooled=st.booleans())
    def choose_store(self, spooled: bool) -> None:
        if spooled:
            self.box.close()
            self.config = OutboxConfig(spool_path=self.dir / "o.sqlite", spool_limit=5)
            self.box = Outbox(self.config)

    @rule(message=outbound)
    def put(self, message: Outbound) -> None:
        self.box.put(message)

    @rule(count=st.integers(0, 4))
    def take(self, count: int) -> None:
        self.handed += [entry_id for entry_id, _ in self.box.take(count)]

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        choices = self.handed + self.acked  # acking one twice must change nothing
        if choices:
            entry_id = data.draw(st.sampled_from(choices))
            self.box.ack(entry_id)
            if entry_id in self.handed:
                self.handed.remove(entry_id)
                self.acked.append(entry_id)

    @rule()
    def release(self) -> None:
        self.box.release(self.handed)
        self.handed = []

    @precondition(lambda self: self.box.spooled)
    @rule()
    def restart(self) -> None:
        self.retire()
        self.box.close()
        self.box = Outbox(self.config)
        self.before = len(self.box)
        self.handed, self.acked = [], []

    def retire(self) -> None:
        self.puts += self.box.queued
        self.delivered += self.box.delivered
        self.dropped += self.box.dropped_full

    @invariant()
    def counts_are_a_recount(self) -> None:
        snap = self.box.snapshot()
        assert snap["bytes"] == recount(self.box)
        assert snap["waiting"] == len(self.box) == held(self.box)

    @invariant()
    def nothing_is_lost_between_the_counters(self) -> None:
        box = self.box
        assert self.before + box.queued == len(box) + box.delivered + box.dropped_full

    def teardown(self) -> None:
        self.box.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestOutboxCounts = OutboxCounts.TestCase
TestOutboxCounts.settings = settings(max_examples=40, stateful_step_count=25)
