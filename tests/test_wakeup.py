"""How other threads reach the MQTT thread: a call queued from another thread wakes a poll
that would otherwise sleep, and runs on the polling thread."""

from __future__ import annotations

import select
import threading
import time

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
