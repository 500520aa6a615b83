"""What the bench measures: the models, the simulated accelerator, the raw capacity, and the
two serving processes (edged and the seed-style peer), each a separate process."""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent  # scripts/benchmarks: peer.py, sim_delegate.c
CACHE = REPO / ".cache"
MODELS = {
    "mobilenet": REPO / "models" / "mobilenet_v2_1.0_224_quant.tflite",
    "digits": REPO / "models" / "digits_int8.tflite",
    "vibration": REPO / "models" / "vibration_int8.tflite",
}
# openWakeWord's "hey jarvis" classifier: 15-40 us per invoke, float32[1, 16, 96] (6 KB).
# 0.5.1 is the last wheel that ships its .tflite models (0.6 downloads them at run time).
WAKEWORD = ("openwakeword==0.5.1", "openwakeword/resources/models/hey_jarvis_v0.1.tflite")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- models and the simulated accelerator ---------------------------------------------------

def model_path(name: str) -> Path:
    """A bundled model by name, hey_jarvis from the cache (fetched once), or a path."""
    if name == "hey_jarvis":
        return fetch_wakeword()
    return MODELS.get(name, Path(name))


def fetch_wakeword() -> Path:
    """The hey_jarvis .tflite out of the openwakeword wheel on PyPI, kept in .cache/."""
    target = CACHE / "models" / Path(WAKEWORD[1]).name
    if target.exists():
        return target
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("openwakeword-0.5.1-*.whl"))
    if not found:
        print(f"fetching {WAKEWORD[0]} from PyPI into {wheels} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                        "-d", str(wheels), WAKEWORD[0]], check=True)
        found = sorted(wheels.glob("openwakeword-0.5.1-*.whl"))
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(found[0]) as wheel:
        partial = target.with_suffix(".part")
        partial.write_bytes(wheel.read(WAKEWORD[1]))
        partial.rename(target)
    return target


@dataclass(frozen=True)
class Accelerator:
    """The simulated accelerator: a delegate library and its options."""

    library: Path
    invoke_ms: float

    @property
    def options(self) -> dict[str, str]:
        return {"ms": f"{self.invoke_ms:g}"}


def build_sim_delegate(out: Path, spec: str) -> Accelerator:
    """``sim:MS``: compile scripts/benchmarks/sim_delegate.c into ``out``."""
    kind, _, ms = spec.partition(":")
    if kind != "sim" or not ms:
        raise SystemExit(f"--accelerator {spec!r}: use sim:MS, e.g. sim:4")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("no C compiler (cc): apt-get install gcc")
    lib = out / "libedged_bench_sim.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror",
                    "-I", str(REPO / "tests" / "delegates"), "-o", str(lib),
                    str(SCRIPTS / "sim_delegate.c")], check=True)
    return Accelerator(lib, float(ms))


def input_payload(model: Path) -> bytes:
    """One random frame in the model's input layout, as raw bytes."""
    from edged.runtime import select_backend

    interp = select_backend().interpreter_class(model_path=str(model))
    detail = interp.get_input_details()[0]
    rng = np.random.default_rng(0)
    if np.issubdtype(detail["dtype"], np.floating):
        return bytes(rng.standard_normal(detail["shape"]).astype(detail["dtype"]).tobytes())
    return bytes(rng.integers(0, 255, detail["shape"]).astype(detail["dtype"]).tobytes())


# ---- raw capacity -----------------------------------------------------------------------------

def raw_capacity(model: Path, workers: int, seconds: float,
                 accel: Accelerator | None) -> dict[str, Any]:
    """Invokes per second of ``workers`` interpreters in threads (with the accelerator's
    delegate when given), plus one thread's invoke-time percentiles (measured alone first)."""
    from edged.runtime import select_backend

    backend = select_backend()

    def make() -> Any:
        delegates = ([backend.load_delegate(str(accel.library), accel.options)]
                     if accel else None)
        interpreter = backend.interpreter_class(model_path=str(model), num_threads=1,
                                                experimental_delegates=delegates)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
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
        "accelerator": f"sim:{accel.invoke_ms:g}" if accel else None,
        "capacity_per_s": sum(counts) / elapsed,
        "invoke_ms_p50": float(np.percentile(times, 50)),
        "invoke_ms_p99": float(np.percentile(times, 99)),
    }


# ---- /proc readings -----------------------------------------------------------------------------

def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc/PID/stat."""
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
    # Without it, the peak counts from the process's start.
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def wait_quiet(pid: int, timeout: float = 30.0, below: float = 0.05) -> float:
    """Wait until the process uses under ``below`` of a core over 0.3 s (it has worked off
    any backlog of the last phase); return the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = proc_cpu_s(pid)
        time.sleep(0.3)
        if proc_cpu_s(pid) - before < below * 0.3:
            break
    return time.monotonic() - start


# ---- the serving processes ----------------------------------------------------------------------

ROUTE_FLAGS = ("queue", "queue_size", "reply_margin_ms", "publish_qos", "route_deadline_ms",
               "publish_answered", "queue_target_ms")


def edged_config(port: int, topic: str, model: Path, args: argparse.Namespace,
                 accel: Accelerator | None) -> dict[str, Any]:
    """edged's config for the run: a route and a model; every setting a flag does not give
    is left out, so edged's own defaults apply."""
    route: dict[str, Any] = {"name": "bench", "subscribe": topic, "model": "m",
                             "input": {"format": "raw"}}
    for flag in ROUTE_FLAGS:
        value = getattr(args, flag)
        if value is not None:
            route["deadline_ms" if flag == "route_deadline_ms" else flag] = value
    model_cfg: dict[str, Any] = {"path": str(model), "workers": args.workers,
                                 "postprocess": "classification"}
    if accel is not None:
        model_cfg.update(delegate="external", library=str(accel.library),
                         options=accel.options)
    if args.inline is not None:
        model_cfg["inline"] = args.inline == "true"
    mqtt: dict[str, Any] = {"host": "127.0.0.1", "port": port, "protocol": "5"}
    if args.receive_maximum is not None:
        mqtt["receive_maximum"] = args.receive_maximum
    config: dict[str, Any] = {"device_id": "bench", "mqtt": mqtt, "models": {"m": model_cfg},
                              "routes": [route]}
    if args.worker_niceness is not None:
        config["worker_niceness"] = args.worker_niceness
    if args.log_level is not None:
        config["logging"] = {"level": args.log_level}
    return config


def effective_settings(path: Path) -> dict[str, Any]:
    """The settings edged will run with, defaults included, read by edged's own loader."""
    from edged.config import load_settings

    settings = load_settings(path)
    route = settings.routes[0]
    model = settings.models[route.model]
    return {
        "queue": route.queue, "queue_size": route.queue_size,
        "reply_margin_ms": route.reply_margin_ms, "route_deadline_ms": route.deadline_ms,
        "publish": route.publish, "publish_qos": route.publish_qos,
        "publish_answered": route.publish_answered, "queue_target_ms": route.queue_target_ms,
        "inline": model.inline,
        "on_late": route.on_late, "worker_niceness": settings.worker_niceness,
        "receive_maximum": settings.mqtt.receive_maximum, "workers": model.workers,
        "delegate": model.delegate, "stats_interval_s": settings.stats_interval_s,
        "log_level": settings.logging.level,
    }


def start_edged(work: Path, config: dict[str, Any]) -> subprocess.Popen[bytes]:
    path = work / "edged.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGED_")}
    with (work / "edged.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "edged", "run", "--config", str(path)],
                                stdout=log, stderr=log, cwd=REPO, env=env)


def start_peer(work: Path, port: int, topic: str, model: Path,
               accel: Accelerator | None) -> subprocess.Popen[bytes]:
    """scripts/benchmarks/peer.py, returned once it has subscribed."""
    cmd = [sys.executable, str(SCRIPTS / "peer.py"), "--port", str(port), "--model",
           str(model), "--topic", topic]
    if accel is not None:
        cmd += ["--delegate", str(accel.library),
                *[f"--option={k}={v}" for k, v in accel.options.items()]]
    with (work / "peer.log").open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60.0)
    if not ready or proc.stdout.readline().strip() != b"ready":
        stop_process(proc)
        raise SystemExit(f"the peer did not start: see {work / 'peer.log'}")
    return proc


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
