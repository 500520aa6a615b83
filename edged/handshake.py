"""The reload handshake: ``edged reload --pid PID`` (the unit's ExecReload) signals a running
edged and returns once that edged has served the new configuration or refused it, so that
``systemctl reload`` means "done", as ``Type=notify-reload`` does on systemd 253+.

edged writes the outcome of each reload to ``reload.json`` in its runtime directory
(``$RUNTIME_DIRECTORY``, /run/edged under the unit), with the CLOCK_MONOTONIC time at which
that reload began. The asker notes the time before it signals and waits for an outcome that
began after it: an earlier reload still running cannot be mistaken for its own.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

REPORT = "reload.json"
DEFAULT_RUNTIME_DIR = Path("/run/edged")


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def runtime_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """The first of ``$RUNTIME_DIRECTORY`` (systemd may list several), or None outside a
    unit with a RuntimeDirectory=."""
    value = (os.environ if env is None else env).get("RUNTIME_DIRECTORY", "")
    first = value.split(":")[0]
    return Path(first) if first else None


@dataclass(frozen=True)
class Outcome:
    """One reload, as the daemon reports it."""

    pid: int
    began_usec: int
    ok: bool
    error: str = ""

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "began_usec": self.began_usec, "ok": self.ok,
                           "error": self.error})

    @classmethod
    def parse(cls, text: str) -> Outcome:
        data = json.loads(text)
        return cls(int(data["pid"]), int(data["began_usec"]), bool(data["ok"]),
                   str(data.get("error", "")))


def write(directory: Path, outcome: Outcome) -> None:
    """Replace the report atomically: a reader sees the old one or the new one whole."""
    temporary = directory / f".{REPORT}.{os.getpid()}"
    temporary.write_text(outcome.to_json())
    os.replace(temporary, directory / REPORT)


def read(directory: Path) -> Outcome | None:
    try:
        return Outcome.parse((directory / REPORT).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


class ReloadFailed(Exception):
    """The reload was refused, or no answer came."""


def ask(pid: int, directory: Path, timeout_s: float,
        kill: Callable[[int, int], None] = os.kill, poll_s: float = 0.05) -> Outcome:
    """Signal ``pid`` to reload and wait for its outcome. Raises ReloadFailed with the
    daemon's reason when it refused the new configuration, or when it did not answer."""
    asked = monotonic_usec()
    try:
        kill(pid, signal.SIGHUP)
    except ProcessLookupError as exc:
        raise ReloadFailed(f"no process {pid} to reload") from exc
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        outcome = read(directory)
        if outcome is not None and outcome.pid == pid and outcome.began_usec >= asked:
            if not outcome.ok:
                raise ReloadFailed(f"reload refused; the running configuration keeps "
                                   f"serving: {outcome.error}")
            return outcome
        try:
            kill(pid, 0)
        except ProcessLookupError as exc:
            raise ReloadFailed(f"edged (pid {pid}) exited during the reload") from exc
        time.sleep(poll_s)
    raise ReloadFailed(f"edged (pid {pid}) did not report the reload's outcome in "
                       f"{directory / REPORT} within {timeout_s:g} s")
