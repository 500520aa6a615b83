"""The in-process instrument for accelerator workers (scripts/benchmarks/worker_timeline.py): the
simulated accelerator records when each invoke held it, on the clock edged uses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edged.runtime import select_backend
from tests.support.daemon import MODELS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "benchmarks"))
from bench_targets import build_sim_delegate  # type: ignore[import-not-found]
from worker_timeline import Timeline, gaps_summary  # type: ignore[import-not-found]


def test_the_sim_delegate_records_each_invoke_on_the_monotonic_clock(tmp_path: Path) -> None:
    accel = build_sim_delegate(tmp_path, "sim:10")
    backend = select_backend()
    interp = backend.interpreter_class(
        model_path=str(MODELS / "digits_int8.tflite"),
        experimental_delegates=[backend.load_delegate(str(accel.library), accel.options)])
    interp.allocate_tensors()
    start = time.monotonic()
    for _ in range(4):
        interp.invoke()
        time.sleep(0.005)
    end = time.monotonic()
    pairs = Timeline(accel.library).since(start, end)
    assert len(pairs) == 4
    held = pairs[:, 1] - pairs[:, 0]
    assert np.all(held >= 0.010) and np.all(held < 0.050)
    summary = gaps_summary(pairs, end - start)
    assert summary["invokes"] == 4
    assert 5000 <= summary["gap_us_p50"] < 40_000  # the sleeps between the invokes


def test_the_sim_delegate_writes_its_record_at_exit_when_asked(tmp_path: Path) -> None:
    """For a daemon measured from outside (scripts/benchmarks/bench.py runs edged as a process)."""
    accel = build_sim_delegate(tmp_path, "sim:1")
    script = (
        "import sys; from edged.runtime import select_backend; b = select_backend(); "
        "i = b.interpreter_class(model_path=sys.argv[1], experimental_delegates="
        "[b.load_delegate(sys.argv[2], {'ms': '1'})]); i.allocate_tensors(); "
        "i.invoke(); i.invoke()")
    env = {**os.environ, "SIM_DELEGATE_TIMELINE": str(tmp_path / "timeline")}
    proc = subprocess.run([sys.executable, "-c", script, str(MODELS / "digits_int8.tflite"),
                           str(accel.library)], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (written,) = tmp_path.glob("timeline.*")
    pairs = [tuple(int(v) for v in line.split()) for line in written.read_text().splitlines()]
    assert len(pairs) == 2 and all(end - start >= 1_000_000 for start, end in pairs)
