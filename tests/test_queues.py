"""edged.queues: bounded per-route queue policies and the scheduler that feeds workers.

Nothing here sleeps: only the wake-up tests use a thread, joined with a short timeout.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.queues import EdfQueue, FifoQueue, LatestQueue, ModelScheduler, make_queue


@dataclass(frozen=True)
class Item:
    name: str
    due: float = 0.0
    source: str = "s"


def names(items: list[Item] | None) -> list[str]:
    return [i.name for i in items or []]


def pop_all(queue: FifoQueue[Item] | LatestQueue[Item] | EdfQueue[Item]) -> list[str]:
    out = []
    while (item := queue.pop()) is not None:
        out.append(item.name)
    return out


# --- FIFO (drop oldest) -----------------------------------------------------------------


def test_fifo_order() -> None:
    q: FifoQueue[Item] = FifoQueue(10)
    for n in "abc":
        assert q.put(Item(n)) == []
    assert len(q) == 3
    assert pop_all(q) == ["a", "b", "c"]
    assert q.pop() is None


def test_fifo_put_when_full_evicts_and_returns_the_oldest() -> None:
    q: FifoQueue[Item] = FifoQueue(2)
    a, b, c, d = Item("a"), Item("b"), Item("c"), Item("d")
    assert q.put(a) == []
    assert q.put(b) == []
    assert q.put(c) == [a]
    assert q.put(d) == [b]
    assert len(q) == 2
    assert pop_all(q) == ["c", "d"]


def test_fifo_head_due_and_drain() -> None:
    q: FifoQueue[Item] = FifoQueue(5)
    assert q.head_due() is None
    q.put(Item("a", due=3.0))
    q.put(Item("b", due=1.0))
    assert q.head_due() == 3.0  # FIFO: the head is the oldest, whatever its deadline
    assert q.ahead_of(0.0) == 2
    assert names(q.drain()) == ["a", "b"]
    assert len(q) == 0
    assert q.drain() == []


# --- latest per source ------------------------------------------------------------------


def test_latest_replaces_the_waiting_item_of_the_same_source() -> None:
    q: LatestQueue[Item] = LatestQueue(5)
    old = Item("cam1-old", source="cam1")
    assert q.put(old) == []
    assert q.put(Item("cam2", source="cam2")) == []
    assert q.put(Item("cam1-new", source="cam1")) == [old]
    assert len(q) == 2
    assert pop_all(q) == ["cam2", "cam1-new"]


def test_latest_when_full_evicts_the_oldest_source() -> None:
    q: LatestQueue[Item] = LatestQueue(2)
    q.put(Item("a", source="a"))
    q.put(Item("b", source="b"))
    assert names(q.put(Item("c", source="c"))) == ["a"]
    assert names(q.drain()) == ["b", "c"]


# --- earliest deadline first ------------------------------------------------------------


def test_edf_pops_by_deadline_then_arrival() -> None:
    q: EdfQueue[Item] = EdfQueue(10)
    for name, due in [("late", 9.0), ("soon", 1.0), ("mid", 5.0), ("soon2", 1.0)]:
        assert q.put(Item(name, due=due)) == []
    assert q.head_due() == 1.0
    assert q.ahead_of(5.0) == 3
    assert pop_all(q) == ["soon", "soon2", "mid", "late"]


def test_edf_when_full_refuses_the_latest_deadline() -> None:
    q: EdfQueue[Item] = EdfQueue(2)
    q.put(Item("a", due=1.0))
    q.put(Item("b", due=5.0))
    newcomer = Item("c", due=9.0)
    assert q.put(newcomer) == [newcomer]  # the newcomer itself is the latest
    assert names(q.put(Item("d", due=2.0))) == ["b"]
    assert names(q.drain()) == ["a", "d"]


def test_edf_tie_with_the_latest_refuses_the_newcomer() -> None:
    q: EdfQueue[Item] = EdfQueue(1)
    q.put(Item("first", due=1.0))
    assert names(q.put(Item("second", due=1.0))) == ["second"]
    assert pop_all(q) == ["first"]


@pytest.mark.parametrize("policy", ["fifo", "latest", "edf"])
def test_every_policy_stays_within_its_bound_and_accounts_for_every_item(policy: str) -> None:
    q: FifoQueue[Item] | LatestQueue[Item] | EdfQueue[Item] = make_queue(policy, 3)
    evicted: list[Item] = []
    items = [Item(str(i), due=float(i % 4), source=f"s{i % 5}") for i in range(20)]
    for item in items:
        evicted += q.put(item)
        assert len(q) <= 3
    left = q.drain()
    assert sorted(names(evicted + left), key=int) == [i.name for i in items]


def test_make_queue_refuses_a_zero_bound() -> None:
    with pytest.raises(ValueError, match="maxsize must be at least 1"):
        make_queue("fifo", 0)


# --- the scheduler ----------------------------------------------------------------------


def scheduler(**routes: tuple[str, int, int]) -> ModelScheduler[Item]:
    s: ModelScheduler[Item] = ModelScheduler()
    for route, (policy, size, priority) in routes.items():
        s.add_route(route, policy, size, priority)
    return s


def test_scheduler_get_returns_in_fifo_order() -> None:
    s = scheduler(r=("fifo", 10, 0))
    for n in "abc":
        assert s.put("r", Item(n)) == []
    assert [s.get(0).name for _ in range(3)] == ["a", "b", "c"]  # type: ignore[union-attr]


def test_scheduler_get_timeout_returns_none() -> None:
    s = scheduler(r=("fifo", 10, 0))
    assert s.get(timeout=0.01) is None


def test_scheduler_take_never_waits() -> None:
    s = scheduler(r=("fifo", 10, 0), hi=("fifo", 10, 1))
    assert s.take() is None
    s.put("r", Item("a"))
    s.put("hi", Item("b"))
    assert [s.take().name, s.take().name] == ["b", "a"]  # type: ignore[union-attr]
    assert s.take() is None


def test_scheduler_put_when_full_returns_the_evicted_oldest() -> None:
    s = scheduler(r=("fifo", 1, 0))
    a = Item("a")
    s.put("r", a)
    assert s.put("r", Item("b")) == [a]
    assert s.depth("r") == 1


def test_scheduler_serves_higher_priority_then_earlier_deadline() -> None:
    s = scheduler(bulk=("fifo", 10, 0), urgent=("fifo", 10, 5), other=("fifo", 10, 0))
    s.put("bulk", Item("bulk", due=1.0))
    s.put("other", Item("other", due=0.5))
    s.put("urgent", Item("urgent", due=9.0))
    assert [s.get(0).name for _ in range(3)] == ["urgent", "other", "bulk"]  # type: ignore[union-attr]


def test_scheduler_ahead_of_counts_what_would_run_first() -> None:
    s = scheduler(hi=("fifo", 10, 1), lo=("edf", 10, 0), lo2=("edf", 10, 0))
    s.put("hi", Item("h", due=50.0))
    s.put("lo", Item("l1", due=1.0))
    s.put("lo", Item("l2", due=9.0))
    s.put("lo2", Item("m", due=2.0))
    assert s.ahead_of("lo", 5.0) == 3  # h (higher priority), l1 and m (earlier)
    assert s.ahead_of("hi", 0.0) == 1
    assert len(s) == 4


def test_scheduler_drain_empties_every_route() -> None:
    s = scheduler(a=("fifo", 10, 0), b=("edf", 10, 0))
    s.put("a", Item("a1"))
    s.put("b", Item("b1"))
    assert sorted(names(list(s.drain()))) == ["a1", "b1"]
    assert len(s) == 0


def test_close_wakes_a_waiting_getter() -> None:
    s = scheduler(r=("fifo", 10, 0))
    got: list[Item | None] = []
    getter = threading.Thread(target=lambda: got.append(s.get(timeout=30)), daemon=True)
    getter.start()
    getter.join(0.05)
    assert getter.is_alive()  # it is waiting
    s.close()
    getter.join(5)
    assert not getter.is_alive()
    assert got == [None]


def test_put_wakes_a_waiting_getter() -> None:
    s = scheduler(r=("fifo", 10, 0))
    got: list[Item | None] = []
    getter = threading.Thread(target=lambda: got.append(s.get(timeout=30)), daemon=True)
    getter.start()
    getter.join(0.05)
    s.put("r", Item("x"))
    getter.join(5)
    assert not getter.is_alive()
    assert names(got) == ["x"]  # type: ignore[arg-type]


def test_closed_scheduler_still_hands_out_what_is_queued() -> None:
    s = scheduler(r=("fifo", 10, 0))
    s.put("r", Item("a"))
    s.close()
    item = s.get(timeout=30)
    assert item is not None and item.name == "a"
    assert s.get(timeout=30) is None  # closed and empty: returns at once


def test_a_closed_scheduler_hands_new_items_straight_back() -> None:
    class Item:
        due, source = 1.0, "a"

    scheduler: ModelScheduler[Item] = ModelScheduler()
    scheduler.add_route("r", "fifo", 4, 0)
    scheduler.close()
    item = Item()
    assert scheduler.put("r", item) == [item]
    assert len(scheduler) == 0 and scheduler.closed


operations = st.lists(st.one_of(
    st.tuples(st.just("put"), st.sampled_from(["a", "b"]), st.integers(0, 5),
              st.sampled_from(["s1", "s2", "s3"])),
    st.tuples(st.just("get"), st.just(""), st.just(0), st.just("")),
    st.tuples(st.just("drain"), st.just(""), st.just(0), st.just("")),
), max_size=60)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["fifo", "latest", "edf"]), st.sampled_from(["fifo", "latest", "edf"]),
       st.integers(1, 4), st.integers(0, 1), operations)
def test_scheduler_counts_equal_a_recount(policy_a: str, policy_b: str, size: int,
                                          priority_b: int,
                                          ops: list[tuple[str, str, int, str]]) -> None:
    s = scheduler(a=(policy_a, size, 0), b=(policy_b, size, priority_b))
    queued: dict[str, set[str]] = {"a": set(), "b": set()}  # what should still be waiting
    route_of: dict[str, str] = {}
    for n, (op, route, due, source) in enumerate(ops):
        if op == "put":
            item = Item(str(n), due=float(due), source=source)
            route_of[item.name] = route
            queued[route].add(item.name)
            for out in s.put(route, item):
                queued[route_of[out.name]].remove(out.name)
        elif op == "get":
            got = s.get(timeout=0)
            if got is not None:
                queued[route_of[got.name]].remove(got.name)
        else:
            for out in s.drain():
                queued[route_of[out.name]].remove(out.name)
        # Every item put is waiting, or was handed back exactly once (the remove above
        # fails on a second hand-back); the depths are what is waiting.
        assert s.depth("a") == len(queued["a"]) <= size
        assert s.depth("b") == len(queued["b"]) <= size
        assert len(s) == len(queued["a"]) + len(queued["b"])
        assert s.ahead_of("a", 10.0) <= len(s)
