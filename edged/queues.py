"""Bounded per-route queues with a policy, and the scheduler that feeds a model's workers.

The policies are plain data structures (no locks, no clocks); ``ModelScheduler`` adds the
lock and the condition variable. Every item a policy pushes out is handed back to the
caller, so it can be counted and reported, never lost silently.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar


class Queued(Protocol):
    """What a queue needs to know about an item."""

    @property
    def due(self) -> float:
        """Its deadline (monotonic seconds)."""

    @property
    def source(self) -> str:
        """Its source topic, for the ``latest`` policy."""


T = TypeVar("T", bound=Queued)


class FifoQueue(Generic[T]):
    """First in, first out; when full the oldest item makes room."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[T] = deque()

    def put(self, item: T) -> list[T]:
        evicted = [self._items.popleft()] if len(self._items) >= self.maxsize else []
        self._items.append(item)
        return evicted

    def pop(self) -> T | None:
        return self._items.popleft() if self._items else None

    def head_due(self) -> float | None:
        return self._items[0].due if self._items else None

    def ahead_of(self, due: float) -> int:
        return len(self._items)

    def drain(self) -> list[T]:
        items = list(self._items)
        self._items.clear()
        return items

    def __len__(self) -> int:
        return len(self._items)


class LatestQueue(Generic[T]):
    """Only the newest item per source topic (camera frames): a newer frame replaces the one
    still waiting from the same camera. Sources are served oldest-waiting first."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[str, T] = OrderedDict()

    def put(self, item: T) -> list[T]:
        evicted: list[T] = []
        replaced = self._items.pop(item.source, None)
        if replaced is not None:
            evicted.append(replaced)
        elif len(self._items) >= self.maxsize:
            evicted.append(self._items.popitem(last=False)[1])
        self._items[item.source] = item
        return evicted

    def pop(self) -> T | None:
        return self._items.popitem(last=False)[1] if self._items else None

    def head_due(self) -> float | None:
        return next(iter(self._items.values())).due if self._items else None

    def ahead_of(self, due: float) -> int:
        return len(self._items)

    def drain(self) -> list[T]:
        items = list(self._items.values())
        self._items.clear()
        return items

    def __len__(self) -> int:
        return len(self._items)


class EdfQueue(Generic[T]):
    """Earliest deadline first; when full the item with the latest deadline is refused,
    which may be the newcomer."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()

    def put(self, item: T) -> list[T]:
        if len(self._heap) >= self.maxsize:
            latest = max(self._heap, key=lambda entry: (entry[0], entry[1]))
            if latest[0] <= item.due:
                return [item]
            self._heap.remove(latest)
            heapq.heapify(self._heap)
            heapq.heappush(self._heap, (item.due, next(self._order), item))
            return [latest[2]]
        heapq.heappush(self._heap, (item.due, next(self._order), item))
        return []

    def pop(self) -> T | None:
        return heapq.heappop(self._heap)[2] if self._heap else None

    def head_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def ahead_of(self, due: float) -> int:
        return sum(1 for entry in self._heap if entry[0] <= due)

    def drain(self) -> list[T]:
        items = [entry[2] for entry in sorted(self._heap)]
        self._heap.clear()
        return items

    def __len__(self) -> int:
        return len(self._heap)


Policy = FifoQueue[T] | LatestQueue[T] | EdfQueue[T]
POLICIES = {"fifo": FifoQueue, "latest": LatestQueue, "edf": EdfQueue}


def make_queue(policy: str, maxsize: int) -> Policy[T]:
    if maxsize < 1:
        raise ValueError("maxsize must be at least 1")
    if policy == "latest":
        return LatestQueue(maxsize)
    if policy == "edf":
        return EdfQueue(maxsize)
    if policy == "fifo":
        return FifoQueue(maxsize)
    raise ValueError(f"unknown queue policy {policy!r}; known: {', '.join(POLICIES)}")


class ModelScheduler(Generic[T]):
    """The queues of every route that uses one model, and the choice of what runs next:
    the highest route priority first, then the earliest deadline at the head of a queue."""

    def __init__(self) -> None:
        self._queues: dict[str, tuple[int, Policy[T]]] = {}
        self._cond = threading.Condition()
        self._closed = False

    def add_route(self, route: str, policy: str, maxsize: int, priority: int) -> None:
        with self._cond:
            self._queues[route] = (priority, make_queue(policy, maxsize))

    def put(self, route: str, item: T) -> list[T]:
        """Queue ``item``; return what the route's policy pushed out (maybe ``item``, and
        always ``item`` once the scheduler is closed: nothing would ever take it)."""
        with self._cond:
            if self._closed:
                return [item]
            evicted = self._queues[route][1].put(item)
            if not evicted or evicted[-1] is not item:
                self._cond.notify()
            return evicted

    def get(self, timeout: float) -> T | None:
        """The next item to run, or None after ``timeout`` s or once closed and empty."""
        with self._cond:
            item = self._pick()
            if item is None and not self._closed:
                self._cond.wait(timeout)
                item = self._pick()
            return item

    def take(self) -> T | None:
        """The next item to run, if one is queued now (never waits)."""
        with self._cond:
            return self._pick()

    def _pick(self) -> T | None:
        best: tuple[int, float] | None = None
        chosen: Policy[T] | None = None
        for priority, queue in self._queues.values():
            due = queue.head_due()
            if due is None:
                continue
            key = (-priority, due)
            if best is None or key < best:
                best, chosen = key, queue
        return chosen.pop() if chosen is not None else None

    def ahead_of(self, route: str, due: float) -> int:
        """Roughly how many queued items run before an item of ``route`` due at ``due``."""
        with self._cond:
            mine = self._queues[route][0]
            return sum(
                len(q) if priority > mine else q.ahead_of(due) if priority == mine else 0
                for priority, q in self._queues.values()
            )

    def depth(self, route: str) -> int:
        with self._cond:
            return len(self._queues[route][1])

    def __len__(self) -> int:
        with self._cond:
            return sum(len(q) for _, q in self._queues.values())

    def drain(self) -> Iterable[T]:
        with self._cond:
            return [item for _, q in self._queues.values() for item in q.drain()]

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
