"""The Frigate door when things go wrong: overload on the simulated accelerator, a failing
accelerator, edged restarted and reloaded under running detectors. The real edged, real
models, clients that behave as Frigate's plugin does. Nothing here asserts a speed: only
what follows from the scenario (no client timed out, each recovered after one reset)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edged.config import ModelConfig
from edged.postprocess import registry
from edged.runtime import Session, load_model, select_backend
from tests.support.broker import Broker, free_port
from tests.support.daemon import MODELS, Edged
from tests.support.frigate import (
    IDS,
    IMAGES,
    SHAPES,
    FrigateClient,
    expected_rows,
    frigate_config,
    start,
    stats,
)
from tests.support.probe import Probe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "benchmarks"))
from bench_frigate import drive  # type: ignore[import-not-found]
from bench_targets import build_sim_delegate  # type: ignore[import-not-found]

pytestmark = pytest.mark.integration


@pytest.fixture
def clients() -> Iterator[list[FrigateClient]]:
    made: list[FrigateClient] = []
    yield made
    for c in made:
        c.close()


def cpu_rows(images: np.ndarray) -> list[np.ndarray]:
    """What the SSD model and edged's own decoder give on the CPU, as Frigate's rows."""
    cfg = ModelConfig(path=SHAPES, labels=MODELS / "shapes.labels", postprocess="detection",
                      score_threshold=0.4, max_detections=80)
    model = load_model("ref", cfg, select_backend())
    session = Session(model)
    process = registry.bind_model(cfg, model.outputs, model.labels, model.input).process
    try:
        return [expected_rows(process(session.run(i.reshape(1, 64, 64, 3)))) for i in images]
    finally:
        session.close()


def test_two_detectors_at_twice_the_accelerators_capacity_never_time_out(
        tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]) -> None:
    accel = build_sim_delegate(tmp_path, "sim:4")  # 250 frames/s on one worker
    config = frigate_config(broker.port, tmp_path / "f.sock", request_timeout_ms=200,
                            models=[{"model": "shapes", "labelmap": IDS}])
    config["models"]["shapes"].update(delegate="external", library=str(accel.library),
                                      options=accel.options, workers=1)
    edged = start(tmp_path, config, probe)
    daemons.append(edged)
    got = drive(f"ipc://{tmp_path / 'f.sock'}", clients=2, rate=250.0, seconds=4.0,
                timeout_ms=200)
    assert got["timeouts"] == 0 and got["resets"] == 0 and got["over_timeout"] == 0, got
    counts = stats(probe)["frigate"]["counts"]
    answered = counts.get("results", 0) + sum(v for k, v in counts.items()
                                              if k.startswith("zeros_"))
    assert answered == got["sent"] and counts.get("results", 0) > 0, counts
    assert counts.get("late_dropped", 0) + counts.get("zeros_expired", 0) >= 0


def test_detections_go_on_from_the_cpu_when_the_accelerator_fails(
        tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged],
        delegate_libs: dict[str, Path], clients: list[FrigateClient]) -> None:
    flag = tmp_path / "broken"
    flag.touch()  # the accelerator fails from the start: its warm-up invoke errors
    config = frigate_config(broker.port, tmp_path / "f.sock",
                            models=[{"model": "shapes", "labelmap": IDS}])
    config["models"]["shapes"].update(
        delegate="external", library=str(delegate_libs["failing"]), workers=1,
        retry_min_s=0.2, retry_max_s=0.4, options={"flag": str(flag)})
    edged = start(tmp_path, config, probe)
    daemons.append(edged)
    frigate = FrigateClient(f"ipc://{tmp_path / 'f.sock'}", SHAPES, timeout_ms=5000)
    clients.append(frigate)
    assert frigate.initialize()
    images = IMAGES[:10]
    want = cpu_rows(images)
    for image, rows in zip(images, want, strict=True):
        np.testing.assert_allclose(frigate.detect(image.reshape(1, 64, 64, 3)), rows,
                                   atol=1e-6)
    workers = stats(probe)["models"]["shapes"]["workers"]
    assert [w["backend"] for w in workers] == ["cpu-fallback"]
    flag.unlink()  # the device comes back: the worker adopts it at a later frame
    end = time.monotonic() + 30
    while stats(probe)["models"]["shapes"]["workers"][0]["backend"] == "cpu-fallback":
        assert time.monotonic() < end, edged.log()
        frigate.detect(images[0].reshape(1, 64, 64, 3))
    # Without its flag the test delegate claims no node: the same detections again.
    np.testing.assert_allclose(frigate.detect(images[1].reshape(1, 64, 64, 3)), want[1],
                               atol=1e-6)
    assert frigate.counts.timeouts == 0
    assert "accelerator is back" in edged.log()


def test_detectors_recover_after_one_reset_when_edged_restarts(
        tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]) -> None:
    # A new edged takes longer than the timeout to bind (Python and its imports start
    # in well over 300 ms), so the frame in flight at the restart times out: one reset,
    # then the handshake waits in ZeroMQ until the new edged answers it.
    config = frigate_config(broker.port, tmp_path / "f.sock", request_timeout_ms=300,
                            reply_guard_ms=60)
    first = start(tmp_path, config, probe)
    daemons.append(first)
    endpoint = f"ipc://{tmp_path / 'f.sock'}"
    made = [FrigateClient(endpoint, SHAPES, timeout_ms=300),
            FrigateClient(endpoint, "/config/yolo.tflite", model_type="yologeneric",
                          timeout_ms=300)]
    for c in made:
        assert c.initialize()
    want = IMAGES[0].reshape(1, 64, 64, 3)
    found: list[list[tuple[float, bool]]] = [[], []]
    stop = threading.Event()

    def run(i: int) -> None:
        while not stop.is_set():
            rows = made[i].detect(want)
            found[i].append((time.monotonic(), bool(rows[0, 1] > 0)))
            time.sleep(0.02)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        assert first.stop() == 0, first.log()
        stopped = time.monotonic()
        second = Edged(tmp_path, config)
        daemons.append(second)
        second.start()
        end = time.monotonic() + 60
        while not all(any(ok and t > stopped for t, ok in f) for f in found):
            assert time.monotonic() < end, second.log()
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(40)
    for c in made:
        assert c.counts.resets == 1, (c.counts, c.model_name)
        assert c.counts.ready_after == [True, True]  # the new handshake succeeded
        c.close()
    assert "Frigate detector connected" in second.log()


def test_a_reload_changes_the_served_names(
        tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged],
        clients: list[FrigateClient]) -> None:
    config = frigate_config(broker.port, tmp_path / "f.sock")
    edged = start(tmp_path, config, probe)
    daemons.append(edged)
    endpoint = f"ipc://{tmp_path / 'f.sock'}"
    old = FrigateClient(endpoint, SHAPES, timeout_ms=5000)
    clients.append(old)
    assert old.initialize()
    renamed: dict[str, Any] = dict(config)
    renamed["frigate"] = {**config["frigate"], "models": [
        {"model": "shapes", "name": "ssd.tflite", "labelmap": IDS}]}
    edged.config_path.write_text(yaml.safe_dump(renamed, sort_keys=False))
    assert edged.proc is not None
    edged.proc.send_signal(signal.SIGHUP)
    end = time.monotonic() + 30
    while '"reloaded"' not in edged.log() and "reloaded" not in edged.log():
        assert time.monotonic() < end, edged.log()
        time.sleep(0.1)
    new = FrigateClient(endpoint, "/config/ssd.tflite", timeout_ms=5000)
    clients.append(new)
    assert new.initialize()
    gone = FrigateClient(endpoint, SHAPES, timeout_ms=5000)
    clients.append(gone)
    assert not gone.initialize()
    rows = new.detect(IMAGES[0].reshape(1, 64, 64, 3))
    assert rows[0, 1] > 0
    # The detector connected before the reload asked for a name no longer served: its
    # requests get zeros, not another model's boxes.
    assert not old.detect(IMAGES[0].reshape(1, 64, 64, 3)).any()


def test_a_reload_moves_the_door_to_another_endpoint(
        tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged],
        clients: list[FrigateClient]) -> None:
    config = frigate_config(broker.port, tmp_path / "f.sock")
    edged = start(tmp_path, config, probe)
    daemons.append(edged)
    tcp = f"tcp://127.0.0.1:{free_port()}"
    moved: dict[str, Any] = {**config, "frigate": {**config["frigate"], "endpoints": [tcp]}}
    edged.config_path.write_text(yaml.safe_dump(moved, sort_keys=False))
    assert edged.proc is not None
    edged.proc.send_signal(signal.SIGHUP)
    end = time.monotonic() + 30
    while '"reloaded"' not in edged.log():
        assert time.monotonic() < end, edged.log()
        time.sleep(0.1)
    there = FrigateClient(tcp, SHAPES, timeout_ms=5000)
    clients.append(there)
    assert there.initialize()
    assert there.detect(IMAGES[0].reshape(1, 64, 64, 3))[0, 1] > 0
    gone = FrigateClient(f"ipc://{tmp_path / 'f.sock'}", SHAPES, timeout_ms=5000,
                         handshake_timeout_ms=1000)
    clients.append(gone)
    assert not gone.initialize()  # nothing listens there any more


def test_handshakes_are_answered_as_each_model_is_ready(
        tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged],
        delegate_libs: dict[str, Path], clients: list[FrigateClient]) -> None:
    flag = tmp_path / "present"
    flag.touch()
    config = frigate_config(broker.port, tmp_path / "f.sock", models=[
        {"model": "shapes", "labelmap": IDS},
        {"model": "slow", "name": "slow.tflite", "labelmap": IDS}])
    # Loaded after shapes, and slowly: each invoke of its warm-up holds 2.5 s.
    config["models"]["slow"] = {
        **config["models"]["shapes"], "delegate": "external", "workers": 1,
        "library": str(delegate_libs["failing"]),
        "options": {"flag": str(flag), "action": "slow", "hang_ms": 2500}}
    del config["models"]["yolo"]
    config["routes"] = [r for r in config["routes"] if r["model"] != "yolo"]
    edged = Edged(tmp_path, config)
    daemons.append(edged)
    edged.start()
    endpoint = f"ipc://{tmp_path / 'f.sock'}"
    fast = FrigateClient(endpoint, SHAPES, timeout_ms=5000)
    slow = FrigateClient(endpoint, "/config/slow.tflite", timeout_ms=5000)
    clients += [fast, slow]
    result: dict[str, bool] = {}
    waiting = threading.Thread(target=lambda: result.update(slow=slow.initialize()))
    waiting.start()
    assert fast.initialize()
    # The first model was ready while the second still loaded: edged had not started.
    assert "edged started" not in edged.log(), edged.log()[-2000:]
    waiting.join(40)
    assert result == {"slow": True}, edged.log()[-3000:]
    assert "Frigate asked for a model still loading" in edged.log()
    probe.subscribe("edged/test-box/status")
    edged.wait_online(probe, "edged/test-box/status", timeout=60)
    assert fast.detect(IMAGES[0].reshape(1, 64, 64, 3))[0, 1] > 0


def test_sigterm_finishes_the_frames_in_flight_and_answers_new_ones_with_zeros(
        tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged],
        clients: list[FrigateClient]) -> None:
    accel = build_sim_delegate(tmp_path, "sim:1500")  # each invoke holds 1.5 s
    config = frigate_config(broker.port, tmp_path / "f.sock", request_timeout_ms=8000,
                            models=[{"model": "shapes", "labelmap": IDS}])
    config["models"]["shapes"].update(delegate="external", library=str(accel.library),
                                      options=accel.options, workers=1)
    edged = start(tmp_path, config, probe)
    daemons.append(edged)
    endpoint = f"ipc://{tmp_path / 'f.sock'}"
    first = FrigateClient(endpoint, SHAPES, timeout_ms=8000)
    late = FrigateClient(endpoint, SHAPES, timeout_ms=8000)
    clients += [first, late]
    assert first.initialize() and late.initialize()
    done = threading.Event()

    def ask() -> None:
        first.detect(IMAGES[0].reshape(1, 64, 64, 3))
        done.set()

    waiting = threading.Thread(target=ask)
    waiting.start()
    end = time.monotonic() + 10
    while stats(probe)["frigate"]["pending"] == 0:  # the frame is in edged now
        assert time.monotonic() < end
    assert edged.proc is not None
    edged.proc.send_signal(signal.SIGTERM)
    while '"shutting down"' not in edged.log():
        assert time.monotonic() < end + 10
        time.sleep(0.02)
    # Draining: the frame in flight runs on; a new one gets zeros at once, not a timeout.
    assert not late.detect(IMAGES[1].reshape(1, 64, 64, 3)).any()
    assert late.counts.timeouts == 0
    assert edged.proc.wait(30) == 0
    waiting.join(10)
    assert done.is_set() and first.counts.timeouts == 0
    stopped = [json.loads(line) for line in edged.log().splitlines()
               if '"stopped"' in line and '"succeeded"' in line]
    assert stopped and stopped[-1]["succeeded"] == 1, edged.log()[-2000:]
    assert stopped[-1]["failed"] == 1  # the late one: refused, shutdown
