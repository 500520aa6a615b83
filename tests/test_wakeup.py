"""How other threads reach the MQTT thread: a call queued from another thread wakes a poll
that would otherwise sleep, and runs on the polling thread."""

from __future__ import annotations

import os
import select
import threading
import time

import pytest

from edged.mqtt.wakeup import Wakeup


def test_a_call_wakes_the_poll_and_runs_on_the_polling_thread() -> None:
    wakeup = Wakeup()
    poller = select.poll()
    poller.register(wakeup.fd, select.POLLIN)
    ran_on: list[int] = []
    done: list[threading.Event] = []
    caller = threading.Timer(0.05, lambda: done.append(
        wakeup.call(lambda: ran_on.append(threading.get_ident()))))
    caller.start()
    start = time.monotonic()
    wakeup.asleep = True
    events = poller.poll(5000)
    wakeup.woke()
    wakeup.run_calls()
    assert events and time.monotonic() - start < 2.0
    caller.join()  # the caller's thread keeps the event once ``call`` has returned it
    assert ran_on == [threading.get_ident()] and done[0].is_set()
    assert poller.poll(0) == []  # the pipe was emptied
    wakeup.close()


def test_no_write_while_the_thread_is_awake() -> None:
    wakeup = Wakeup()
    poller = select.poll()
    poller.register(wakeup.fd, select.POLLIN)
    wakeup.wake()  # not asleep: it will see the call on its next pass anyway
    assert poller.poll(0) == []
    wakeup.close()


def test_no_byte_is_left_in_the_pipe_whatever_runs_between(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """The MQTT thread's ``woke`` may run between another thread's check and its write; a
    byte left in the pipe without the flag would make every ``poll`` return at once."""
    wakeup = Wakeup()
    real_write = os.write

    def write_after_the_loop_woke(fd: int, data: bytes) -> int:
        wakeup.woke()  # the MQTT thread, between the check and the write
        return real_write(fd, data)

    wakeup.asleep = True
    monkeypatch.setattr(os, "write", write_after_the_loop_woke)
    wakeup.wake()
    monkeypatch.setattr(os, "write", real_write)
    wakeup.asleep = True
    assert select.select([wakeup.fd], [], [], 0)[0]  # the next poll returns at once, and
    wakeup.woke()  # ... empties the pipe
    assert not select.select([wakeup.fd], [], [], 0)[0]
    wakeup.close()
