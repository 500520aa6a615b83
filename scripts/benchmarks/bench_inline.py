"""Where an inline message's CPU goes, in-process: edged's real MqttClient, pipeline and
interpreter (openWakeWord's hey_jarvis, run inline), fed PUBLISH bytes through a socket pair
with the broker left out, one message per read or several. It prints edged's CPU per message
(thread time, best and median of 7 rounds) and, with --profile, cProfile's top functions.

What it leaves out is what the daemon pays on top on a real box: the wake-up from poll() and
the cold caches of a thread that slept while the broker and the clients ran
(scripts/benchmarks/bench.py measures the whole process against the seed-style loop).

    .venv/bin/python scripts/benchmarks/bench_inline.py [--messages 35000] [--batch 1 4] [--profile]
        [--count] [--loop]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import bench_targets as targets
import yaml

from edged.config import load_settings
from edged.mqtt import MqttClient, packets
from edged.mqtt.announced import Announced
from edged.mqtt.link import Link
from edged.server import Server, load
from edged.transport import BrokerSide
from edged.types import Inbound

ROUNDS = 7


def serving(work: Path, model: Path | None = None, accel: targets.Accelerator | None = None,
            workers: int = 2, inline: str | None = None) -> tuple[Server, MqttClient]:
    """edged with the bench's route for ``model`` (default: the wake-word model) and its
    defaults, its MQTT client not started."""
    model = model or targets.fetch_wakeword()
    flags = argparse.Namespace(**dict.fromkeys(targets.ROUTE_FLAGS), workers=workers,
                               inline=inline, receive_maximum=None, worker_niceness=None,
                               log_level="error")
    (work / "edged.yaml").write_text(yaml.safe_dump(
        targets.edged_config(1883, "bench/in/+", model, flags, accel)))
    settings = load_settings(work / "edged.yaml")
    made: list[MqttClient] = []

    def make(on_message: Callable[[Inbound], None]) -> BrokerSide:
        made.append(MqttClient(settings.mqtt, "edged-bench", "edged/bench/status", [],
                               on_message))
        return made[0]

    server = Server(settings, load(settings), work / "edged.yaml", make_transport=make)
    return server, made[0]


def counted(serve: Callable[[int, int], None], batch: int, messages: int = 400) -> None:
    """Calls and bytecodes per message (the harness's own lines included: a few per read),
    counted with ``sys.setprofile`` and ``sys.settrace``: the same figures on every run of
    the same code, so a change of a few percent shows, which CPU time here hides."""
    calls: Counter[str] = Counter()
    codes: Counter[str] = Counter()

    def profile(frame: FrameType, event: str, arg: object) -> None:
        calls[event] += 1

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            codes[f"{Path(code.co_filename).name}:{code.co_firstlineno} {code.co_name}"] += 1
        return trace

    sys.setprofile(profile)
    serve(messages, batch)
    sys.setprofile(None)
    sys.settrace(trace)
    serve(messages, batch)
    sys.settrace(None)
    print(f"{batch} message(s) per read, per message: {calls['call'] / messages:.1f} Python "
          f"calls, {calls['c_call'] / messages:.1f} C calls, "
          f"{sum(codes.values()) / messages:.0f} bytecodes; the most bytecodes:")
    for where, n in codes.most_common(25):
        print(f"  {n / messages:7.1f}  {where}")


def looped(client: MqttClient, payload: bytes, messages: int) -> None:
    """The MQTT thread's own loop (``_serve``) on a socket pair, fed one request at a time:
    every message wakes it from ``poll`` as a lone message does at low rates."""
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    deadline = ("deadline", str(int(time.time() * 1000 + 3_600_000)))
    frame = packets.encode_publish("bench/in/a", payload, v5=True, response_topic="bench/r/x",
                                   correlation_data=b"1", user_properties=[deadline])
    ready = threading.Event()

    def serve() -> None:
        link = Link(ours, True, 60, threading.get_ident())
        client._out.detach(closed_by_broker=False)
        client._out.attach(link, Announced("5", False, receive_maximum=64))
        ready.set()
        client._serve(link)

    thread = threading.Thread(target=serve, name="mqtt")
    thread.start()
    ready.wait()
    assert thread.ident is not None
    cpu = time.pthread_getcpuclockid(thread.ident)

    def ping_pong(n: int) -> None:
        for _ in range(n):
            broker.sendall(frame)
            broker.recv(1 << 20)

    ping_pong(2000)
    per_round = messages // ROUNDS
    rounds = []
    for _ in range(ROUNDS):
        start = time.clock_gettime(cpu)
        ping_pong(per_round)
        rounds.append((time.clock_gettime(cpu) - start) / per_round * 1e6)
    client._stop.set()
    broker.sendall(frame)  # wakes it to see the stop
    thread.join(5)
    rounds.sort()
    print(f"the MQTT loop, a wake-up per message: {rounds[0]:.1f} us CPU per message "
          f"(median {rounds[ROUNDS // 2]:.1f}) on edged's MQTT thread")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=35_000)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4],
                   help="messages per read (1: each alone, as at low rates)")
    p.add_argument("--profile", action="store_true", help="cProfile's top 40 by own time")
    p.add_argument("--count", action="store_true",
                   help="deterministic counts per message, unlike CPU time on a shared "
                        "machine: Python calls, C calls and bytecodes, and the functions "
                        "that run the most bytecodes")
    p.add_argument("--loop", action="store_true",
                   help="also run edged's real MQTT loop in its own thread, one message at a "
                        "time (each answer awaited): the wake-up from poll() and the loop's "
                        "own pass included, measured as that thread's CPU")
    args = p.parse_args()
    server, client = serving(Path(tempfile.mkdtemp(prefix="edged-inline-")))
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    link = Link(ours, True, 60, threading.get_ident())
    # as a CONNACK would: the answers go to this link
    client._out.attach(link, Announced("5", False, receive_maximum=64))
    client.connected.set()
    payload = targets.input_payload(targets.fetch_wakeword())
    # Deadlines far off: this measures the path of a message that is served.
    deadline = ("deadline", str(int(time.time() * 1000 + 3_600_000)))
    frames = [packets.encode_publish("bench/in/a", payload, v5=True, response_topic="bench/r/x",
                                     correlation_data=str(i).encode(),
                                     user_properties=[deadline]) for i in range(200)]

    def serve(n: int, batch: int) -> None:
        for i in range(0, n, batch):
            broker.sendall(b"".join(frames[(i + j) % len(frames)] for j in range(batch)))
            client._handle(link, link.read())
            link.flush()
            broker.recv(1 << 20)

    for batch in args.batch:
        serve(2000, batch)  # warm up
        per_round = args.messages // ROUNDS
        rounds = []
        for _ in range(ROUNDS):
            start = time.thread_time()
            serve(per_round, batch)
            rounds.append((time.thread_time() - start) / per_round * 1e6)
        rounds.sort()
        print(f"{batch} message(s) per read: {rounds[0]:.1f} us CPU per message "
              f"(median {rounds[ROUNDS // 2]:.1f}), the socket pair's own calls included")
    if args.count:
        counted(serve, args.batch[0])
    if args.loop:
        looped(client, payload, args.messages)
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(serve, 20_000, args.batch[0])
        pstats.Stats(profile).sort_stats("tottime").print_stats(40)
    totals = server.stats.totals()
    print(f"served {totals['succeeded']} of {totals['received']}")
    return 0 if totals["succeeded"] == totals["received"] else 1


if __name__ == "__main__":
    sys.exit(main())
