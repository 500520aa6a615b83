"""Where QoS 1 results wait while the broker is unreachable.

Bounded in memory, or spooled to SQLite (WAL) so they also survive a restart of edged.
``put`` never waits on the network: it is called from worker threads, and a dead broker
must not stall inference. The MQTT thread ``take``s a window of entries, publishes them
and ``ack``s each one when the broker's PUBACK arrives; only then is it forgotten, so a
crash between the two delivers it twice rather than never (at least once, like QoS 1).
When the bound is reached the oldest waiting entry is dropped and counted.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Protocol

import structlog

from edged.config import OutboxConfig
from edged.types import Outbound

log = structlog.get_logger("edged.outbox")
Entry = tuple[int, Outbound]


def _size(message: Outbound) -> int:
    """The bytes an entry holds: payload, topic (UTF-8) and correlation data."""
    return (len(message.payload) + len(message.topic.encode())
            + len(message.correlation_data or b""))


# The same measure in SQL, used both to count a spool found at start and to take an entry
# out of the count: LENGTH of a BLOB is its bytes (of TEXT, its characters up to a NUL).
_SIZE_SQL = ("LENGTH(payload) + LENGTH(CAST(topic AS BLOB)) "
             "+ COALESCE(LENGTH(correlation), 0)")


class Store(Protocol):
    def add(self, message: Outbound) -> int: ...
    def oldest(self, count: int, skip: set[int]) -> list[Entry]: ...
    def remove(self, entry_id: int) -> bool: ...
    def evict_oldest(self, skip: set[int]) -> bool: ...
    def count(self) -> int: ...
    def size(self) -> int: ...
    def close(self) -> None: ...


class MemoryStore:
    """Insertion-ordered entries; ids only grow, so dict order is age order."""

    def __init__(self) -> None:
        self._entries: dict[int, Outbound] = {}
        self._next = 1
        self._bytes = 0

    def add(self, message: Outbound) -> int:
        entry_id, self._next = self._next, self._next + 1
        self._entries[entry_id] = message
        self._bytes += _size(message)
        return entry_id

    def oldest(self, count: int, skip: set[int]) -> list[Entry]:
        out: list[Entry] = []
        for entry_id, message in self._entries.items():
            if len(out) >= count:
                break
            if entry_id not in skip:
                out.append((entry_id, message))
        return out

    def remove(self, entry_id: int) -> bool:
        message = self._entries.pop(entry_id, None)
        if message is None:
            return False
        self._bytes -= _size(message)
        return True

    def evict_oldest(self, skip: set[int]) -> bool:
        victim = next((i for i in self._entries if i not in skip), None)
        if victim is None:
            return False
        self.remove(victim)
        return True

    def count(self) -> int:
        return len(self._entries)

    def size(self) -> int:
        return self._bytes

    def close(self) -> None:
        self._entries.clear()
        self._bytes = 0


class SqliteStore:
    """One table in a WAL-mode SQLite file; each change is its own small transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a power cut may lose the last transactions, never corrupt the file.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, "
            "retain INTEGER NOT NULL, correlation BLOB, user_props TEXT NOT NULL, "
            "queued_at REAL NOT NULL)"
        )
        self._count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        self._bytes = int(self._db.execute(
            f"SELECT COALESCE(SUM({_SIZE_SQL}), 0) FROM outbox"
        ).fetchone()[0])

    def add(self, message: Outbound) -> int:
        cursor = self._db.execute(
            "INSERT INTO outbox (topic, payload, qos, retain, correlation, user_props, "
            "queued_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (message.topic, message.payload, message.qos, int(message.retain),
             message.correlation_data, json.dumps(message.user_properties), time.time()),
        )
        self._count += 1
        self._bytes += _size(message)
        return int(cursor.lastrowid or 0)

    def oldest(self, count: int, skip: set[int]) -> list[Entry]:
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain, correlation, user_props FROM outbox "
            "ORDER BY id LIMIT ?", (count + len(skip),)
        ).fetchall()
        out = [(int(r[0]), Outbound(r[1], bytes(r[2]), int(r[3]), bool(r[4]), r[5],
                                    tuple(tuple(p) for p in json.loads(r[6]))))
               for r in rows if r[0] not in skip]
        return out[:count]

    def remove(self, entry_id: int) -> bool:
        # No DELETE ... RETURNING: it needs SQLite 3.35, newer than some boxes have.
        row = self._db.execute(f"SELECT {_SIZE_SQL} FROM outbox WHERE id = ?",
                               (entry_id,)).fetchone()
        if row is None:
            return False
        self._db.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))
        self._count -= 1
        self._bytes -= int(row[0])
        return True

    def evict_oldest(self, skip: set[int]) -> bool:
        for entry_id, _ in self.oldest(1, skip):
            self.remove(entry_id)
            return True
        return False

    def count(self) -> int:
        return self._count

    def size(self) -> int:
        return self._bytes

    def close(self) -> None:
        self._db.close()


class Outbox:
    """Thread-safe, bounded; entries handed to the broker stay until acknowledged."""

    def __init__(self, config: OutboxConfig) -> None:
        self._lock = threading.Lock()
        self._handed: set[int] = set()
        self._limit_bytes: int | None = None
        self._store: Store
        if config.spool_path is not None:
            self._store = SqliteStore(config.spool_path)
            self._limit = config.spool_limit
            if self._store.count():
                log.info("outbox: results from the spool wait for the broker",
                         count=self._store.count(), spool=str(config.spool_path))
        else:
            self._store = MemoryStore()
            self._limit, self._limit_bytes = config.memory_limit, config.memory_limit_bytes
        self.spooled = config.spool_path is not None
        self.queued = 0
        self.delivered = 0
        self.dropped_full = 0
        self._recent_drops: deque[float] = deque(maxlen=1)

    def put(self, message: Outbound) -> None:
        with self._lock:
            self._store.add(message)
            self.queued += 1
            while self._over_limit() and self._store.evict_oldest(self._handed):
                self.dropped_full += 1
                if not self._recent_drops:  # log the first drop of a run, not every one
                    log.warning("outbox full: dropping the oldest waiting results",
                                limit=self._limit)
                self._recent_drops.append(time.monotonic())

    def _over_limit(self) -> bool:
        if self._store.count() > self._limit:
            return True
        return self._limit_bytes is not None and self._store.size() > self._limit_bytes

    def take(self, count: int) -> list[Entry]:
        """Up to ``count`` of the oldest entries not already handed out; they are now."""
        with self._lock:
            entries = self._store.oldest(count, self._handed)
            self._handed.update(entry_id for entry_id, _ in entries)
            return entries

    def ack(self, entry_id: int) -> None:
        """The broker has the entry: forget it."""
        with self._lock:
            self._handed.discard(entry_id)
            # A second acknowledgement of one entry delivers nothing more.
            if self._store.remove(entry_id):
                self.delivered += 1
                self._recent_drops.clear()

    def release(self, entry_ids: list[int]) -> None:
        """Entries handed out but not delivered (publish failed): offer them again."""
        with self._lock:
            self._handed.difference_update(entry_ids)

    def __len__(self) -> int:
        with self._lock:
            return self._store.count()

    def snapshot(self) -> dict[str, int | bool]:
        with self._lock:
            return {"waiting": self._store.count(), "bytes": self._store.size(),
                    "queued": self.queued, "delivered": self.delivered,
                    "dropped_full": self.dropped_full, "spool": self.spooled}

    def close(self) -> int:
        """Close the store; return how many entries it still held (kept when spooled)."""
        with self._lock:
            left = self._store.count()
            self._store.close()
            return left
