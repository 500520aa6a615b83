"""What ``isolation: process`` costs: per-message latency of a Session whose interpreter runs
in this thread versus in a child process, on the bundled models.

The accelerator is stood in for by the passthrough test delegate (tests/delegates/, built
here with ``cc``), which leaves every node on the CPU, so the difference between the two
columns is the isolation's own cost: a socket round trip and two copies of the tensors.

    .venv/bin/python scripts/benchmarks/bench_isolation.py [--n 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edged.config import ModelConfig  # noqa: E402
from edged.runtime import Session, load_model, select_backend  # noqa: E402
from tests.support.delegates import build  # noqa: E402

MODELS = ("digits_int8.tflite", "vibration_int8.tflite", "mobilenet_v2_1.0_224_quant.tflite")


def measure(session: Session, tensor: np.ndarray, n: int) -> list[float]:
    for _ in range(min(50, n)):  # warm caches and the child's first pages
        session.run(tensor)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        session.run(tensor)
        times.append((time.perf_counter() - started) * 1e6)
    return times


def row(name: str, thread: list[float], process: list[float], start_ms: float) -> str:
    def q(v: list[float], p: float) -> float:
        return float(np.percentile(v, p))

    extra = statistics.median(process) - statistics.median(thread)
    return (f"{name:<36} {statistics.median(thread):>9.1f} {q(thread, 99):>9.1f} "
            f"{statistics.median(process):>9.1f} {q(process, 99):>9.1f} {extra:>+9.1f} "
            f"{start_ms:>9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="invokes per model and mode")
    args = parser.parse_args()
    backend = select_backend()
    lib = build(Path(tempfile.mkdtemp(prefix="edged-bench-")))["passthrough"]
    print(f"runtime {backend.describe()}, {args.n} invokes each; times in microseconds "
          "(start: ms to start a child and load the model)")
    print(f"{'model':<36} {'thread50':>9} {'thread99':>9} {'proc50':>9} {'proc99':>9} "
          f"{'+median':>9} {'start':>9}")
    for file in MODELS:
        results = {}
        start_ms = 0.0
        for isolation in ("thread", "process"):
            cfg = ModelConfig(path=REPO / "models" / file, postprocess="raw",
                              delegate="external", library=str(lib), isolation=isolation)
            model = load_model(file, cfg, backend)
            started = time.perf_counter()
            session = Session(model)
            if isolation == "process":
                start_ms = (time.perf_counter() - started) * 1000
            tensor = np.zeros(model.input.shape, model.input.dtype)
            n = args.n if model.input.nbytes < 10_000 else max(50, args.n // 10)
            results[isolation] = measure(session, tensor, n)
            session.close()
        print(row(file, results["thread"], results["process"], start_ms))


if __name__ == "__main__":
    main()
