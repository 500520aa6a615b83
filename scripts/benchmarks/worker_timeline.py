#!/usr/bin/env python3
"""In-process measurement of one accelerator worker: how busy edged keeps the accelerator.

No broker and no other process: the real pipeline (admission, scheduler, worker, runner,
session, responder) with MobileNetV2 on the simulated accelerator
(scripts/benchmarks/sim_delegate.c), fed open-loop from a thread that stands in for the MQTT
thread. The delegate records when each invoke started and ended, so the accelerator's idle
gap between two invokes is measured where it happens.

  .venv/bin/python scripts/benchmarks/worker_timeline.py --loads 0.5 1 2 4 --duration 5
  # the MQTT thread's share of the GIL at 2x/4x, roughly: Python work per frame it reads
  .venv/bin/python scripts/benchmarks/worker_timeline.py --loads 2 4 --reader-us 300

For edged run as a process (scripts/benchmarks/bench.py), the delegate writes the same
record when the process exits, and this script summarises it:

  SIM_DELEGATE_TIMELINE=/tmp/sim .venv/bin/python scripts/benchmarks/bench.py --model mobilenet \
      --accelerator sim:4 --workers 1 --loads 4 --duration 8
  .venv/bin/python scripts/benchmarks/worker_timeline.py --read /tmp/sim.PID   # edged's PID

It first runs a bare interpreter loop (what bench.py calls the raw capacity), then edged's
pipeline at each load (a multiple of that capacity): answers on time within --deadline-ms
of submission / capacity, late answers, refusals, and the gaps between invokes.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_targets import build_sim_delegate

from edged.config import ModelConfig, RouteConfig
from edged.pipeline import Pipeline
from edged.responder import Responder
from edged.routes import Route
from edged.runtime import load_model, select_backend
from edged.stats import Stats
from edged.types import Inbound, Outbound

MODEL = Path(__file__).resolve().parents[2] / "models" / "mobilenet_v2_1.0_224_quant.tflite"


class Timeline:
    """The sim delegate's record of invoke (start, end) times, monotonic seconds."""

    def __init__(self, library: Path) -> None:
        self._lib = ctypes.CDLL(str(library))
        self._lib.edged_sim_timeline.restype = ctypes.c_size_t
        self._lib.edged_sim_timeline.argtypes = [ctypes.POINTER(ctypes.c_int64),
                                                 ctypes.c_size_t]

    def since(self, start: float, end: float) -> np.ndarray[Any, Any]:
        buffer = (ctypes.c_int64 * (2 * 65536))()
        n = self._lib.edged_sim_timeline(buffer, 65536)
        pairs: np.ndarray[Any, Any] = np.ctypeslib.as_array(buffer)[:2 * n].reshape(n, 2) / 1e9
        return pairs[(pairs[:, 0] >= start) & (pairs[:, 1] <= end)]


def gaps_summary(pairs: np.ndarray[Any, Any], wall_s: float) -> dict[str, Any]:
    if len(pairs) < 2:
        return {"invokes": len(pairs)}
    gaps = (pairs[1:, 0] - pairs[:-1, 1]) * 1e6
    held = (pairs[:, 1] - pairs[:, 0]) * 1000
    return {
        "invokes": len(pairs), "per_s": round(len(pairs) / wall_s, 1),
        "busy_pct": round(100 * float(held.sum()) / 1000 / wall_s, 1),
        "invoke_ms_p50": round(float(np.percentile(held, 50)), 3),
        "gap_us_p50": round(float(np.percentile(gaps, 50)), 1),
        "gap_us_p90": round(float(np.percentile(gaps, 90)), 1),
        "gap_us_p99": round(float(np.percentile(gaps, 99)), 1),
        "gap_us_mean": round(float(gaps.mean()), 1),
    }


def summarise_file(path: Path) -> dict[str, Any]:
    """A record written at exit (SIM_DELEGATE_TIMELINE): the gaps between invokes that
    followed each other (a queue waiting, under 2 ms apart) and the idle stretches."""
    pairs = np.loadtxt(path, dtype=np.int64, ndmin=2) / 1e9
    if len(pairs) < 2:
        return {"invokes": len(pairs)}
    gaps = (pairs[1:, 0] - pairs[:-1, 1]) * 1e6
    back_to_back = gaps[gaps < 2000]
    return {
        **gaps_summary(pairs, float(pairs[-1, 1] - pairs[0, 0])),
        "back_to_back": len(back_to_back),
        "back_to_back_gap_us_mean": round(float(back_to_back.mean()), 1),
        "back_to_back_gap_us_p50_p90_p99": [round(float(v), 1) for v in
                                            np.percentile(back_to_back, [50, 90, 99])],
    }


def raw(library: Path, ms: float, seconds: float, timeline: Timeline) -> dict[str, Any]:
    """A bare interpreter loop, as bench.py measures capacity: invoke, invoke, ..."""
    backend = select_backend()
    interpreter = backend.interpreter_class(
        model_path=str(MODEL), num_threads=1,
        experimental_delegates=[backend.load_delegate(str(library), {"ms": f"{ms:g}"})])
    interpreter.allocate_tensors()
    for _ in range(5):
        interpreter.invoke()
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        interpreter.invoke()
    end = time.monotonic()
    return gaps_summary(timeline.since(start, end), end - start)


class Collector:
    """A transport that keeps, per correlation number, when its answer came and what it
    was."""

    def __init__(self) -> None:
        self.answers: dict[int, tuple[float, bool]] = {}
        self.refusals: dict[str, int] = {}

    def publish(self, message: Outbound) -> None:
        if message.correlation_data is None:
            return
        now = time.monotonic()
        if b'"error":' in message.payload:
            reason = json.loads(message.payload)["error"]["reason"]
            self.refusals[reason] = self.refusals.get(reason, 0) + 1
        else:
            self.answers[int(message.correlation_data)] = (now, b'"late":true' in message.payload)

    def reply_time(self, margin_ms: float | None) -> float:
        return 0.0005 if margin_ms is None else margin_ms / 1000  # a broker's way back


def run_load(library: Path, ms: float, rate: float, seconds: float, deadline_ms: float,
             reader_us: float, timeline: Timeline) -> dict[str, Any]:
    config = ModelConfig(path=MODEL, workers=1, postprocess="classification",
                         delegate="external", library=str(library), options={"ms": f"{ms:g}"})
    model = load_model("m", config, select_backend())
    collector = Collector()
    stats = Stats()
    stats.add_route("bench", "m")
    route = Route.bind(RouteConfig(name="bench", subscribe="bench/in", model="m",
                                   input={"format": "raw"}), {"m": model})
    pipeline = Pipeline([route], Responder(collector, "box", "edged", stats), collector, stats)
    pipeline.start()
    frame = bytearray(np.random.default_rng(0).integers(0, 255, model.input.shape,
                                                        dtype=np.uint8).tobytes())
    sent: dict[int, float] = {}
    interval = 1.0 / rate
    start = time.monotonic()
    n = 0
    while True:
        due = start + n * interval
        now = time.monotonic()
        if due - start >= seconds:
            break
        if due > now:
            time.sleep(due - now)
        wall, mono = time.time(), time.monotonic()
        payload = bytes(frame)  # a read makes a new bytes object of each frame
        if reader_us:  # the rest of the MQTT thread's Python per frame, with the GIL held
            until = time.perf_counter() + reader_us / 1e6
            while time.perf_counter() < until:
                pass
        sent[n] = mono
        absolute = (("deadline", f"{wall * 1000 + deadline_ms:.3f}"),)
        pipeline.submit(Inbound("bench/in", payload, 0, wall, mono, response_topic="r",
                                correlation_data=str(n).encode(), user_properties=absolute))
        n += 1
    end = time.monotonic()
    pipeline.stop(2.0)
    on_time = late_flagged = late_seen = 0
    rtts = []
    for seq, (at, late) in collector.answers.items():
        rtt = (at - sent[seq]) * 1000
        rtts.append(rtt)
        late_flagged += late
        if rtt <= deadline_ms:
            on_time += 1
        else:
            late_seen += 1
    return {
        "rate": round(rate, 1), "sent": n, "answered": len(collector.answers),
        "on_time_per_s": round(on_time / (end - start), 1),
        "late": late_seen, "late_flagged": late_flagged, "refused": collector.refusals,
        "rtt_ms_p50": round(float(np.percentile(rtts, 50)), 2) if rtts else None,
        "rtt_ms_p99": round(float(np.percentile(rtts, 99)), 2) if rtts else None,
        "accelerator": gaps_summary(timeline.since(start + 0.5, end), end - start - 0.5),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ms", type=float, default=4.0)
    p.add_argument("--loads", type=float, nargs="*", default=[0.5, 1, 2, 4])
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--deadline-ms", type=float, default=100.0)
    p.add_argument("--reader-us", type=float, default=0.0,
                   help="Python work per frame on the submitting thread, GIL held")
    p.add_argument("--switch-interval-ms", type=float,
                   help="sys.setswitchinterval for the run (default: Python's 5 ms)")
    p.add_argument("--read", type=Path, metavar="FILE",
                   help="summarise a record the delegate wrote at exit, then stop")
    args = p.parse_args()
    if args.read is not None:
        print(json.dumps(summarise_file(args.read)))
        return
    # Refusals are logged as warnings, at hundreds a second under overload.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    with tempfile.TemporaryDirectory() as tmp:
        accel = build_sim_delegate(Path(tmp), f"sim:{args.ms:g}")
        timeline = Timeline(accel.library)
        base = raw(accel.library, args.ms, min(args.duration, 3.0), timeline)
        print(json.dumps({"raw": base}), flush=True)
        for load in args.loads:
            result = run_load(accel.library, args.ms, load * base["per_s"], args.duration,
                              args.deadline_ms, args.reader_us, timeline)
            result["load"] = load
            result["on_time_pct_of_raw"] = round(100 * result["on_time_per_s"] / base["per_s"],
                                                 1)
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
