"""Instructions per message, the same whatever else the machine runs: edged's real MQTT
client, pipeline and interpreter in-process (as scripts/benchmarks/bench_inline.py runs them),
fed MQTT 5 requests through a socket pair with the broker left out, under valgrind's
callgrind. Every instruction the process executes is counted, in every thread; the
difference between a run of N1 and one of N2 messages, divided by N2 - N1, leaves out
start-up (imports, model loading, warm-up), which both runs share.

Two cases:
  inline       openWakeWord's hey_jarvis (6 KB float32 frames) run on the MQTT thread
               (the harness calls the client's message handler, as bench_inline does)
  accelerator  MobileNetV2 1.0 224 uint8 (150 KB frames) on one worker thread, on the
               simulated accelerator of scripts/benchmarks/sim_delegate.c with 0 ms per invoke (its
               kernel claims the whole graph and writes zeros: the host's side of an
               accelerated frame without the accelerator's own time), edged's real MQTT
               loop in its own thread, one frame at a time, each answer awaited

What the counts leave out: the broker, the kernel's side of the system calls, and an
accelerator driver's own CPU work (libedgetpu's USB transfers). Under valgrind the CPU
reports no AVX-512, so XNNPACK runs its AVX2 kernels (the tiny model's invoke is a small
part of the inline count).

    .venv/bin/python scripts/benchmarks/bench_instructions.py [--case inline accelerator]
        [--messages 200 1200] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import bench_inline
import bench_targets as targets

from edged.mqtt import MqttClient, packets
from edged.mqtt.announced import Announced
from edged.mqtt.link import Link
from edged.server import Server

SCRIPT = Path(__file__).resolve()
WARM_UP = 50
MOBILENET = targets.REPO / "models" / "mobilenet_v2_1.0_224_quant.tflite"


def serving(work: Path, model: Path, accel: targets.Accelerator | None,
            inline: bool) -> tuple[Server, MqttClient]:
    """edged with one route for ``model`` and its defaults, its MQTT client not started."""
    return bench_inline.serving(work, model, accel, workers=1,
                                inline="true" if inline else "false")


def request(payload: bytes, i: int) -> bytes:
    deadline = ("deadline", str(int(time.time() * 1000 + 3_600_000)))  # far off: served
    return packets.encode_publish("bench/in/a", payload, v5=True, response_topic="bench/r/x",
                                  correlation_data=str(i).encode(), user_properties=[deadline])


def run_inline(messages: int) -> int:
    server, client = serving(Path(tempfile.mkdtemp(prefix="edged-instr-")),
                             targets.fetch_wakeword(), None, inline=True)
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    link = Link(ours, True, 60, threading.get_ident())
    client._out.attach(link, Announced("5", False, receive_maximum=64))  # as a CONNACK would
    client.connected.set()
    payload = targets.input_payload(targets.fetch_wakeword())
    frames = [request(payload, i) for i in range(200)]
    for i in range(WARM_UP + messages):
        broker.sendall(frames[i % len(frames)])
        client._handle(link, link.read())
        link.flush()
        broker.recv(1 << 20)
    return int(server.stats.totals()["succeeded"])


def run_accelerator(messages: int) -> int:
    work = Path(tempfile.mkdtemp(prefix="edged-instr-"))
    accel = targets.build_sim_delegate(work, "sim:0")
    server, client = serving(work, MOBILENET, accel, inline=False)
    server.pipeline.start()
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    ready = threading.Event()

    def serve() -> None:
        link = Link(ours, True, 60, threading.get_ident())
        client._out.detach(closed_by_broker=False)
        client._out.attach(link, Announced("5", False, receive_maximum=64))
        client.connected.set()
        ready.set()
        client._serve(link)

    thread = threading.Thread(target=serve, name="mqtt")
    thread.start()
    ready.wait()
    payload = targets.input_payload(MOBILENET)
    for i in range(WARM_UP + messages):
        broker.sendall(request(payload, i))
        answer = broker.recv(1 << 20)
        while b"bench/r/x" not in answer:  # the answer, whole enough to know it came
            answer += broker.recv(1 << 20)
    client._stop.set()
    broker.sendall(request(payload, 0))  # wakes the loop to see the stop
    thread.join(10)
    server.pipeline.stop(5.0)
    return int(server.stats.totals()["succeeded"])


def counted(case: str, messages: int, out: Path) -> int:
    """Instructions executed by a whole run of ``case`` with ``messages`` messages."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    done = subprocess.run(
        [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
         str(SCRIPT), "--inner", case, str(messages)],
        capture_output=True, text=True, check=False)
    found = re.findall(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"{case} x {messages} under callgrind failed:\n{done.stderr[-3000:]}"
                         f"\n{done.stdout[-2000:]}")
    served = re.findall(r"served (\d+)", done.stdout)
    if not served or int(served[-1]) < WARM_UP + messages:
        raise SystemExit(f"{case} x {messages}: not every message was served:\n{done.stdout}")
    return int(found[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", nargs="+", choices=["inline", "accelerator"],
                   default=["inline", "accelerator"])
    p.add_argument("--messages", type=int, nargs=2, default=[200, 1200],
                   metavar=("N1", "N2"), help="the two runs' message counts (after a "
                   f"warm-up of {WARM_UP})")
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--inner", nargs=2, metavar=("CASE", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inner:
        case, n = args.inner[0], int(args.inner[1])
        served = (run_inline if case == "inline" else run_accelerator)(n)
        print(f"served {served}")
        return 0
    n1, n2 = args.messages
    results = {}
    with tempfile.TemporaryDirectory(prefix="edged-callgrind-") as tmp:
        for case in args.case:
            started = time.monotonic()
            low = counted(case, n1, Path(tmp) / f"{case}-{n1}.out")
            high = counted(case, n2, Path(tmp) / f"{case}-{n2}.out")
            per = (high - low) / (n2 - n1)
            results[case] = {"messages": [n1, n2], "instructions": [low, high],
                             "per_message": round(per)}
            print(f"{case}: {per:,.0f} instructions per message ({low:,} for {n1}, "
                  f"{high:,} for {n2}; {time.monotonic() - started:.0f} s under callgrind)")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
