"""The pipelined worker of an accelerator, with the simulated accelerator
(scripts/benchmarks/sim_delegate.c) and the real digits model: the next job is prepared
while the model runs, and no job is lost, stalled or answered twice on the way."""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edged.config import ModelConfig, RouteConfig
from edged.deadline import Deadline
from edged.job import Job, Refused
from edged.pipeline import Pipeline
from edged.responder import Responder
from edged.results import Identity
from edged.routes import Route
from edged.runtime import LoadedModel, load_model, select_backend
from edged.stats import Stats
from edged.types import Inbound, Outbound
from tests.support.daemon import MODELS
from tests.support.fakes import FakeTransport

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "benchmarks"))
from bench_targets import build_sim_delegate  # type: ignore[import-not-found]

FRAME = np.rint(np.load(MODELS / "digits_holdout.npz")["images"][0] * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def accelerated(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    accel = build_sim_delegate(tmp_path_factory.mktemp("sim"), "sim:2")
    config = ModelConfig(path=MODELS / "digits_int8.tflite", labels=MODELS / "digits.labels",
                         workers=1, delegate="external", library=str(accel.library),
                         options=accel.options)
    return load_model("digits", config, select_backend())


def make(model: LoadedModel, **route: object) -> tuple[Pipeline, list[Outbound]]:
    published: list[Outbound] = []
    transport = FakeTransport.into(published)
    stats = Stats()
    stats.add_route("cam", "digits")
    values: dict[str, object] = {"name": "cam", "subscribe": "cam/+", "model": "digits",
                                 "deadline_ms": 1000, "queue_size": 64}
    values.update(route)
    pipeline = Pipeline([Route.bind(RouteConfig(**values), {"digits": model})],  # type: ignore[arg-type]
                        Responder(transport, "box", "edged", stats), transport, stats)
    return pipeline, published


def frame(n: int) -> Inbound:
    return Inbound("cam/1", FRAME.tobytes(), 1, received_wall=time.time(),
                   received_mono=time.monotonic(), response_topic="reply/me",
                   correlation_data=str(n).encode())


def replies(published: list[Outbound]) -> dict[int, dict[str, object]]:
    return {int(m.correlation_data or b"-1"): json.loads(m.payload)
            for m in list(published) if m.topic == "reply/me"}


def wait_for(published: list[Outbound], count: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while len(replies(published)) < count and time.monotonic() < end:
        time.sleep(0.005)


def test_an_accelerator_worker_answers_every_job_without_a_stall(
        accelerated: LoadedModel) -> None:
    """Jobs arrive at random moments around the invoke's 2 ms: some are prepared by the
    finishing thread while the model runs, some taken by the worker itself; none waits for
    the worker's idle poll (0.5 s) or is lost between the two."""
    pipeline, published = make(accelerated)
    pipeline.start()
    try:
        rng = random.Random(7)
        for n in range(120):
            pipeline.submit(frame(n))
            time.sleep(rng.choice((0.0, 0.0005, 0.0015, 0.0025, 0.004)))
        wait_for(published, 120)
        answers = replies(published)
        assert sorted(answers) == list(range(120))
        assert all("result" in a for a in answers.values()), answers
        slowest = max(float(a["timings_ms"]["total"]) for a in answers.values())  # type: ignore[index]
        assert slowest < 300, slowest
        workers = pipeline.models["digits"]
        end = time.monotonic() + 2
        while workers.busy and time.monotonic() < end:
            time.sleep(0.005)
        assert workers.busy == 0
        assert workers.workers[0].session.health.snapshot()["invokes"] == 120
    finally:
        pipeline.stop(2.0)


def test_a_stop_answers_every_job_queued_prepared_or_running(
        accelerated: LoadedModel) -> None:
    pipeline, published = make(accelerated)
    pipeline.start()
    for n in range(40):
        pipeline.submit(frame(n))
    pipeline.stop(0.02)  # less than the backlog needs: the rest is refused for shutdown
    wait_for(published, 40, timeout=2.0)
    answers = replies(published)
    assert sorted(answers) == list(range(40))
    reasons = {str(a["error"]["reason"]) for a in answers.values() if "error" in a}  # type: ignore[index]
    assert reasons <= {"shutdown"}
    assert any("result" in a for a in answers.values())


def test_a_job_prepared_ahead_is_checked_against_when_the_model_is_free(
        accelerated: LoadedModel) -> None:
    pipeline, _ = make(accelerated)
    runner = pipeline.models["digits"].workers[0].runner
    try:
        message = frame(0)
        route = pipeline.routes[0]
        job = Job(route, message, Identity("cam", "digits", "box", "cam/1", message.received_wall),
                  Deadline(message.received_mono + 0.050, 50.0, "route"), "t")
        assert not isinstance(runner.prepare(job), Refused)
        late = runner.prepare(job, expected_start=message.received_mono + 0.2)
        assert isinstance(late, Refused) and late.reason in ("deadline", "expired")
    finally:
        pipeline.models["digits"].discard()


def test_a_job_prepared_ahead_has_a_writeable_input(accelerated: LoadedModel) -> None:
    """A read-only view of the payload would make set_tensor copy it again, on the worker's
    path between two invokes, letting go of the GIL for the copy and waiting to take it
    back: the finishing thread makes the copy instead, while the model runs."""
    pipeline, _ = make(accelerated)
    workers = pipeline.models["digits"]
    try:
        pipeline.submit(frame(0))
        worker = workers.workers[0]
        worker._prepare_next(time.monotonic())
        (prepared,) = worker._ready
        assert prepared.tensor.flags.writeable and prepared.tensor.flags.c_contiguous
        assert workers.busy == 1  # a prepared job counts: a stop waits for it
    finally:
        workers.discard()
