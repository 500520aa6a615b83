#!/usr/bin/env python3
"""Benchmark edged over MQTT, the way serving systems are measured (like perf_analyzer).

1. Starts a private mosquitto on a free loopback port (or uses --broker) and edged with the
   chosen model and workers, as separate processes.
2. Measures the raw capacity in the same run: invokes per second of the same number of
   interpreters in threads, with no MQTT.
3. Drives open-loop load (constant rate, or Poisson with --poisson) at multiples of that
   capacity (--loads) or at absolute rates (--rates), every message an MQTT 5 request with a
   Response Topic, Correlation Data and a deadline, timing each round trip at the sender.
4. Prints a table and writes JSON: offered and achieved rate, on-time goodput, deadline
   attainment, p50/p90/p99 latency of answers, late answers, rejections by reason, edged's
   CPU and peak RSS, goodput as a fraction of raw capacity.

  python scripts/bench.py --model mobilenet --workers 2 --deadline-ms 100
  python scripts/bench.py --model digits --rates 1000 2000 4000 8000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing import Pipe, Process
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edged.mqtt import fastpath  # noqa: E402
from edged.runtime import select_backend  # noqa: E402
from tests.support.broker import Broker, wait_for_port  # noqa: E402

MODELS = {
    "mobilenet": REPO / "models" / "mobilenet_v2_1.0_224_quant.tflite",
    "digits": REPO / "models" / "digits_int8.tflite",
    "vibration": REPO / "models" / "vibration_int8.tflite",
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- raw capacity -------------------------------------------------------------------------

def raw_capacity(model: Path, workers: int, seconds: float) -> dict[str, Any]:
    """Invokes per second of ``workers`` interpreters in threads, plus one thread's
    invoke-time percentiles (measured alone first)."""
    backend = select_backend()

    def make() -> Any:
        interpreter = backend.interpreter_class(model_path=str(model), num_threads=1)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        info = np.iinfo(detail["dtype"])
        frame = np.random.default_rng(0).integers(info.min, info.max, detail["shape"],
                                                  dtype=detail["dtype"])
        interpreter.set_tensor(detail["index"], frame)
        for _ in range(5):
            interpreter.invoke()
        return interpreter

    single = make()
    times = []
    end = time.perf_counter() + min(seconds, 3.0)
    while time.perf_counter() < end:
        t = time.perf_counter()
        single.invoke()
        times.append((time.perf_counter() - t) * 1000)
    counts = [0] * workers
    stop = threading.Event()

    def loop(i: int, interpreter: Any) -> None:
        while not stop.is_set():
            interpreter.invoke()
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i, make())) for i in range(workers)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return {
        "runtime": backend.describe(),
        "capacity_per_s": sum(counts) / elapsed,
        "invoke_ms_p50": float(np.percentile(times, 50)),
        "invoke_ms_p99": float(np.percentile(times, 99)),
    }


# ---- edged as a separate process ----------------------------------------------------------

def start_edged(work: Path, port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    config = {
        "device_id": "bench",
        "mqtt": {"host": "127.0.0.1", "port": port, "protocol": "5",
                 "receive_maximum": args.receive_maximum},
        "models": {"m": {"path": str(MODELS.get(args.model, Path(args.model))),
                         "workers": args.workers, "postprocess": "classification"}},
        "routes": [{"name": "bench", "subscribe": "bench/+/in", "model": "m",
                    "input": {"format": "raw"}, "publish": "bench/out/{route}",
                    "publish_qos": 0, "deadline_ms": args.deadline_ms,
                    "queue": args.queue, "queue_size": args.queue_size,
                    "reply_margin_ms": args.reply_margin_ms}],
        "logging": {"format": "json", "level": "warning"},
        "stats_interval_s": 0,
        "worker_niceness": args.worker_niceness,
    }
    path = work / "edged.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (work / "edged.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "edged", "run", "--config", str(path)],
                            stdout=log, stderr=log, cwd=REPO)


def renice(niceness: int) -> None:
    """Run this process at ``niceness`` when allowed (a negative one needs root)."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, niceness)


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def proc_rss_mb(pid: int, key: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss(pid: int) -> None:
    # Without it, the peak counts from edged's start.
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


# ---- the load generator -------------------------------------------------------------------
# The sender and the receiver of answers are separate processes, so a busy sender cannot
# delay the reading of answers (which would show up as latency edged did not cause). Both
# stamp wall-clock time on the same machine.

def receive(port: int, topic: str, conn: Connection, niceness: int) -> None:
    """Receiver process: collect answers per phase until told to stop."""
    renice(niceness)
    fastpath.install()  # edged's copy-free PUBLISH decoding: a cheaper instrument
    lock = threading.Lock()

    raw: dict[int, tuple[float, bytes]] = {}

    def on_message(client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Stamp and keep; parse later, so a busy phase does not delay the stamps.
        now = time.time()
        corr = getattr(msg.properties, "CorrelationData", None)
        if corr is not None:
            with lock:
                raw[int(corr)] = (now, bytes(msg.payload))

    def parse(arrived: float, payload: bytes) -> Answer:
        body = json.loads(payload)
        received = datetime.fromisoformat(body["received_at"].replace("Z", "+00:00"))
        reason = body["error"]["reason"] if "error" in body else None
        return Answer(arrived, reason, received.timestamp(), body.get("timings_ms", {}))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-receiver",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.subscribe(topic, qos=0)
    client.loop_start()
    time.sleep(0.3)
    conn.send("ready")
    while (command := conn.recv()) != "stop":
        if command == "take":
            with lock:
                taken = dict(raw)
                raw.clear()
            conn.send({seq: parse(*item) for seq, item in taken.items()})
    client.disconnect()
    client.loop_stop()


@dataclass(frozen=True)
class Answer:
    arrived: float
    reason: str | None
    edged_received: float
    edged_timings_ms: dict[str, float]  # edged's stages, as its answer gave them

    @property
    def edged_total_ms(self) -> float:
        return self.edged_timings_ms.get("total", 0.0)

    @property
    def edged_queue_ms(self) -> float:
        return self.edged_timings_ms.get("queue", 0.0)


@dataclass
class Phase:
    rate: float
    sent_at: dict[int, float] = field(default_factory=dict)
    answers: dict[int, Answer] = field(default_factory=dict)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


class RawPublisher:
    """A minimal MQTT 5 QoS 0 publisher on a plain socket. A load generator must cost far
    less than what it measures: paho spends tens of microseconds of Python per message,
    this writes one pre-built header and the payload with one sendmsg call."""

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # CONNECT: protocol MQTT v5, clean start, keepalive 0 (off), no properties.
        body = _utf8("MQTT") + bytes([5, 0x02]) + (0).to_bytes(2, "big") + b"\x00"
        body += _utf8(client_id)
        self.sock.sendall(b"\x10" + _varint(len(body)) + body)
        connack = self.sock.recv(16)
        if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"broker refused the load generator: {connack!r}")

    def publish(self, topic: str, payload: bytes, response_topic: str, correlation: bytes,
                user: tuple[str, str]) -> None:
        props = (b"\x08" + _utf8(response_topic) + b"\x09" + _utf8(correlation)
                 + b"\x26" + _utf8(user[0]) + _utf8(user[1]))
        head = _utf8(topic) + _varint(len(props)) + props
        header = b"\x30" + _varint(len(head) + len(payload)) + head
        views = [memoryview(header), memoryview(payload)]
        while views:
            sent = self.sock.sendmsg(views)
            while views and sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            if views and sent:
                views[0] = views[0][sent:]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        self.sock.close()


class Loader:
    def __init__(self, port: int, payload: bytes, niceness: int) -> None:
        self.payload = payload
        self.reply_topic = f"bench/replies/{uuid.uuid4().hex[:8]}"
        self._conn, child = Pipe()
        self._receiver = Process(target=receive,
                                 args=(port, self.reply_topic, child, niceness), daemon=True)
        self._receiver.start()
        self._conn.recv()
        self.sender = RawPublisher(port, f"bench-sender-{uuid.uuid4().hex[:6]}")
        self._seq = 0

    @property
    def receiver_pid(self) -> int:
        return self._receiver.pid or 0

    def close(self) -> None:
        self._conn.send("stop")
        self._receiver.join(10)
        self.sender.close()

    def run(self, phase: Phase, seconds: float, deadline_ms: float, poisson: bool,
            on_sent: Callable[[], None] | None = None) -> float:
        """Send open-loop for ``seconds``, then collect the answers; return the send rate.
        ``on_sent`` runs once the last message is sent, before waiting for late answers."""
        rng = np.random.default_rng(1)
        gap = 1.0 / phase.rate
        start = time.monotonic()
        due, next_report, first = start, start + 1.0, self._seq
        while (now := time.monotonic()) - start < seconds:
            if due > now:
                time.sleep(min(due - now, 0.002))
                continue
            sent = time.time()
            phase.sent_at[self._seq] = sent
            self.sender.publish("bench/cam/in", self.payload, self.reply_topic,
                                str(self._seq).encode(),
                                ("deadline", str(int(sent * 1000 + deadline_ms))))
            self._seq += 1
            due += rng.exponential(gap) if poisson else gap
            if now >= next_report:
                next_report += 1.0
                print(f"\r  {phase.rate:8.0f}/s: sent {self._seq - first:7d} "
                      f"t={now - start:3.0f}s", end="", file=sys.stderr)
        achieved = (self._seq - first) / (time.monotonic() - start)
        if on_sent is not None:
            on_sent()
        time.sleep(deadline_ms / 1000 + 1.0)  # let the last answers come in
        self._conn.send("take")
        phase.answers = self._conn.recv()
        print(f"\r  {phase.rate:8.0f}/s: sent {self._seq - first:7d}, answers "
              f"{len(phase.answers)}", file=sys.stderr)
        return achieved


def summarise(phase: Phase, seconds: float, achieved: float, deadline_ms: float,
              capacity: float) -> dict[str, Any]:
    rtts: list[float] = []
    errors: dict[str, int] = {}
    inbound_all: list[float] = []
    splits: list[tuple[float, float, float, float]] = []
    for seq, a in phase.answers.items():
        inbound = (a.edged_received - phase.sent_at[seq]) * 1000
        inbound_all.append(inbound)
        if a.reason is not None:
            errors[a.reason] = errors.get(a.reason, 0) + 1
            continue
        rtts.append((a.arrived - phase.sent_at[seq]) * 1000)
        # Where the time went: sender -> edged, queued in edged, run in edged, edged -> sender.
        splits.append((inbound, a.edged_queue_ms, a.edged_total_ms - a.edged_queue_ms,
                       rtts[-1] - inbound - a.edged_total_ms))
    rtt = np.array(rtts)

    def split(rows: list[tuple[float, float, float, float]]) -> dict[str, float] | None:
        if not rows:
            return None
        keys = ("to_edged", "queued", "in_edged", "back_to_sender")
        return {k: round(float(np.median([r[i] for r in rows])), 2) for i, k in enumerate(keys)}

    sent = len(phase.sent_at)
    on_time = int(np.sum(rtt <= deadline_ms)) if rtt.size else 0
    late = int(rtt.size - on_time)
    pct = {f"p{q}": round(float(np.percentile(rtt, q)), 3) if rtt.size else None
           for q in (50, 90, 99)}
    return {
        "offered_per_s": round(phase.rate, 1),
        "achieved_send_per_s": round(achieved, 1),
        "sent": sent,
        "results": int(rtt.size),
        "on_time": on_time,
        "late": late,
        "rejected": errors,
        "unanswered": sent - int(rtt.size) - sum(errors.values()),
        "goodput_per_s": round(on_time / seconds, 1),
        "attainment": round(on_time / sent, 4) if sent else None,
        "latency_ms": pct,
        "goodput_of_capacity": round(on_time / seconds / capacity, 4),
        # How old frames were when edged read them, over every answer (results and refusals).
        "to_edged_ms": {f"p{q}": round(float(np.percentile(inbound_all, q)), 2)
                        for q in (50, 90, 99)} if inbound_all else None,
        "edged_stage_median_ms": {
            k: round(float(np.median([a.edged_timings_ms[k] for a in phase.answers.values()
                                      if a.reason is None and k in a.edged_timings_ms])), 3)
            for k in ("queue", "preprocess", "invoke", "postprocess", "total")
        } if rtt.size else None,
        # Medians of each part, over all results, the slowest 1 % and the late ones.
        "median_split_ms": split(splits),
        "slowest_1pct_split_ms": split([x for x, t in zip(splits, rtts, strict=True)
                                        if t >= (pct["p99"] or 0.0)]) if rtt.size else None,
        "late_median_split_ms": split([x for x, t in zip(splits, rtts, strict=True)
                                       if t > deadline_ms]),
    }


# ---- main ---------------------------------------------------------------------------------

def print_table(rows: list[dict[str, Any]]) -> None:
    head = (f"{'load':>6} {'offered/s':>10} {'sent/s':>9} {'goodput/s':>10} {'attain':>7} "
            f"{'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'late':>5} {'rejected':>28} "
            f"{'cpu %':>6} {'rss MB':>7} {'of cap':>7}")
    print(head)
    for r in rows:
        lat = r["latency_ms"]
        rejected = ",".join(f"{k}={v}" for k, v in sorted(r["rejected"].items())) or "-"

        def fmt(v: float | None) -> str:
            return f"{v:8.2f}" if v is not None else "       -"

        print(f"{r['load']:>6} {r['offered_per_s']:>10.0f} {r['achieved_send_per_s']:>9.0f} "
              f"{r['goodput_per_s']:>10.1f} {r['attainment'] or 0:>7.3f} {fmt(lat['p50'])} "
              f"{fmt(lat['p90'])} {fmt(lat['p99'])} {r['late']:>5} {rejected:>28} "
              f"{r['edged_cpu_pct']:>6.0f} {r['edged_peak_rss_mb']:>7.1f} "
              f"{r['goodput_of_capacity']:>7.3f}")
    print(f"\n{'load':>6} {'age at edged p50/p90/p99 ms':>28} {'machine cpu %':>14} "
          f"{'broker %':>9} {'sender %':>9} {'receiver %':>11} {'left to edged %':>16} "
          f"{'ceiling/s':>10}")
    for r in rows:
        age = r["to_edged_ms"] or {}
        other = r["other_cpu_pct"]
        ages = "/".join(f"{age.get(k, float('nan')):.1f}" for k in ("p50", "p90", "p99"))
        print(f"{r['load']:>6} {ages:>28} {r['machine_cpu_pct']:>14.0f} "
              f"{other.get('broker', float('nan')):>9.0f} {other.get('sender', 0):>9.0f} "
              f"{other.get('receiver', 0):>11.0f} {r['cpu_left_to_edged_pct']:>16.0f} "
              f"{r['goodput_ceiling_per_s']:>10.0f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mobilenet", help="mobilenet | digits | vibration | PATH")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--deadline-ms", type=float, default=100.0)
    p.add_argument("--loads", type=float, nargs="*", default=[0.5, 1, 2, 4],
                   help="multiples of the raw capacity")
    p.add_argument("--rates", type=float, nargs="*", help="absolute rates instead of --loads")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per load level")
    p.add_argument("--capacity-seconds", type=float, default=5.0)
    p.add_argument("--poisson", action="store_true")
    p.add_argument("--queue", default="edf", choices=["fifo", "latest", "edf"])
    p.add_argument("--queue-size", type=int, default=64)
    p.add_argument("--worker-niceness", type=int, default=5, help="edged's worker_niceness")
    p.add_argument("--reply-margin-ms", type=float, default=1.0,
                   help="route's reply_margin_ms: time kept for the answer's way back")
    p.add_argument("--soak", type=float, default=0.0,
                   help="after the table, run this many seconds at the highest load sampling RSS")
    p.add_argument("--instrument-niceness", type=int, default=0,
                   help="niceness of the sender and the receiver (a negative one needs "
                        "root): on a separate machine they would not compete with edged")
    p.add_argument("--broker", help="HOST:PORT of a broker to use instead of a private one")
    p.add_argument("--receive-maximum", type=int, default=64,
                   help="edged's mqtt.receive_maximum")
    p.add_argument("--broker-config", action="append", default=[], metavar="LINE",
                   help="a line added to the private mosquitto's config, e.g. "
                        "'max_queued_messages 16' (repeatable)")
    p.add_argument("--json-out", type=Path, default=REPO / "bench-results" / "bench.json")
    args = p.parse_args()
    sys.setswitchinterval(0.0005)  # as edged does: the reply thread must not wait 5 ms

    model = MODELS.get(args.model, Path(args.model))
    print(f"measuring raw capacity: {args.workers} interpreter(s) of {model.name} ...",
          file=sys.stderr)
    cap = raw_capacity(model, args.workers, args.capacity_seconds)
    print(f"raw capacity {cap['capacity_per_s']:.0f}/s ({cap['runtime']}); one interpreter: "
          f"invoke p50 {cap['invoke_ms_p50']:.3f} ms, p99 {cap['invoke_ms_p99']:.3f} ms",
          file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as tmp:
        work = Path(tmp)
        broker = None
        if args.broker:
            port = int(args.broker.rpartition(":")[2])
        else:
            broker = Broker(work, extra=args.broker_config)
            broker.start()
            port = broker.port
        edged = start_edged(work, port, args)
        try:
            return run_phases(args, cap, edged, port, model, work,
                              broker.pid if broker is not None else None)
        finally:
            edged.send_signal(signal.SIGTERM)
            try:
                edged.wait(30)
            except subprocess.TimeoutExpired:
                edged.kill()
            if broker is not None:
                broker.stop()


def run_phases(args: argparse.Namespace, cap: dict[str, Any], edged: subprocess.Popen[bytes],
               port: int, model: Path, work: Path, broker_pid: int | None) -> int:
    interp = select_backend().interpreter_class(model_path=str(model))
    detail = interp.get_input_details()[0]
    payload = np.random.default_rng(0).integers(0, 255, detail["shape"]).astype(
        detail["dtype"]).tobytes()
    wait_for_port(port)
    loader = Loader(port, payload, args.instrument_niceness)
    renice(args.instrument_niceness)  # the sender, this process
    time.sleep(3.0)  # edged loads and warms up its model
    if edged.poll() is not None:
        print((work / "edged.log").read_text(), file=sys.stderr)
        return 1
    capacity = cap["capacity_per_s"]
    levels = [(f"{r:.0f}/s", r) for r in args.rates] if args.rates else [
        (f"{x:g}x", x * capacity) for x in args.loads]
    rows = []
    for label, rate in levels:
        others = {"broker": broker_pid, "sender": os.getpid(), "receiver": loader.receiver_pid}
        row = run_level(loader, edged.pid, others, label, rate, args, capacity)
        # What the cores left to edged could run, were edged to spend nothing but invokes:
        # an upper bound on goodput on this machine, whatever edged does.
        left = (os.cpu_count() or 1) * 100 - sum(row["other_cpu_pct"].values())
        row["cpu_left_to_edged_pct"] = round(left, 1)
        row["goodput_ceiling_per_s"] = round(left / 100 / (cap["invoke_ms_p50"] / 1000), 1)
        rows.append(row)
    soak = run_soak(loader, edged.pid, levels[-1][1], args) if args.soak else None
    loader.close()
    print(f"\nmodel {model.name}, {args.workers} workers, deadline {args.deadline_ms:g} ms, "
          f"queue {args.queue}/{args.queue_size}, reply margin {args.reply_margin_ms:g} ms, "
          f"raw capacity {capacity:.0f}/s, "
          f"invoke p50 {cap['invoke_ms_p50']:.3f} ms p99 {cap['invoke_ms_p99']:.3f} ms")
    print_table(rows)
    print("\nwhere the time went (median ms: sender -> edged / queued in edged / running in "
          "edged / edged -> sender)")
    for r in rows:
        for label, key in (("all results", "median_split_ms"),
                           ("slowest 1 %", "slowest_1pct_split_ms"),
                           (f"{r['late']} late", "late_median_split_ms")):
            if r[key]:
                part = r[key]
                print(f"  {r['load']:>6} {label:>12}: {part['to_edged']:.2f} / {part['queued']:.2f}"
                      f" / {part['in_edged']:.2f} / {part['back_to_sender']:.2f}")
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps({
        "model": model.name, "workers": args.workers, "deadline_ms": args.deadline_ms,
        "queue": args.queue, "queue_size": args.queue_size, "poisson": args.poisson,
        "reply_margin_ms": args.reply_margin_ms,
        "raw": cap, "levels": rows, "soak": soak,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }, indent=2))
    print(f"\nJSON written to {args.json_out}")
    return 0


def run_level(loader: Loader, pid: int, others: dict[str, int | None], label: str, rate: float,
              args: argparse.Namespace, capacity: float) -> dict[str, Any]:
    """One load level. Besides edged's own CPU it records what the broker, the sender, the
    receiver and the whole machine used while the load was being sent: on a small box they
    share the cores that the raw capacity was measured on."""
    phase = Phase(rate)
    reset_peak_rss(pid)
    watched = {"edged": pid, **{k: v for k, v in others.items() if v}}
    cpu0 = {k: proc_cpu_s(v) for k, v in watched.items()}
    busy0, t0 = machine_busy_s(), time.monotonic()
    snapshot: dict[str, float] = {}
    achieved = loader.run(phase, args.duration, args.deadline_ms, args.poisson,
                          on_sent=lambda: snapshot.update(
                              {k: proc_cpu_s(v) for k, v in watched.items()},
                              busy=machine_busy_s(), t=time.monotonic()))
    cpu = {k: round((snapshot[k] - cpu0[k]) / (snapshot["t"] - t0) * 100, 1) for k in watched}
    busy = round((snapshot["busy"] - busy0) / (snapshot["t"] - t0) * 100, 1)
    row = summarise(phase, args.duration, achieved, args.deadline_ms, capacity)
    row.update(load=label, edged_cpu_pct=cpu.pop("edged"), edged_peak_rss_mb=proc_rss_mb(pid),
               other_cpu_pct=cpu, machine_cpu_pct=busy)
    return row


def run_soak(loader: Loader, pid: int, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    samples = []
    phase = Phase(rate)
    sampler_stop = threading.Event()

    def sample() -> None:
        while not sampler_stop.wait(10.0):
            samples.append(round(proc_rss_mb(pid, "VmRSS"), 1))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    loader.run(phase, args.soak, args.deadline_ms, args.poisson)
    sampler_stop.set()
    return {"seconds": args.soak, "rate": rate, "rss_mb_every_10s": samples}


if __name__ == "__main__":
    raise SystemExit(main())
