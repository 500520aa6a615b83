"""``edged status`` and ``edged top``: a box's state in the terminal, read from its status
and stats topics over the broker, with the daemon's own connection settings.

``top`` redraws every second with plain ANSI sequences on the terminal's alternate screen
(like ``htop``, without curses), and quits on ``q`` or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import shutil
import sys
import termios
import time
import tty
from collections.abc import Iterator
from typing import TextIO

from edged import topics
from edged.config import Settings
from edged.monitor import BoxView, render
from edged.mqtt.watch import Watcher

REFRESH_S = 1.0
STATUS_GRACE_S = 1.0  # the retained status comes at once; wait this long for it at most


def view_of(settings: Settings, device: str | None) -> BoxView:
    """An empty view of the box ``device`` (default: the configuration's own)."""
    device_id = device or settings.device_id
    base = f"{settings.mqtt.topic_prefix}/{topics.safe_level(device_id)}"
    return BoxView(device_id, f"{base}/status", f"{base}/stats")


def connect(settings: Settings, view: BoxView) -> Watcher:
    """Watch the box's status and stats, and ask it for a snapshot now."""
    watcher = Watcher(settings.mqtt, [view.status_topic, view.stats_topic])
    watcher.start()
    watcher.ask(request_topic(view))
    return watcher


def request_topic(view: BoxView) -> str:
    """Where a message asks the daemon for a stats snapshot at once (it answers at most
    twice a second, however many watch): ``top`` is live whatever ``stats_interval_s``."""
    return f"{view.stats_topic}/request"


def status(settings: Settings, device: str | None, timeout: float | None,
           as_json: bool, out: TextIO = sys.stdout) -> bool:
    """Print one snapshot. Waits for the next stats message (up to a stats interval and a
    bit, or ``timeout``); returns whether the box is online and one arrived."""
    view = view_of(settings, device)
    every = settings.stats_interval_s
    wait = timeout if timeout is not None else (every + 2.0 if every else STATUS_GRACE_S)
    watcher = connect(settings, view)
    start = time.monotonic()
    try:
        while view.current is None:
            left = start + wait - time.monotonic()
            down = view.status is not None and view.status != "online"
            if left <= 0 or down or (not every and view.status is not None):
                break  # a box that is down, or publishes no stats, sends none to wait for
            heard = watcher.next(timeout=min(left, 0.2))
            if heard is not None:
                view.take(heard.topic, heard.payload)
    finally:
        watcher.stop()
    if as_json:
        body = {"device_id": view.device_id, "status": view.status, "stats": view.current}
        out.write(json.dumps(body, indent=2) + "\n")
    else:
        out.write("\n".join(render(view, time.time(), every, with_rates=False)) + "\n")
        if view.current is None and view.status == "online" and every:
            out.write(f"no stats snapshot within {wait:g} s\n")
    return view.status == "online" and view.current is not None


def top(settings: Settings, device: str | None, out: TextIO = sys.stdout,
        keys: TextIO = sys.stdin) -> None:
    """Show the box live until ``q`` or Ctrl-C."""
    view = view_of(settings, device)
    watcher = connect(settings, view)
    try:
        with _screen(out, keys):
            _loop(view, watcher, settings.stats_interval_s, out, keys)
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()


def _loop(view: BoxView, watcher: Watcher, every: float, out: TextIO, keys: TextIO) -> None:
    next_draw = 0.0
    while True:
        changed = False
        heard = watcher.next(timeout=0.05)
        while heard is not None:  # take everything that came, then draw once
            changed = view.take(heard.topic, heard.payload) or changed
            heard = watcher.next(timeout=0)
        now = time.monotonic()
        if changed or now >= next_draw:
            _draw(out, render(view, time.time(), every, with_rates=True))
            if now >= next_draw:
                watcher.ask(request_topic(view))
            next_draw = now + REFRESH_S
        if _quit_pressed(keys):
            return


def _draw(out: TextIO, lines: list[str]) -> None:
    try:  # the terminal's own size, as htop takes it (not $COLUMNS, which may be stale)
        width, height = os.get_terminal_size(out.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        width, height = shutil.get_terminal_size((120, 40))
    shown = [line[:width] for line in lines[:height - 1]]
    hint = "q: quit"
    # Home, each line then clear to its end, clear below: no flicker from a full clear.
    out.write("\x1b[H" + "".join(f"{line}\x1b[K\r\n" for line in shown) + f"{hint}\x1b[K\x1b[J")
    out.flush()


def _quit_pressed(keys: TextIO) -> bool:
    if not keys.isatty():
        return False
    ready, _, _ = select.select([keys], [], [], 0)
    return bool(ready) and os.read(keys.fileno(), 32).lower().startswith(b"q")


@contextlib.contextmanager
def _screen(out: TextIO, keys: TextIO) -> Iterator[None]:
    """The alternate screen without a cursor, keys read one at a time; all undone after."""
    saved = termios.tcgetattr(keys.fileno()) if keys.isatty() else None
    if saved is not None:
        tty.setcbreak(keys.fileno())
    out.write("\x1b[?1049h\x1b[?25l\x1b[2J")
    try:
        yield
    finally:
        out.write("\x1b[?25h\x1b[?1049l")
        out.flush()
        if saved is not None:
            termios.tcsetattr(keys.fileno(), termios.TCSADRAIN, saved)
