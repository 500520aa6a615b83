"""Admission, pickup and late-result handling, driven with a fake clock and the real
digits model (no broker: what would be published is collected in a list)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from edged.config import ModelConfig, RouteConfig
from edged.job import Job
from edged.pipeline import Pipeline
from edged.responder import Responder
from edged.routes import Route
from edged.runtime import LoadedModel, load_model, select_backend
from edged.stats import Stats
from edged.types import Inbound, Outbound
from tests.support.daemon import MODELS
from tests.support.fakes import FakeTransport


class FakeClock:
    def __init__(self, start: float = 1000.0, step: float = 0.0) -> None:
        self.now, self.step = start, step

    def __call__(self) -> float:
        value = self.now
        self.now += self.step
        return value


@pytest.fixture(scope="module")
def digits() -> LoadedModel:
    """The digits model on a worker thread (it would run inline by itself: see
    ``test_a_model_of_microseconds_runs_inline_with_the_same_checks``)."""
    config = ModelConfig(path=MODELS / "digits_int8.tflite", labels=MODELS / "digits.labels",
                         workers=1, inline=False)
    return load_model("digits", config, select_backend())


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport(way_back_s=0.001)


@pytest.fixture
def published(transport: FakeTransport) -> list[Outbound]:
    return transport.published


def make(digits: LoadedModel, published: list[Outbound], clock: FakeClock,
         transport: FakeTransport | None = None, **route: Any) -> tuple[Pipeline, Stats]:
    values: dict[str, Any] = {"name": "cam", "subscribe": "cam/+", "model": "digits",
                              "deadline_ms": 100, "queue_target_ms": 100}
    values.update(route)
    stats = Stats()
    stats.add_route("cam", "digits")
    if transport is None:
        transport = FakeTransport(way_back_s=0.001)
        transport.published = published
    responder = Responder(transport, "box", "edged", stats)
    pipeline = Pipeline([Route.bind(RouteConfig(**values), {"digits": digits})], responder,
                        transport, stats, clock)
    return pipeline, stats


def run(pipeline: Pipeline, job: Job, model: str = "digits") -> None:
    """What the model's worker thread does with ``job``."""
    workers = pipeline.models[model]
    workers.sink(workers.workers[0].runner.run(job))


def frame(clock: FakeClock, topic: str = "cam/1", **kw: Any) -> Inbound:
    image = np.load(MODELS / "digits_holdout.npz")["images"][0]
    payload = np.rint(image * 255).astype(np.uint8).tobytes()
    return Inbound(topic, payload, 1, received_wall=1.7e9, received_mono=clock.now,
                   response_topic="reply/me", correlation_data=b"c1", **kw)


def bodies(published: list[Outbound], topic: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in published if m.topic == topic]


def queued(pipeline: Pipeline, model: str = "digits") -> Iterator[Job]:
    return iter(pipeline.models[model].scheduler.drain())


def test_a_message_that_expired_before_arrival_is_refused(digits: LoadedModel,
                                                          published: list[Outbound]) -> None:
    clock = FakeClock()
    pipeline, stats = make(digits, published, clock)
    message = frame(clock, user_properties=(("deadline", str(1.7e9 * 1000 - 5)),))
    pipeline.submit(message)
    (reply,) = bodies(published, "reply/me")
    assert reply["error"]["reason"] == "expired"
    assert len(pipeline.models["digits"].scheduler) == 0
    assert stats.snapshot()["routes"]["cam"]["failed"] == {"expired": 1}


def test_admission_refuses_what_cannot_finish_in_time(digits: LoadedModel,
                                                      published: list[Outbound]) -> None:
    clock = FakeClock()
    pipeline, _ = make(digits, published, clock)
    estimate = pipeline.models["digits"].estimate
    for _ in range(20):
        estimate.add(0.030)  # 30 ms a message
    for _ in range(2):  # 2 x 30 ms queued + 30 ms of its own fit in 100 ms ...
        pipeline.submit(frame(clock))
    assert bodies(published, "reply/me") == []
    pipeline.submit(frame(clock))  # ... a third would end at 90 ms + 1 ms margin: fits
    pipeline.submit(frame(clock))  # a fourth at 120 ms does not
    (reply,) = bodies(published, "reply/me")
    assert reply["error"]["reason"] == "deadline"
    assert "3 queued ahead" in reply["error"]["message"]
    assert len(pipeline.models["digits"].scheduler) == 3


def test_a_worker_does_not_start_expired_work(digits: LoadedModel,
                                              published: list[Outbound]) -> None:
    clock = FakeClock()
    pipeline, _ = make(digits, published, clock)
    pipeline.submit(frame(clock))
    (job,) = queued(pipeline)
    worker = pipeline.models["digits"].workers[0]
    clock.now += 0.150  # the frame waited 150 ms for a worker
    run(pipeline, job)
    (reply,) = bodies(published, "reply/me")
    assert reply["error"]["reason"] == "expired"
    assert reply["timings_ms"]["queue"] == pytest.approx(150.0)
    assert worker.session.snapshot()["invokes"] == 0


def test_a_worker_does_not_start_what_the_estimate_says_would_be_late(
    digits: LoadedModel, published: list[Outbound]
) -> None:
    clock = FakeClock()
    pipeline, _ = make(digits, published, clock)
    pipeline.submit(frame(clock))
    (job,) = queued(pipeline)
    for _ in range(20):
        pipeline.models["digits"].estimate.add(0.040)
    clock.now += 0.070  # 70 ms in, a 40 ms run would end at 110 ms
    run(pipeline, job)
    (reply,) = bodies(published, "reply/me")
    assert reply["error"]["reason"] == "deadline"
    assert "not run" in reply["error"]["message"]


@pytest.mark.parametrize("on_late", ["drop", "publish"])
def test_a_late_result_is_suppressed_or_flagged(digits: LoadedModel, published: list[Outbound],
                                                on_late: str) -> None:
    clock = FakeClock()
    pipeline, stats = make(digits, published, clock, on_late=on_late)
    pipeline.submit(frame(clock))
    (job,) = queued(pipeline)
    clock.step = 0.040  # every clock reading in the worker is 40 ms after the last
    run(pipeline, job)
    results = bodies(published, "edged/box/predictions/cam")
    (reply,) = bodies(published, "reply/me")
    routes = stats.snapshot()["routes"]["cam"]
    if on_late == "drop":
        assert results == []
        assert reply["error"]["reason"] == "deadline"
        assert routes["failed"] == {"deadline": 1}
    else:
        assert results == []  # the requester alone asked for it
        assert reply["late"] is True
        assert "label" in reply["result"]
        assert routes["late"] == 1 and routes["succeeded"] == 0


@pytest.mark.parametrize("publish_answered", [False, True])
def test_an_on_time_result_goes_to_the_requester_and_if_asked_to_the_route(
    digits: LoadedModel, published: list[Outbound], publish_answered: bool
) -> None:
    clock = FakeClock()
    pipeline, stats = make(digits, published, clock, publish_answered=publish_answered)
    pipeline.submit(frame(clock))
    (job,) = queued(pipeline)
    run(pipeline, job)
    reply_msg = next(m for m in published if m.topic == "reply/me")
    assert reply_msg.correlation_data == b"c1"
    (reply,) = bodies(published, "reply/me")
    assert "late" not in reply
    labels = np.load(MODELS / "digits_holdout.npz")["labels"]
    assert reply["result"]["label"] == str(labels[0])
    on_route = bodies(published, "edged/box/predictions/cam")
    assert on_route == ([reply] if publish_answered else [])
    assert stats.snapshot()["routes"]["cam"]["succeeded"] == 1


def test_a_result_without_a_response_topic_goes_to_the_route(
    digits: LoadedModel, published: list[Outbound]
) -> None:
    clock = FakeClock()
    pipeline, _ = make(digits, published, clock)
    pipeline.submit(Inbound("cam/1", frame(clock).payload, 0, 1.7e9, clock.now))
    run(pipeline, next(queued(pipeline)))
    (result,) = bodies(published, "edged/box/predictions/cam")
    assert "label" in result["result"]


def test_a_model_of_microseconds_runs_inline_with_the_same_checks(
    published: list[Outbound]
) -> None:
    inline = load_model("digits", ModelConfig(path=MODELS / "digits_int8.tflite",
                                              labels=MODELS / "digits.labels"), select_backend())
    assert inline.typical_ms < 0.3 and inline.inline
    clock = FakeClock()
    pipeline, stats = make(inline, published, clock)
    assert pipeline.models["digits"].workers == []  # no thread to hand over to
    pipeline.submit(frame(clock))  # answered before submit returns
    (reply,) = bodies(published, "reply/me")
    labels = np.load(MODELS / "digits_holdout.npz")["labels"]
    assert reply["result"]["label"] == str(labels[0])
    expired = frame(clock, user_properties=(("deadline", str(1.7e9 * 1000 - 5)),))
    pipeline.submit(expired)
    assert bodies(published, "reply/me")[1]["error"]["reason"] == "expired"
    assert stats.snapshot()["routes"]["cam"]["succeeded"] == 1


def test_a_standing_queue_is_refused_but_a_burst_is_let_in(
    digits: LoadedModel, published: list[Outbound]
) -> None:
    clock = FakeClock()
    pipeline, _ = make(digits, published, clock, deadline_ms=1000, queue_target_ms=None)
    for _ in range(20):
        pipeline.models["digits"].estimate.add(0.100)
    for _ in range(8):  # a burst: 7 x 100 ms of waiting, over the 500 ms target, but in time
        pipeline.submit(frame(clock))
    assert bodies(published, "reply/me") == []
    clock.now += 1.0  # still over the target a whole deadline later: a standing queue
    pipeline.submit(frame(clock))
    (reply,) = bodies(published, "reply/me")
    assert reply["error"]["reason"] == "queue_full"
    assert "8 queued ahead would wait" in reply["error"]["message"]


def test_the_measured_way_back_is_kept_in_hand(digits: LoadedModel,
                                                transport: FakeTransport) -> None:
    clock = FakeClock()
    transport.way_back_s = 0.045  # a broker that delays small messages (Nagle)
    pipeline, _ = make(digits, transport.published, clock, transport)
    for _ in range(20):
        pipeline.models["digits"].estimate.add(0.030)
    pipeline.submit(frame(clock))  # 30 ms + 45 ms fit in 100 ms
    pipeline.submit(frame(clock))  # 60 ms + 45 ms do not
    (reply,) = bodies(transport.published, "reply/me")
    assert reply["error"]["reason"] == "deadline"
    fixed, _ = make(digits, transport.published, clock, transport, reply_margin_ms=1)
    for _ in range(20):
        fixed.models["digits"].estimate.add(0.030)
    fixed.submit(frame(clock))
    fixed.submit(frame(clock))  # a set margin replaces the measured one
    assert len(bodies(transport.published, "reply/me")) == 1


def test_a_full_fifo_queue_drops_the_oldest_and_says_so(digits: LoadedModel,
                                                        published: list[Outbound]) -> None:
    clock = FakeClock()
    pipeline, stats = make(digits, published, clock, queue_size=2, deadline_ms=10_000)
    payload = frame(clock).payload
    for i in range(3):
        pipeline.submit(Inbound("cam/1", payload, 1, 1.7e9, clock.now, "reply/me",
                                str(i).encode()))
    replies = [m for m in published if m.topic == "reply/me"]
    assert [m.correlation_data for m in replies] == [b"0"]
    assert json.loads(replies[0].payload)["error"]["reason"] == "queue_full"
    assert stats.snapshot(pipeline)["routes"]["cam"]["queue_depth"] == 2


def test_a_frame_replaced_by_a_newer_one_under_latest_is_superseded(
        digits: LoadedModel, published: list[Outbound]) -> None:
    """A burst from one camera under `queue: latest`: each frame replaced by a newer one is
    `superseded`, counted apart from `queue_full` and not as a failure, answered to its
    requester, and sampled on the errors topic rather than sent there at full rate. Only a
    frame pushed out by another camera's, with the queue full, is `queue_full`."""
    clock = FakeClock()
    pipeline, stats = make(digits, published, clock, queue="latest", queue_size=2,
                           deadline_ms=10_000)
    payload = frame(clock).payload
    for i in range(100):
        pipeline.submit(Inbound("cam/1", payload, 1, 1.7e9, clock.now, "reply/me",
                                str(i).encode()))
    replies = bodies(published, "reply/me")
    assert len(replies) == 99
    assert {r["error"]["reason"] for r in replies} == {"superseded"}
    assert "replaced by a newer message from 'cam/1'" in replies[0]["error"]["message"]
    assert len(bodies(published, "edged/box/errors")) == 1  # sampled, not 99
    route = stats.snapshot(pipeline)["routes"]["cam"]
    assert route["superseded"] == 99 and route["failed"] == {} and route["queue_depth"] == 1
    assert stats.totals()["failed"] == 0 and stats.totals()["superseded"] == 99

    for camera in ("cam/2", "cam/3"):  # two more cameras, one slot left: cam/1's frame goes
        pipeline.submit(Inbound(camera, payload, 1, 1.7e9, clock.now, "reply/me", b"x"))
    assert bodies(published, "reply/me")[-1]["error"]["reason"] == "queue_full"
    assert stats.snapshot(pipeline)["routes"]["cam"]["failed"] == {"queue_full": 1}


def test_a_malformed_user_deadline_is_bad_input(digits: LoadedModel,
                                                published: list[Outbound]) -> None:
    clock = FakeClock()
    pipeline, _ = make(digits, published, clock)
    pipeline.submit(frame(clock, user_properties=(("deadline_ms", "soon"),)))
    (reply,) = bodies(published, "reply/me")
    assert reply["error"]["reason"] == "bad_input"
    assert "deadline_ms" in reply["error"]["message"]


def test_a_chain_feeds_each_models_output_to_the_next(published: list[Outbound]) -> None:
    backend = select_backend()
    features = load_model("features", ModelConfig(
        path=MODELS / "digits_features_int8.tflite", postprocess="raw"), backend)
    head = load_model("head", ModelConfig(path=MODELS / "digits_head_int8.tflite",
                                          labels=MODELS / "digits.labels"), backend)
    manifest = json.loads((MODELS / "manifest.json").read_text())["models"]["chain"]
    clock = FakeClock()
    stats = Stats()
    stats.add_route("cam", "features")
    route = Route.bind(RouteConfig(name="cam", subscribe="cam/+", model="features",
                                   chain=("head",), deadline_ms=10_000),
                       {"features": features, "head": head})
    transport = FakeTransport()
    transport.published = published
    pipeline = Pipeline([route], Responder(transport, "box", "edged", stats), transport, stats,
                        clock)
    data = np.load(MODELS / "digits_holdout.npz")
    assert pipeline.models["features"].inline  # a chain of microseconds runs inline too
    for image in data["images"]:
        payload = np.rint(image * 255).astype(np.uint8).tobytes()
        pipeline.submit(Inbound("cam/1", payload, 0, 1.7e9, clock.now, None, None))
    labels = [int(b["result"]["label"]) for b in bodies(published, "edged/box/predictions/cam")]
    accuracy = float(np.mean(np.array(labels) == data["labels"]))
    assert accuracy == pytest.approx(manifest["int8_accuracy"], abs=5e-4)


def test_a_chain_whose_link_does_not_fit_is_refused(digits: LoadedModel) -> None:
    from edged.errors import ConfigError

    config = RouteConfig(name="cam", subscribe="cam/+", model="digits", chain=("digits",))
    with pytest.raises(ConfigError, match=r"outputs \[1, 10\], which does not fit"):
        Route.bind(config, {"digits": digits})


def test_a_stuck_estimate_is_probed_and_comes_down(digits: LoadedModel,
                                                   published: list[Outbound]) -> None:
    clock = FakeClock()
    pipeline, stats = make(digits, published, clock, deadline_ms=50)
    estimate = pipeline.models["digits"].estimate
    for _ in range(20):
        estimate.add(0.080)  # a past stall: every message now looks doomed
    pipeline.submit(frame(clock))
    assert [b["error"]["reason"] for b in bodies(published, "reply/me")] == ["deadline"]
    clock.now += 3.0  # nothing has run for longer than the estimate's staleness bound
    published.clear()
    pipeline.submit(frame(clock))
    (job,) = queued(pipeline)
    assert job.probe
    run(pipeline, job)  # runs, is not refused at pickup
    assert "result" in bodies(published, "reply/me")[0]
    assert estimate.seconds < 0.080
    assert stats.snapshot()["routes"]["cam"]["succeeded"] == 1


def test_a_window_route_refuses_more_than_a_window_in_one_message() -> None:
    from edged.errors import BadInputError

    vibration = load_model("vibration", ModelConfig(path=MODELS / "vibration_int8.tflite",
                                                    labels=MODELS / "vibration.labels"),
                           select_backend())
    route = Route.bind(RouteConfig(name="vib", subscribe="vib/+", model="vibration",
                                   input={"format": "json"},
                                   window={"size": 128, "hop": 1}),
                       {"vibration": vibration})
    burst = json.dumps({"data": [[0.0, 0.0, 0.0]] * 129}).encode()
    with pytest.raises(BadInputError, match="129 readings in one message"):
        route.windows(Inbound("vib/1", burst, 0, 1.7e9, 0.0))
    one = json.dumps({"data": [[0.0, 0.0, 0.0]] * 128}).encode()
    assert len(route.windows(Inbound("vib/1", one, 0, 1.7e9, 0.0))) == 1


def test_a_window_route_counts_its_readings_and_its_windows_apart(
        published: list[Outbound]) -> None:
    vibration = load_model("vibration", ModelConfig(path=MODELS / "vibration_int8.tflite",
                                                    labels=MODELS / "vibration.labels",
                                                    inline=False),
                           select_backend())
    route = Route.bind(RouteConfig(name="vib", subscribe="vib/+", model="vibration",
                                   input={"format": "json"}, deadline_ms=10_000,
                                   window={"size": 128, "hop": 64}),
                       {"vibration": vibration})
    stats = Stats()
    stats.add_route("vib", "vibration", route.windowed)
    transport = FakeTransport(way_back_s=0.001)
    pipeline = Pipeline([route], Responder(transport, "box", "edged", stats), transport,
                        stats, FakeClock())
    reading = json.dumps({"data": [[0.0, 0.0, 0.0]] * 32}).encode()
    assert stats.snapshot(pipeline)["routes"]["vib"]["windows"] == 0
    for _ in range(12):  # 384 readings: windows end at 128, 192, 256, 320 and 384
        pipeline.submit(Inbound("vib/1", reading, 0, 1.7e9, 0.0))
    snap = stats.snapshot(pipeline)["routes"]["vib"]
    assert (snap["received"], snap["windows"]) == (12, 5)


def test_a_reload_keeps_partial_windows_of_unchanged_routes() -> None:
    vibration = load_model("vibration", ModelConfig(path=MODELS / "vibration_int8.tflite",
                                                    labels=MODELS / "vibration.labels"),
                           select_backend())
    config = RouteConfig(name="vib", subscribe="vib/+", model="vibration",
                         input={"format": "json"}, window={"size": 128, "hop": 64})
    old = Route.bind(config, {"vibration": vibration})
    half = json.dumps({"data": [[0.1, 0.0, 0.0]] * 100}).encode()
    assert old.windows(Inbound("vib/1", half, 0, 1.7e9, 0.0)) == []
    kept = Route.bind(config, {"vibration": vibration}).carrying_state_of(old)
    rest = json.dumps({"data": [[0.1, 0.0, 0.0]] * 28}).encode()
    assert len(kept.windows(Inbound("vib/1", rest, 0, 1.7e9, 0.1))) == 1  # 100 + 28 readings
    changed = config.model_copy(update={"deadline_ms": 500})
    fresh = Route.bind(changed, {"vibration": vibration}).carrying_state_of(old)
    assert fresh.windowers is not old.windowers


def test_a_message_no_route_matches_is_counted(digits: LoadedModel,
                                               published: list[Outbound]) -> None:
    clock = FakeClock()
    pipeline, stats = make(digits, published, clock)
    pipeline.submit(frame(clock, topic="elsewhere/1"))
    assert published == []
    assert stats.totals()["unrouted"] == 1


def test_image_frames_for_a_pixel_quantized_input_skip_normalising(digits: LoadedModel) -> None:
    import io as _io

    from PIL import Image

    from edged import image as edged_image
    from edged import preprocess

    route = Route.bind(RouteConfig(name="cam", subscribe="cam/+", model="digits",
                                   input={"format": "jpeg", "resize": "letterbox"}),
                       {"digits": digits})
    images = np.load(MODELS / "digits_holdout.npz")["images"][:20]
    options = edged_image.ImageOptions.for_input(digits.input.shape, resize="letterbox")
    assert not options.as_is
    for picture in images:
        buffer = _io.BytesIO()
        grey = np.rint(picture[:, :, 0] * 255).astype(np.uint8)
        Image.fromarray(grey).resize((24, 32)).save(buffer, format="JPEG", quality=90)
        assert route.decode(buffer.getvalue()).dtype == np.uint8  # not normalised floats
        fast, _ = route.prepare(buffer.getvalue(), None)
        slow = preprocess.to_input_tensor(
            edged_image.decode_frame(buffer.getvalue(), "jpeg", options).array, digits.input)
        np.testing.assert_array_equal(fast, slow)
