#!/usr/bin/env python3
"""Frigate's zmq detectors against edged's Frigate door: every reply within the request
timeout, the share of frames answered with a result (and with boxes), edged's CPU per
request.

How to run (after scripts/setup.sh; it starts its own mosquitto on a free loopback port,
since edged always keeps its MQTT connection, and edged with a Frigate door on an ipc
socket in a temporary folder):

  # the simulated 4 ms accelerator (scripts/benchmarks/sim_delegate.c), 1 worker, two detectors
  # offering 2x its capacity (250/s each), Frigate's default 200 ms timeout
  .venv/bin/python scripts/benchmarks/bench_frigate.py --accelerator sim:4 --clients 2 --load 2
  # the bundled SSD detector on the CPU (real boxes), the same two detectors
  .venv/bin/python scripts/benchmarks/bench_frigate.py --clients 2 --load 2

Each client behaves as Frigate's plugin does (tests/support/frigate.py): a REQ socket with
send and receive timeouts, one request in flight, a reset and a new handshake after a
timeout. It sends the held-out shapes scenes at --load x capacity / --clients frames a
second, or as fast as the replies come when that is slower (Frigate takes its next frame).
The simulated accelerator writes zeros to the outputs, so its frames carry no boxes: there
"with boxes" is 0 by construction and "result" counts real answers of the model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts" / "benchmarks"))
from bench_targets import Accelerator, build_sim_delegate  # noqa: E402

from tests.support.broker import Broker  # noqa: E402
from tests.support.daemon import MODELS, Edged  # noqa: E402
from tests.support.frigate import FrigateClient  # noqa: E402

SHAPES = MODELS / "shapes_detect_int8.tflite"
IDS = {"circle": 0, "square": 2, "triangle": 16}


def edged_config(port: int, sock: Path, accel: Accelerator | None, timeout_ms: int,
                 workers: int, guard_ms: float | None = None) -> dict[str, Any]:
    model: dict[str, Any] = {"path": str(SHAPES), "labels": str(MODELS / "shapes.labels"),
                             "postprocess": "detection", "workers": workers}
    if accel is not None:
        model.update(delegate="external", library=str(accel.library), options=accel.options)
    return {
        "device_id": "bench-box",
        "mqtt": {"host": "127.0.0.1", "port": port, "protocol": "5", "topic_prefix": "edged",
                 "session_expiry_s": 0},
        "models": {"shapes": model},
        "frigate": {"endpoints": [f"ipc://{sock}"], "request_timeout_ms": timeout_ms,
                    "models": [{"model": "shapes", "labelmap": IDS}],
                    **({"reply_guard_ms": guard_ms} if guard_ms is not None else {})},
        "logging": {"format": "json", "level": "info"},
        "stats_interval_s": 0,
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(endpoint: str, clients: int, rate: float, seconds: float,
          timeout_ms: int) -> dict[str, Any]:
    """``clients`` Frigate-like detectors, each offering ``rate`` frames a second for
    ``seconds``: what they got back."""
    images = np.load(MODELS / "shapes_holdout.npz")["images"]
    made = [FrigateClient(endpoint, SHAPES, timeout_ms=timeout_ms) for _ in range(clients)]
    for c in made:
        if not c.initialize():
            raise SystemExit(f"handshake refused: {c.last_reply}")
    results: list[dict[str, Any]] = [{} for _ in made]

    def run(index: int, client: FrigateClient) -> None:
        latencies, sent, with_boxes = [], 0, 0
        start = time.monotonic()
        end = start + seconds
        while True:
            due = start + sent / rate
            now = time.monotonic()
            if due >= end or now >= end:
                break
            if due > now:
                time.sleep(due - now)
            tensor = images[(index * 7919 + sent) % len(images)].reshape(1, 64, 64, 3)
            t0 = time.monotonic()
            rows = client.detect(tensor)
            latencies.append((time.monotonic() - t0) * 1000)
            sent += 1
            # A result without boxes is all zeros too: edged's counts tell them apart.
            with_boxes += int(rows[0, 1] >= 0.4)
        results[index] = {"sent": sent, "latencies_ms": latencies, "with_boxes": with_boxes,
                          "timeouts": client.counts.timeouts, "resets": client.counts.resets}

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(made)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ended = time.monotonic()
    for c in made:
        c.close()
    latencies = [v for r in results for v in r["latencies_ms"]]
    return {
        "clients": clients, "offered_per_s": rate * clients, "seconds": seconds,
        "sent": sum(r["sent"] for r in results),
        "achieved_per_s": sum(r["sent"] for r in results) / (ended - began),
        "with_boxes": sum(r["with_boxes"] for r in results),
        "timeouts": sum(r["timeouts"] for r in results),
        "resets": sum(r["resets"] for r in results),
        "max_ms": max(latencies) if latencies else None,
        "p50_ms": float(np.percentile(latencies, 50)) if latencies else None,
        "p99_ms": float(np.percentile(latencies, 99)) if latencies else None,
        "over_timeout": sum(1 for v in latencies if v > timeout_ms),
    }


def stats_of(edged: Edged, probe_port: int) -> dict[str, Any]:
    from tests.support.probe import Probe

    probe = Probe(probe_port)
    try:
        probe.subscribe("edged/bench-box/stats")
        for _ in range(20):
            probe.publish("edged/bench-box/stats/request", b"")
            try:
                body: dict[str, Any] = probe.next(1.0, topic="edged/bench-box/stats").json()
                return body
            except TimeoutError:
                continue
    finally:
        probe.close()
    raise SystemExit("no stats from edged")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accelerator", help="sim:MS, the simulated accelerator (default: CPU)")
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--load", type=float, default=2.0, help="offered load / capacity")
    p.add_argument("--capacity", type=float, help="frames/s one worker serves (default: "
                   "1000/MS with --accelerator, else measured from the model's invoke)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--timeout-ms", type=int, default=200)
    p.add_argument("--guard-ms", type=float, help="frigate.reply_guard_ms (default: edged's)")
    p.add_argument("--json-out", type=Path, default=REPO / "docs/bench/frigate.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-frigate-") as tmp:
        work = Path(tmp)
        accel = build_sim_delegate(work, args.accelerator) if args.accelerator else None
        capacity = args.capacity or (1000.0 / accel.invoke_ms * args.workers if accel
                                     else None)
        broker = Broker(work)
        broker.start()
        sock = work / "frigate.sock"
        edged = Edged(work, edged_config(broker.port, sock, accel, args.timeout_ms,
                                         args.workers, args.guard_ms))
        try:
            edged.start()
            end = time.monotonic() + 60
            while "edged started" not in edged.log():  # serving, not only handshaking
                if time.monotonic() > end or (edged.proc and edged.proc.poll() is not None):
                    raise SystemExit(edged.log()[-3000:])
                time.sleep(0.2)
            if capacity is None:
                body = stats_of(edged, broker.port)
                invoke_ms = body["models"]["shapes"]["service_time_ms"]
                capacity = 1000.0 / max(invoke_ms, 0.05) * args.workers
            assert edged.proc is not None
            endpoint = f"ipc://{sock}"
            cpu0 = cpu_seconds(edged.proc.pid)
            got = drive(endpoint, args.clients, args.load * capacity / args.clients,
                        args.seconds, args.timeout_ms)
            cpu = cpu_seconds(edged.proc.pid) - cpu0
            after = stats_of(edged, broker.port)
            door = after["frigate"]["counts"]
            backends = sorted({w["backend"] for w in after["models"]["shapes"]["workers"]})
        finally:
            edged.stop()
            broker.stop()
    got.update(capacity_per_s=capacity, load=args.load, timeout_ms=args.timeout_ms,
               reply_guard_ms=args.guard_ms,
               accelerator=args.accelerator or "cpu", workers=args.workers,
               edged_cpu_ms_per_request=cpu * 1000 / max(got["sent"], 1),
               door_counts=door, backends=backends,
               result_share=door.get("results", 0) / max(got["sent"], 1),
               boxes_share=got["with_boxes"] / max(got["sent"], 1))
    print(f"{got['accelerator']}, {args.workers} worker(s), capacity {capacity:.0f}/s, "
          f"{args.clients} detectors offering {got['offered_per_s']:.0f}/s "
          f"({args.load:g}x) for {args.seconds:g} s, timeout {args.timeout_ms} ms")
    print(f"  workers' backends: {', '.join(backends)}")
    print(f"  sent {got['sent']} ({got['achieved_per_s']:.0f}/s); client timeouts "
          f"{got['timeouts']}, replies over the timeout {got['over_timeout']}; round trip "
          f"p50 {got['p50_ms']:.2f} ms, p99 {got['p99_ms']:.2f} ms, max {got['max_ms']:.1f} ms")
    print(f"  answered with a result {got['result_share']:.1%}, with boxes "
          f"{got['boxes_share']:.1%}; zeros by reason "
          f"{ {k: v for k, v in door.items() if k.startswith('zeros_')} }")
    print(f"  edged CPU {got['edged_cpu_ms_per_request']:.3f} ms per request")
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(got | {"argv": sys.argv[1:]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
