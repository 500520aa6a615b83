#!/usr/bin/env python3
"""Benchmark edged over MQTT against the seed-style loop, the way serving systems are measured.

How to run (after scripts/setup.sh; every run starts its own mosquitto on a free loopback
port, with set_tcp_nodelay true as the README tells operators, unless --broker-nagle):

  # tiny real model (openWakeWord hey_jarvis, fetched once into .cache/), edged vs the peer
  .venv/bin/python scripts/benchmarks/bench.py --model hey_jarvis --rates 1000 4000 --peer
  # the highest rate with >= 99 % on time and no late answer, for edged and for the peer;
  # the raw receiver costs a few us an answer where paho's costs tens (and, on a busy
  # 2-core box, drops answers at 8000/s), so at such rates it leaves the cores to the servers
  .venv/bin/python scripts/benchmarks/bench.py --model hey_jarvis --peer --find-max 1000 \
      --receiver raw
  # simulated 4 ms accelerator, 1 worker, 150 KB frames (mobilenet's 224x224x3 uint8)
  .venv/bin/python scripts/benchmarks/bench.py --model mobilenet --accelerator sim:4 --workers 1 \
      --loads 0.5 1 2 4
  # the same through a mosquitto left at its defaults (Nagle's algorithm on)
  .venv/bin/python scripts/benchmarks/bench.py --model mobilenet --accelerator sim:4 --workers 1 \
      --loads 0.5 1 2 --broker-nagle
  # MobileNetV2 on the CPU, 1 worker, at 2x and 4x one interpreter's raw capacity
  .venv/bin/python scripts/benchmarks/bench.py --model mobilenet --workers 1 --loads 2 4 --peer

Figures drift with what else runs on the machine: each row gives the whole machine's CPU
share while it ran (machine %); compare edged and the peer within one run.

What it does:
1. Measures the raw capacity: invokes per second of --workers interpreters in threads, no
   MQTT (with the --accelerator's delegate when given: capacity ~ workers * 1000 / MS).
2. Starts edged (``python -m edged run``) with edged's own defaults for every route and
   service setting that no flag gives, and with --peer also scripts/benchmarks/peer.py (paho's
   on_message -> invoke -> publish on the Response Topic). Each serves its own topic, so the
   one not under test gets no traffic; before each phase the bench waits until both are idle.
3. Drives open-loop load (constant rate, or Poisson with --poisson) at multiples of the raw
   capacity (--loads) or at absolute rates (--rates), edged then the peer at each level:
   MQTT 5 requests with a Response Topic, Correlation Data and an absolute ``deadline``
   user property (send time + --deadline-ms, epoch ms; --relative-deadline sends
   ``deadline_ms`` instead). Round trips are timed at the sender; an answer counts as on
   time when it arrived within --deadline-ms of its sending.
4. Prints a table and writes JSON: on-time goodput, p50/p99 round trip, late answers,
   refusals by reason, the serving process's CPU per request (its /proc/PID/stat CPU
   seconds from the phase's first request until it is idle again, divided by the requests
   sent), its CPU
   share and peak RSS, the broker's, sender's and receiver's CPU, and edged/peer ratios.

--find-max RATE doubles the rate from RATE until a phase fails (< 99 % of those sent on time,
or any late answer), then bisects --find-max-steps times between the last pass and the first
failure, for edged and for the peer separately.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import bench_report as report
from bench_load import Loader, Phase, renice
from bench_targets import (
    REPO,
    Accelerator,
    build_sim_delegate,
    edged_config,
    effective_settings,
    input_payload,
    machine_busy_s,
    model_path,
    proc_cpu_s,
    proc_rss_mb,
    raw_capacity,
    reset_peak_rss,
    start_edged,
    start_peer,
    stop_process,
    wait_quiet,
)

from tests.support.broker import Broker, wait_for_port

TOPICS = {"edged": "bench/edged/in", "peer": "bench/peer/in"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mobilenet",
                   help="hey_jarvis | mobilenet | digits | vibration | PATH to a .tflite")
    p.add_argument("--workers", type=int, default=2, help="edged's interpreters")
    p.add_argument("--accelerator", metavar="sim:MS",
                   help="simulated accelerator: an external delegate whose invoke sleeps MS ms")
    p.add_argument("--peer", action="store_true",
                   help="also measure the seed-style loop (scripts/benchmarks/peer.py) at "
                        "every level")
    p.add_argument("--deadline-ms", type=float, default=100.0)
    p.add_argument("--relative-deadline", action="store_true",
                   help="send the user property deadline_ms (from receipt) instead of the "
                        "absolute deadline (send time + budget, epoch ms)")
    p.add_argument("--loads", type=float, nargs="*", default=[0.5, 1, 2, 4],
                   help="multiples of the raw capacity")
    p.add_argument("--rates", type=float, nargs="*", help="absolute rates instead of --loads")
    p.add_argument("--find-max", type=float, metavar="RATE",
                   help="search the highest rate with >= 99 %% on time and no late answer, "
                        "starting at RATE (instead of --loads/--rates)")
    p.add_argument("--find-max-steps", type=int, default=3, help="bisection steps")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per load level")
    p.add_argument("--capacity-seconds", type=float, default=5.0)
    p.add_argument("--poisson", action="store_true")
    g = p.add_argument_group("edged settings (unset: edged's own default applies)")
    g.add_argument("--queue", choices=["fifo", "latest", "edf"])
    g.add_argument("--queue-size", type=int)
    g.add_argument("--reply-margin-ms", type=float)
    g.add_argument("--publish-qos", type=int, choices=[0, 1, 2],
                   help="QoS of the answer on the route's topic")
    g.add_argument("--route-deadline-ms", type=int, help="the route's deadline_ms")
    g.add_argument("--publish-answered", action="store_const", const=True, default=None,
                   help="also publish answered requests' results on the route's topic")
    g.add_argument("--queue-target-ms", type=float, help="the route's queue_target_ms")
    g.add_argument("--inline", choices=["true", "false"],
                   help="the model's inline setting (unset: edged decides)")
    g.add_argument("--worker-niceness", type=int)
    g.add_argument("--receive-maximum", type=int, help="mqtt.receive_maximum")
    g.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--soak", type=float, default=0.0,
                   help="after the table, run edged this many seconds at the highest load "
                        "sampling RSS")
    p.add_argument("--instrument-niceness", type=int, default=0,
                   help="niceness of the sender and the receiver (a negative one needs "
                        "root): on a separate machine they would not compete with edged")
    p.add_argument("--receiver", choices=["paho", "raw"], default="paho",
                   help="the answers' receiver: plain paho (default), or a raw-socket MQTT 5 "
                        "reader that costs a few us an answer instead of tens, leaving more "
                        "of the two cores to the servers at high rates")
    p.add_argument("--broker", help="HOST:PORT of a broker to use instead of a private one")
    p.add_argument("--broker-nagle", action="store_true",
                   help="private mosquitto at its default set_tcp_nodelay false (Nagle on)")
    p.add_argument("--broker-config", action="append", default=[], metavar="LINE",
                   help="a line added to the private mosquitto's config, e.g. "
                        "'max_queued_messages 16' (repeatable)")
    p.add_argument("--json-out", type=Path, default=REPO / "bench-results" / "bench.json")
    return p.parse_args()


class Bench:
    """One run: the instruments, the serving processes and the CPU readings around them."""

    def __init__(self, args: argparse.Namespace, loader: Loader, capacity: float,
                 invoke_ms: float, servers: dict[str, int], broker_pid: int | None) -> None:
        self.args = args
        self.invoke_ms = invoke_ms
        self.loader = loader
        self.capacity = capacity
        self.servers = servers
        self.broker_pid = broker_pid

    def level(self, server: str, label: str, rate: float) -> dict[str, Any]:
        """One phase at ``rate`` against ``server``. Besides the server's own CPU it records
        what the broker, the sender, the receiver, the idle server and the whole machine
        used while the load was sent: on a small box they share the cores."""
        for pid in self.servers.values():
            wait_quiet(pid)
        pid = self.servers[server]
        # What the server spends with no request at all (timers, keep-alives, stats): part of
        # its CPU per request, the more so the lower the rate.
        idle0 = proc_cpu_s(pid)
        time.sleep(1.0)
        idle_pct = round((proc_cpu_s(pid) - idle0) * 100, 1)
        others = {"broker": self.broker_pid, "sender": os.getpid(),
                  "receiver": self.loader.receiver_pid,
                  "idle_server": next((p for s, p in self.servers.items() if s != server),
                                      None)}
        watched = {"server": pid, **{k: v for k, v in others.items() if v}}
        phase = Phase(rate, TOPICS[server])
        reset_peak_rss(pid)
        cpu0 = {k: proc_cpu_s(v) for k, v in watched.items()}
        busy0, t0 = machine_busy_s(), time.monotonic()
        snap: dict[str, float] = {}
        achieved = self.loader.run(
            phase, self.args.duration, self.args.deadline_ms, self.args.poisson,
            on_sent=lambda: snap.update({k: proc_cpu_s(v) for k, v in watched.items()},
                                        busy=machine_busy_s(), t=time.monotonic()))
        wait_quiet(pid)  # a server still working off a backlog is still serving them
        drained_cpu = proc_cpu_s(pid) - cpu0["server"]
        cpu = {k: round((snap[k] - cpu0[k]) / (snap["t"] - t0) * 100, 1) for k in watched}
        row = report.summarise(phase, self.args.duration, achieved, self.args.deadline_ms,
                               self.capacity)
        left = (os.cpu_count() or 1) * 100 - sum(v for k, v in cpu.items() if k != "server")
        row.update(
            load=label, server=server, server_cpu_pct=cpu.pop("server"),
            # From the first request until the server is idle again, a backlog worked off
            # after the deadline included: all the work the requests caused.
            cpu_us_per_request=round(drained_cpu / max(row["sent"], 1) * 1e6, 1),
            server_idle_cpu_pct=idle_pct, server_peak_rss_mb=proc_rss_mb(pid),
            other_cpu_pct=cpu,
            machine_cpu_pct=round((snap["busy"] - busy0) / (snap["t"] - t0) * 100, 1),
            cpu_left_to_server_pct=round(left, 1),
            # What the cores left to the server could run were it to spend nothing but
            # invokes: an upper bound on goodput on this machine, whatever it does.
            goodput_ceiling_per_s=round(left / 100 / (self.invoke_ms / 1000), 1))
        return row

    def find_max(self, server: str, start: float, steps: int) -> dict[str, Any]:
        probes: list[dict[str, Any]] = []

        def probe(rate: float) -> bool:
            row = self.level(server, f"{rate:.0f}/s", rate)
            probes.append(row)
            # A sender that cannot keep up says nothing of the server: count it a failure.
            return report.passes(row) and row["achieved_send_per_s"] >= 0.97 * rate

        best, fail, rate = None, None, start
        while fail is None and rate <= 256 * start:
            if probe(rate):
                best, rate = rate, rate * 2
            else:
                fail = rate
        while best is None and rate >= start / 16:
            rate /= 2
            if probe(rate):
                best = rate
            else:
                fail = rate
        for _ in range(steps if best is not None and fail is not None else 0):
            assert best is not None and fail is not None
            mid = (best + fail) / 2
            if probe(mid):
                best = mid
            else:
                fail = mid
        return {"server": server, "max_rate_per_s": best, "first_failing_per_s": fail,
                "probes": probes}


def run(args: argparse.Namespace, work: Path) -> int:
    model = model_path(args.model)
    accel: Accelerator | None = (build_sim_delegate(work, args.accelerator)
                                 if args.accelerator else None)
    print(f"measuring raw capacity: {args.workers} interpreter(s) of {model.name}"
          f"{' with ' + args.accelerator if accel else ''} ...", file=sys.stderr)
    cap = raw_capacity(model, args.workers, args.capacity_seconds, accel)
    print(f"raw capacity {cap['capacity_per_s']:.0f}/s ({cap['runtime']}); one interpreter: "
          f"invoke p50 {cap['invoke_ms_p50']:.3f} ms, p99 {cap['invoke_ms_p99']:.3f} ms",
          file=sys.stderr)
    broker = None
    if args.broker:
        port = int(args.broker.rpartition(":")[2])
    else:
        extra = [*args.broker_config, *(["set_tcp_nodelay false"] if args.broker_nagle else [])]
        broker = Broker(work, extra=extra)
        broker.start()
        port = broker.port
    config = edged_config(port, TOPICS["edged"], model, args, accel)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["edged"] = start_edged(work, config)
        settings = effective_settings(work / "edged.yaml")
        if args.peer:
            procs["peer"] = start_peer(work, port, TOPICS["peer"], model, accel)
        wait_for_port(port)
        loader = Loader(port, input_payload(model), args.instrument_niceness,
                        absolute=not args.relative_deadline,
                        raw_receiver=args.receiver == "raw")
        renice(args.instrument_niceness)  # the sender, this process
        for name, proc in procs.items():
            if not loader.wait_ready(TOPICS[name]) or proc.poll() is not None:
                print((work / "edged.log").read_text()[-4000:], file=sys.stderr)
                raise SystemExit(f"{name} does not answer")
        bench = Bench(args, loader, cap["capacity_per_s"], cap["invoke_ms_p50"],
                      {k: p.pid for k, p in procs.items()},
                      broker.pid if broker is not None else None)
        result = measure(bench, args, cap)
        loader.close()
    finally:
        for proc in procs.values():
            stop_process(proc)
        if broker is not None:
            broker.stop()
    result.update(model=model.name, model_path=str(model), edged_settings=settings,
                  broker=broker_settings(broker, args), raw=cap,
                  edged_log=log_summary(work / "edged.log"))
    write_out(args, result)
    return 0


def measure(bench: Bench, args: argparse.Namespace, cap: dict[str, Any]) -> dict[str, Any]:
    servers = list(bench.servers)
    if args.find_max:
        searches = [bench.find_max(s, args.find_max, args.find_max_steps) for s in servers]
        return {"find_max": searches, "levels": [r for s in searches for r in s["probes"]]}
    capacity = cap["capacity_per_s"]
    levels = [(f"{r:.0f}/s", r) for r in args.rates] if args.rates else [
        (f"{x:g}x", x * capacity) for x in args.loads]
    rows: list[dict[str, Any]] = []
    for label, rate in levels:
        pair = {s: bench.level(s, label, rate) for s in servers}
        if "peer" in pair:
            pair["peer"]["edged_over_peer"] = report.ratios(pair["edged"], pair["peer"])
        rows += pair.values()
    soak = run_soak(bench, levels[-1][1], args) if args.soak else None
    return {"levels": rows, "soak": soak}


def broker_settings(broker: Broker | None, args: argparse.Namespace) -> dict[str, Any]:
    if broker is None:
        return {"external": args.broker}
    lines = broker.conf.read_text().splitlines()
    nodelay = [line.split()[1] for line in lines if line.startswith("set_tcp_nodelay")]
    return {"set_tcp_nodelay": nodelay[-1] if nodelay else "false (default)",
            "config": lines}


def log_summary(path: Path) -> dict[str, Any]:
    """edged's log lines by level and event, and the accelerator's lines as they are (a
    simulated accelerator that did not load would leave edged on its CPU fallback)."""
    counts: dict[str, int] = {}
    accelerator: list[str] = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            key = f"{entry.get('level', '?')}: {entry.get('event', '?')}"
            counts[key] = counts.get(key, 0) + 1
        if "accelerator" in line or "delegate" in line:
            accelerator.append(line[:300])
    return {"events": counts, "accelerator_lines": accelerator[:10]}


def run_soak(bench: Bench, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    pid = bench.servers["edged"]
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(10.0):
            samples.append(round(proc_rss_mb(pid, "VmRSS"), 1))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    bench.loader.run(Phase(rate, "bench/edged/in"), args.soak, args.deadline_ms, args.poisson)
    stop.set()
    return {"seconds": args.soak, "rate": rate, "rss_mb_every_10s": samples}


def write_out(args: argparse.Namespace, result: dict[str, Any]) -> None:
    cap, s, b = result["raw"], result["edged_settings"], result["broker"]
    deadline = "relative (deadline_ms)" if args.relative_deadline else "absolute (deadline)"
    print(f"\nmodel {result['model']}, {args.workers} worker(s), {cap['runtime']}"
          f"{', accelerator ' + cap['accelerator'] if cap['accelerator'] else ''}; raw "
          f"capacity {cap['capacity_per_s']:.0f}/s, invoke p50 {cap['invoke_ms_p50']:.3f} ms "
          f"p99 {cap['invoke_ms_p99']:.3f} ms")
    print(f"deadline {args.deadline_ms:g} ms from sending, {deadline}; broker "
          f"set_tcp_nodelay {b.get('set_tcp_nodelay', '?')}; {args.duration:g} s per phase; "
          f"{args.receiver} receiver")
    given = {f for f in ("queue", "queue_size", "reply_margin_ms", "publish_qos",
                         "route_deadline_ms", "publish_answered", "queue_target_ms", "inline",
                         "worker_niceness", "receive_maximum", "log_level")
             if getattr(args, f) is not None}
    print("edged settings (* = set by a flag, else edged's default): " + ", ".join(
        f"{k}={v}{'*' if k in given else ''}" for k, v in s.items()))
    print()
    report.print_rows(result["levels"])
    report.print_machine(result["levels"])
    report.print_splits([r for r in result["levels"] if r["server"] == "edged"])
    for search in result.get("find_max") or []:
        print(f"\nfind-max {search['server']}: highest passing rate "
              f"{search['max_rate_per_s'] or 0:.0f}/s, first failing "
              f"{search['first_failing_per_s'] or 0:.0f}/s")
    print_notes(result)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    result.update(
        deadline_ms=args.deadline_ms, deadline_kind=deadline, poisson=args.poisson,
        receiver=args.receiver,
        duration_s=args.duration, flags_given=sorted(given), argv=sys.argv[1:],
        machine={"cpus": os.cpu_count(), "python": sys.version.split()[0],
                 "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3]})
    args.json_out.write_text(json.dumps(result, indent=2))
    print(f"\nJSON written to {args.json_out}")


def print_notes(result: dict[str, Any]) -> None:
    """What may make a row say less about the server than it seems to."""
    cap = result["raw"]
    behind = [f"{r['load']} {r['server']} ({r['achieved_send_per_s']:.0f} of "
              f"{r['offered_per_s']:.0f}/s)" for r in result["levels"]
              if r["achieved_send_per_s"] < 0.97 * r["offered_per_s"]]
    if behind:
        print("\nthe sender fell behind the offered rate (the machine, not the server): "
              + ", ".join(behind))
    if cap["accelerator"]:
        invokes = [(r["server_stage_median_ms"] or {}).get("invoke") for r in result["levels"]
                   if r["server"] == "edged"]
        sim_ms = float(cap["accelerator"].partition(":")[2])
        print(f"\nedged's median invoke per level (ms): {invokes}; the simulated accelerator "
              f"holds each for {sim_ms:g} ms")
        if any(v is not None and v < 0.8 * sim_ms for v in invokes):
            print("WARNING: edged's invokes are shorter than the accelerator's: it is not "
                  "using it (see its log)")
    events = result["edged_log"]["events"]
    print("\nedged's log: " + (", ".join(f"{k} x{v}" for k, v in sorted(events.items()))
                              or "nothing"))
    for line in result["edged_log"]["accelerator_lines"]:
        print(f"edged log: {line[:200]}")


def main() -> int:
    args = parse_args()
    sys.setswitchinterval(0.0005)  # as edged does: the reply thread must not wait 5 ms
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    raise SystemExit(main())
