#!/usr/bin/env python3
"""Wake words on many microphones at once: what edged costs per audio-second and how soon
a detection is answered.

Starts a private mosquitto and edged serving openWakeWord's pipeline (melspectrogram ->
embedding -> hey_jarvis, the models scripts/setup.sh unzips from the openwakeword wheel),
then plays N microphones in real time: every stream publishes 80 ms chunks of 16 kHz int16
(1280 samples) on its own topic, a clip with two "hey jarvis" (espeak-ng) among speech,
tones, noise and silence, streams staggered across the 80 ms. For every detection event it
takes the time from publishing the chunk that completed the detecting step (known from
openWakeWord's own pipeline run on the clip beforehand) to the event's arrival, and it reads
the CPU time edged, the broker and this process used from /proc.

    .venv/bin/python scripts/benchmarks/bench_listen.py --streams 1 8 16 32 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support.audio import (  # noqa: E402
    CHUNK,
    RATE,
    noise,
    reference_scores,
    silence,
    speak,
    tone,
    wakeword_models,
    wakeword_route,
)
from tests.support.broker import Broker  # noqa: E402
from tests.support.daemon import Edged  # noqa: E402
from tests.support.probe import Probe  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process (and its finished children)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / CLK


def clip() -> tuple[np.ndarray, list[int]]:
    """About 10 s of sound, a whole number of 80 ms steps, and the steps at which
    openWakeWord's own pipeline first scores each "hey jarvis" at 0.5 or more."""
    audio = np.concatenate([
        noise(0.4, seed=1), silence(2.0), speak("hey jarvis"), silence(1.0), tone(440, 0.6),
        speak("good morning"), noise(0.8, seed=2),
        speak("hey jarvis", voice="en-gb", words_per_minute=150), silence(1.6),
    ])
    audio = audio[:len(audio) // CHUNK * CHUNK]
    scores = reference_scores(np.concatenate([audio, audio]))  # the clip loops
    steps = len(audio) // CHUNK
    second = scores[steps:]  # the loop's second pass: openWakeWord's buffers are all audio
    hits = [k for k in range(1, steps) if second[k] >= 0.5 > second[k - 1]]
    return audio, hits


class Player(threading.Thread):
    """Publishes every stream's next chunk when its time comes (real time)."""

    def __init__(self, probe: Probe, streams: int, audio: np.ndarray, seconds: float) -> None:
        super().__init__(daemon=True)
        self.probe, self.streams, self.audio = probe, streams, audio
        self.chunks = len(audio) // CHUNK
        self.total = int(seconds * RATE / CHUNK)
        self.sent_at: list[list[float]] = [[] for _ in range(streams)]
        self.late_s = 0.0

    def run(self) -> None:
        step = CHUNK / RATE
        began = time.monotonic() + 0.2
        payloads = [self.audio[i * CHUNK:(i + 1) * CHUNK].astype("<i2").tobytes()
                    for i in range(self.chunks)]
        for n in range(self.total):
            for s in range(self.streams):
                due = began + n * step + s * step / self.streams
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                else:
                    self.late_s = max(self.late_s, -wait)
                self.probe.publish(f"mics/m{s}/audio", payloads[n % self.chunks], qos=0)
                self.sent_at[s].append(time.time())


def run(streams: int, seconds: float, audio: np.ndarray, hits: list[int], workers: int,
        workdir: Path, niceness: int) -> dict[str, Any]:
    broker = Broker(workdir)
    broker.start()
    edged = None
    probe = Probe(broker.port)
    try:
        # 2.5 s of windows may wait: a dropped window restarts its stream (2 s deaf), while
        # one run late only has its own result suppressed.
        route = wakeword_route(deadline_ms=200, queue_size=32 * streams)
        config = {
            "device_id": "bench", "stats_interval_s": 0, "shutdown_timeout_s": 5,
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "protocol": "5",
                     "topic_prefix": "edged", "session_expiry_s": 0},
            "models": wakeword_models(workers=workers, refractory_ms=1000),
            "routes": [route], "logging": {"format": "json", "level": "warning"},
            "worker_niceness": niceness,
        }
        probe.subscribe("edged/bench/status", "edged/bench/wake/+", "edged/bench/errors")
        edged = Edged(workdir, config)
        edged.start()
        edged.wait_online(probe, "edged/bench/status")
        cpu0 = (cpu_s(edged.proc.pid if edged.proc else None), cpu_s(broker.pid),
                time.process_time())
        player = Player(probe, streams, audio, seconds)
        player.start()
        player.join()
        time.sleep(0.5)
        cpu1 = (cpu_s(edged.proc.pid if edged.proc else None), cpu_s(broker.pid),
                time.process_time())
        got = probe.collect(100_000, 0.5)
    finally:
        if edged is not None:
            edged.stop()
        probe.close()
        broker.stop()
    return summarise(streams, player, got, hits, cpu0, cpu1)


def summarise(streams: int, player: Player, got: list[Any], hits: list[int],
              cpu0: tuple[float, ...], cpu1: tuple[float, ...]) -> dict[str, Any]:
    expected = [n for n in range(player.total) if n % player.chunks in hits]
    latencies, missing, extra = [], 0, 0
    events: dict[int, list[float]] = {}
    errors = [m.json()["error"]["reason"] for m in got if m.topic.endswith("/errors")]
    for m in got:
        if "/wake/" in m.topic:
            events.setdefault(int(m.topic.rsplit("/m", 1)[1]), []).append(m.arrived_wall)
    for s in range(streams):
        matched: set[int] = set()
        for at in events.get(s, []):
            # The detecting chunk sent last before the event arrived (it cannot come first).
            sent = [n for n in expected if n < len(player.sent_at[s])
                    and player.sent_at[s][n] <= at]
            if not sent or sent[-1] in matched:
                extra += 1
                continue
            matched.add(sent[-1])
            latencies.append((at - player.sent_at[s][sent[-1]]) * 1000)
        missing += len(expected) - len(matched)
    audio_s = streams * player.total * CHUNK / RATE
    lat = sorted(latencies)

    def pct(q: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))], 1) if lat else None

    return {
        "streams": streams, "audio_s": round(audio_s, 1),
        "events": len(latencies), "missed": missing, "extra": extra,
        "errors": {r: errors.count(r) for r in sorted(set(errors))},
        "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
                       "max": round(lat[-1], 1) if lat else None,
                       "mean": round(statistics.fmean(lat), 1) if lat else None},
        "edged_cpu_ms_per_audio_s": round((cpu1[0] - cpu0[0]) * 1000 / audio_s, 2),
        "edged_cpu_share_of_2_cores": round((cpu1[0] - cpu0[0]) / (2 * player.total * CHUNK
                                                                    / RATE), 3),
        "broker_cpu_ms_per_audio_s": round((cpu1[1] - cpu0[1]) * 1000 / audio_s, 2),
        "player_cpu_ms_per_audio_s": round((cpu1[2] - cpu0[2]) * 1000 / audio_s, 2),
        "player_late_ms": round(player.late_s * 1000, 1),
    }


def floor_ms_per_audio_s(steps: int = 400) -> dict[str, float]:
    """The three models alone, one interpreter each on this thread, no MQTT and no edged:
    the inference a stream costs per second of audio (12.5 steps)."""
    from edged.runtime import select_backend

    models = wakeword_models()
    interp_class = select_backend().interpreter_class
    out = {}
    for name in ("melspectrogram", "speech_embedding", "hey_jarvis"):
        interp = interp_class(model_path=models[name]["path"], num_threads=1)
        shape = models[name].get("input_shape")
        if shape:
            interp.resize_tensor_input(0, shape, strict=True)
        interp.allocate_tensors()
        detail = interp.get_input_details()[0]
        x = np.random.default_rng(0).random(detail["shape"]).astype(np.float32)
        interp.set_tensor(detail["index"], x)
        interp.invoke()
        began = time.perf_counter()
        for _ in range(steps):
            interp.set_tensor(detail["index"], x)
            interp.invoke()
        out[name] = round((time.perf_counter() - began) / steps * 1000 * RATE / CHUNK, 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8, 16, 24, 32])
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per stream")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--niceness", type=int, default=5, help="edged's worker_niceness")
    args = parser.parse_args()
    audio, hits = clip()
    print(f"clip {len(audio) / RATE:.2f} s, detections at steps {hits} (openWakeWord)")
    floor = floor_ms_per_audio_s()
    print(f"inference alone, ms of CPU per audio-second: {floor} "
          f"(sum {sum(floor.values()):.1f}); load average {os.getloadavg()[0]:.2f}")
    for n in args.streams:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(n, args.seconds, audio, hits, args.workers, Path(tmp), args.niceness)
        result["load_average_1m"] = round(os.getloadavg()[0], 2)
        result["worker_niceness"] = args.niceness
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
