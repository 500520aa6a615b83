"""What ``edged status`` and ``edged top`` show, from a box's status and stats topics.

Pure: the view keeps the last two stats snapshots and the status topic's word; ``render``
turns them into lines of text. Rates are those of the last interval between two
snapshots, from their own clocks, so they do not depend on when the watcher heard them.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BoxView:
    """One box as the stats and status topics tell it."""

    device_id: str
    status_topic: str
    stats_topic: str
    status: str | None = None
    """The status topic's payload: online, offline (the last will) or stopped."""
    current: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None
    snapshots: int = 0
    problems: list[str] = field(default_factory=list)

    def take(self, topic: str, payload: bytes) -> bool:
        """Take one message; True when it changed what the view shows."""
        if topic == self.status_topic:
            self.status = payload.decode("utf-8", "replace")
            return True
        if topic != self.stats_topic:
            return False
        try:
            body = json.loads(payload)
        except ValueError:
            self.problems.append("a stats message that is not JSON was ignored")
            return False
        if not isinstance(body, dict) or not isinstance(body.get("routes"), dict):
            self.problems.append("a stats message without routes was ignored")
            return False
        restarted = self.current is not None and (
            float(body.get("uptime_s", 0)) < float(self.current.get("uptime_s", 0)))
        # Counters start again from zero after a restart: no rate across one.
        self.previous, self.current = (None if restarted else self.current), body
        self.snapshots += 1
        return True


@dataclass(frozen=True)
class RouteLine:
    name: str
    model: str
    received: int
    on_time: int
    late: int
    refused: dict[str, int]
    p50: float | None
    p99: float | None
    queue: int
    in_rate: float | None
    """Messages received a second over the last interval; None with one snapshot."""
    ok_rate: float | None
    """On-time answers a second over the last interval."""
    superseded: int = 0
    """Replaced by newer messages from the same source (queue: latest): not refusals."""
    windows: int | None = None
    """A windowed route's model inputs; ``received`` then counts messages of readings."""


def interval_s(view: BoxView) -> float | None:
    """Seconds between the last two snapshots, by the daemon's clock."""
    if view.current is None or view.previous is None:
        return None
    span = float(view.current.get("time", 0)) - float(view.previous.get("time", 0))
    return span if span > 0 else None


def route_lines(view: BoxView) -> list[RouteLine]:
    if view.current is None:
        return []
    span = interval_s(view)
    before = (view.previous or {}).get("routes", {})
    lines = []
    for name, r in view.current["routes"].items():
        old = before.get(name)
        total = r.get("total_ms") or {}
        lines.append(RouteLine(
            name, str(r.get("model", "")), int(r.get("received", 0)),
            int(r.get("succeeded", 0)), int(r.get("late", 0)),
            {str(k): int(v) for k, v in (r.get("failed") or {}).items()},
            total.get("p50"), total.get("p99"), int(r.get("queue_depth", 0)),
            _per_second(r, old, "received", span), _per_second(r, old, "succeeded", span),
            int(r.get("superseded", 0)),
            int(r["windows"]) if r.get("windows") is not None else None,
        ))
    return lines


def _per_second(new: dict[str, Any], old: Any, key: str, span: float | None) -> float | None:
    """How fast the counter ``key`` grew between two snapshots of a route. A route a reload
    added has no old snapshot: no rate yet."""
    if span is None or not isinstance(old, dict):
        return None
    grown = int(new.get(key, 0)) - int(old.get(key, 0))
    return grown / span if grown >= 0 else None


def clock(wall: float) -> str:
    """``HH:MM:SS.mmm`` in local time: which snapshot the screen shows."""
    return datetime.datetime.fromtimestamp(wall).strftime("%H:%M:%S.%f")[:-3]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _refused(reasons: dict[str, int]) -> str:
    shown = [f"{reason} {count}" for reason, count in sorted(reasons.items()) if count]
    return ", ".join(shown) or "-"


def header(view: BoxView, now: float, every_s: float) -> list[str]:
    state = view.status or "unknown (no retained status)"
    cur = view.current
    if cur is None:
        if view.status in ("offline", "stopped"):
            wait = f"the box is {view.status}"
        elif every_s:
            wait = f"one comes every {every_s:g} s"
        else:
            wait = "stats_interval_s is 0: the box publishes none"
        return [f"edged {view.device_id}: {state}", f"no stats snapshot yet ({wait})"]
    mqtt = cur.get("mqtt") or {}
    uptime = cur.get("uptime_s")
    up = f", up {datetime.timedelta(seconds=int(uptime))}" if uptime is not None else ""
    age = max(0.0, now - float(cur.get("time", now)))
    span = interval_s(view)
    rates = f"rates over the last {span:.1f} s" if span else "rates after the next snapshot"
    protocol = f" (MQTT {mqtt['protocol']})" if mqtt.get("protocol") else ""
    return [f"edged {view.device_id}: {state}, broker {mqtt.get('state', '?')}{protocol}{up}",
            f"stats of {clock(float(cur.get('time', 0)))} ({age:.1f} s ago, every "
            f"{every_s:g} s); {rates}"]


ROUTE_COLUMNS = ("ROUTE", "MODEL", "RECEIVED", "ON TIME", "LATE", "P50 MS", "P99 MS", "QUEUE",
                 "IN/S", "OK/S", "REFUSED")


def _received(line: RouteLine) -> str:
    """A window route's messages (of readings) and the windows made of them, as two
    figures: it answers once per window, not per message."""
    if line.windows is None:
        return str(line.received)
    return f"{line.received} messages, {line.windows} windows"


def _not_run(line: RouteLine) -> str:
    refused = _refused(line.refused)
    if not line.superseded:
        return refused
    newer = f"superseded {line.superseded}"
    return newer if refused == "-" else f"{refused}; {newer}"


def route_table(lines: list[RouteLine], with_rates: bool) -> list[str]:
    rows = [[r.name, r.model, _received(r), str(r.on_time), str(r.late), _ms(r.p50),
             _ms(r.p99), str(r.queue), _rate(r.in_rate), _rate(r.ok_rate), _not_run(r)]
            for r in lines]
    columns = list(ROUTE_COLUMNS)
    if not with_rates:
        columns = columns[:8] + columns[10:]
        rows = [row[:8] + row[10:] for row in rows]
    return _table(columns, rows, left={"ROUTE", "MODEL", "REFUSED"}) if rows else ["no routes"]


def worker_table(view: BoxView) -> list[str]:
    rows = []
    for model, info in ((view.current or {}).get("models") or {}).items():
        for w in info.get("workers", []):
            events = int(w.get("fallback_events", 0))
            fallback = ("yes" if w.get("on_fallback") else "no") + (
                f" ({events} event{'s' if events != 1 else ''})" if events else "")
            rows.append([str(w.get("name", "?")), model, str(w.get("backend", "?")), fallback,
                         str(w.get("invokes", 0)), str(w.get("failures", 0))])
    if not rows:
        return ["no workers"]
    return _table(["WORKER", "MODEL", "BACKEND", "ON FALLBACK", "INVOKES", "FAILURES"], rows,
                  left={"WORKER", "MODEL", "BACKEND", "ON FALLBACK"})


def outbox_line(view: BoxView) -> str:
    mqtt = (view.current or {}).get("mqtt") or {}
    box = mqtt.get("outbox") or {}
    spool = "spooled to disk" if box.get("spool") else "in memory"
    return (f"outbox {box.get('waiting', 0)} waiting ({box.get('bytes', 0)} bytes, {spool}), "
            f"{box.get('delivered', 0)} delivered, {box.get('dropped_full', 0)} dropped full; "
            f"{mqtt.get('dropped_offline_qos0', 0)} QoS 0 dropped while offline"
            + "".join(f"; {n} {reason}" for reason, n in
                      sorted((mqtt.get("undeliverable") or {}).items())))


def frigate_line(view: BoxView) -> list[str]:
    """The Frigate door, when the box runs one: detectors, results, zeros by reason."""
    door = (view.current or {}).get("frigate")
    if not isinstance(door, dict):
        return []
    counts = door.get("counts") or {}
    zeros = {k.removeprefix("zeros_"): v for k, v in sorted(counts.items())
             if k.startswith("zeros_")}
    return [f"frigate {', '.join(door.get('endpoints') or [])}: {door.get('detectors', 0)} "
            f"detector(s), {door.get('pending', 0)} in flight; {counts.get('results', 0)} "
            f"results ({counts.get('results_with_detections', 0)} with boxes), zeros "
            f"{_refused(zeros) if zeros else 'none'}; {counts.get('late_dropped', 0)} late "
            "results dropped"]


def render(view: BoxView, now: float, every_s: float, with_rates: bool) -> list[str]:
    """The whole screen (``top``) or report (``status``), one string a line."""
    lines = header(view, now, every_s)
    if view.current is not None:
        totals = view.current.get("totals") or {}
        lines += ["", *route_table(route_lines(view), with_rates), "",
                  *worker_table(view), "", outbox_line(view), *frigate_line(view),
                  f"unrouted {totals.get('unrouted', 0)} (messages that matched no route)"]
    return lines + view.problems[-3:]


def _table(columns: list[str], rows: list[list[str]], left: set[str]) -> list[str]:
    """Aligned columns: those in ``left`` to the left, the figures to the right."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]

    def line(cells: list[str]) -> str:
        out = [cell.ljust(w) if name in left else cell.rjust(w)
               for name, cell, w in zip(columns, cells, widths, strict=True)]
        return "  ".join(out).rstrip()

    return [line(columns), *(line(r) for r in rows)]
