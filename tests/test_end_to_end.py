"""The real daemon, a real mosquitto and the bundled quantized models, end to end."""

from __future__ import annotations

import io
import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from edged.runtime import select_backend
from tests.support.broker import Broker
from tests.support.daemon import MODELS, Edged, digits_config
from tests.support.probe import Probe

pytestmark = pytest.mark.integration

PREDICTIONS = "edged/test-box/predictions/cam"
ERRORS = "edged/test-box/errors"
STATUS = "edged/test-box/status"


def holdout() -> tuple[np.ndarray, np.ndarray]:
    data = np.load(MODELS / "digits_holdout.npz")
    return data["images"], data["labels"]


def quantized(image: np.ndarray) -> bytes:
    """The raw uint8 tensor the digits model takes (its input scale is 1/255, zero point 0)."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8).tobytes()


def local_accuracy(images: np.ndarray, labels: np.ndarray) -> float:
    """The int8 model's accuracy on the hold-out set, run here with no MQTT in between."""
    interpreter = select_backend().interpreter_class(model_path=str(MODELS / "digits_int8.tflite"))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    correct = 0
    for image, label in zip(images, labels, strict=False):
        tensor = np.frombuffer(quantized(image), np.uint8).reshape(1, 8, 8, 1)
        interpreter.set_tensor(inp, tensor)
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(out))) == int(label)
    return correct / len(images)


def start_edged(tmp_path: Path, broker: Broker, daemons: list[Edged], probe: Probe,
                runtime: str | None = None, **route: object) -> Edged:
    probe.subscribe(STATUS)
    edged = Edged(tmp_path, digits_config(broker.port, **route), runtime=runtime)
    daemons.append(edged)
    edged.start()
    edged.wait_online(probe, STATUS)
    return edged


@pytest.mark.legacy
def test_holdout_set_through_the_broker_has_the_models_accuracy(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    manifest = json.loads((MODELS / "manifest.json").read_text())["models"]["digits"]
    # A queue that holds the whole burst: this test is about accuracy, not load shedding.
    start_edged(tmp_path, broker, daemons, probe, queue_size=512)
    probe.subscribe(PREDICTIONS, ERRORS)
    images, labels = holdout()
    for i, image in enumerate(images):
        probe.publish(f"sensors/img{i}/frame", quantized(image))
        if i % 50 == 49:
            time.sleep(0.05)  # an honest camera rate, not a burst that fills the queue
    answers = probe.collect(len(images), timeout=60, topic=PREDICTIONS)
    errors = probe.collect(len(images), timeout=0.5, topic=ERRORS)
    assert [e.json()["error"] for e in errors] == []
    assert len(answers) == len(images)
    predicted: dict[int, int] = {}
    for answer in answers:
        body = answer.json()
        assert "error" not in body, body
        predicted[int(body["topic"].split("/")[1].removeprefix("img"))] = int(
            body["result"]["label"]
        )
    assert sorted(predicted) == list(range(len(images)))  # every frame answered once
    accuracy = sum(predicted[i] == int(t) for i, t in enumerate(labels)) / len(images)
    assert accuracy == pytest.approx(local_accuracy(images, labels), abs=1e-12)
    assert accuracy == pytest.approx(manifest["int8_accuracy"], abs=5e-4)


@pytest.mark.legacy
def test_response_topic_gets_the_answer_with_the_same_correlation_data(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    start_edged(tmp_path, broker, daemons, probe)
    probe.subscribe("replies/me")
    images, labels = holdout()
    for i in range(3):
        probe.publish("sensors/a/frame", quantized(images[i]), response_topic="replies/me",
                      correlation_data=f"req-{i}".encode())
    replies = probe.collect(3, timeout=15, topic="replies/me")
    assert sorted(r.correlation_data or b"" for r in replies) == [b"req-0", b"req-1", b"req-2"]
    for reply in replies:
        body = reply.json()
        index = int((reply.correlation_data or b"").decode().removeprefix("req-"))
        assert body["result"]["label"] == str(labels[index])
        assert body["route"] == "cam" and body["model"] == "digits"
        assert body["device_id"] == "test-box" and body["topic"] == "sensors/a/frame"
        assert body["received_at"].endswith("Z")
        assert set(body["timings_ms"]) == {"queue", "preprocess", "invoke", "postprocess", "total"}
        assert 0 < body["timings_ms"]["total"] <= body["deadline_ms"]
        assert 0.0 <= body["result"]["score"] <= 1.0


def test_malformed_frame_gets_an_error_and_the_next_frame_its_prediction(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    start_edged(tmp_path, broker, daemons, probe)
    probe.subscribe(PREDICTIONS, ERRORS, "replies/bad")
    images, labels = holdout()
    probe.publish("sensors/a/frame", b"\x00" * 63, response_topic="replies/bad",
                  correlation_data=b"bad-1")
    error = probe.next(timeout=10, topic=ERRORS).json()
    assert error["error"]["reason"] == "bad_input"
    assert "63 bytes" in error["error"]["message"] and "64" in error["error"]["message"]
    assert "result" not in error
    reply = probe.next(timeout=10, topic="replies/bad")
    assert reply.correlation_data == b"bad-1"
    assert reply.json()["error"]["reason"] == "bad_input"
    probe.publish("sensors/a/frame", quantized(images[0]))
    good = probe.next(timeout=10, topic=PREDICTIONS).json()
    assert good["result"]["label"] == str(labels[0])


def test_npy_and_json_frames_are_quantized_with_the_models_own_parameters(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    config = digits_config(broker.port)
    config["routes"] = [
        dict(config["routes"][0], name="npy", subscribe="npy/+", input={"format": "npy"}),
        dict(config["routes"][0], name="json", subscribe="json/+",
             input={"format": "json", "field": "pixels"}),
    ]
    probe.subscribe(STATUS)
    edged = Edged(tmp_path, config)
    daemons.append(edged)
    edged.start()
    edged.wait_online(probe, STATUS)
    probe.subscribe("edged/test-box/predictions/+")
    images, labels = holdout()
    buffer = io.BytesIO()
    np.save(buffer, images[1].astype(np.float32))  # float values in [0, 1], no batch dim
    probe.publish("npy/x", buffer.getvalue())
    probe.publish("json/x", json.dumps({"pixels": images[2].reshape(-1).tolist()}).encode())
    got = {m.topic: m.json() for m in probe.collect(2, timeout=10)}
    assert got["edged/test-box/predictions/npy"]["result"]["label"] == str(labels[1])
    assert got["edged/test-box/predictions/json"]["result"]["label"] == str(labels[2])


def test_mqtt_311_publisher_gets_results_on_the_route_topic(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    start_edged(tmp_path, broker, daemons, probe)
    probe.subscribe(PREDICTIONS)
    old = Probe(broker.port, protocol="3.1.1")
    try:
        images, labels = holdout()
        old.publish("sensors/plc/frame", quantized(images[3]))
        body = probe.next(timeout=10, topic=PREDICTIONS).json()
        assert body["topic"] == "sensors/plc/frame"
        assert body["result"]["label"] == str(labels[3])
    finally:
        old.close()


def test_expired_work_is_not_run_and_is_reported(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    start_edged(tmp_path, broker, daemons, probe)
    probe.subscribe(PREDICTIONS, ERRORS)
    images, _ = holdout()
    # A deadline of 0 ms has passed by the time any worker could pick the frame up.
    probe.publish("sensors/a/frame", quantized(images[0]), user_properties=[("deadline_ms", "0")])
    error = probe.next(timeout=10, topic=ERRORS).json()
    assert error["error"]["reason"] in {"expired", "deadline"}
    assert error["deadline_ms"] == 0
    with pytest.raises(TimeoutError):
        probe.next(timeout=1.0, topic=PREDICTIONS)


def test_broker_down_at_start_is_waited_for(
    tmp_path: Path, private_broker: Broker, daemons: list[Edged]
) -> None:
    edged = Edged(tmp_path, digits_config(private_broker.port))
    daemons.append(edged)
    edged.start()
    # Until edged has tried and failed (its start takes seconds on a loaded machine).
    give_up = time.monotonic() + 60
    while "broker unreachable" not in edged.log():
        assert edged.proc is not None and edged.proc.poll() is None, edged.log()
        assert time.monotonic() < give_up, edged.log()
        time.sleep(0.1)
    private_broker.start()
    probe = Probe(private_broker.port)
    try:
        probe.subscribe(STATUS, PREDICTIONS)
        edged.wait_online(probe, STATUS)
        images, labels = holdout()
        probe.publish("sensors/a/frame", quantized(images[4]))
        assert probe.next(timeout=10, topic=PREDICTIONS).json()["result"]["label"] == str(labels[4])
    finally:
        probe.close()
    assert "broker unreachable" in edged.log()


def test_sigterm_publishes_stopped_and_exits_zero(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    edged = start_edged(tmp_path, broker, daemons, probe)
    assert edged.stop(signal.SIGTERM) == 0
    status = probe.next(timeout=5, topic=STATUS)
    assert status.payload == b"stopped"
    late = Probe(broker.port)
    try:
        late.subscribe(STATUS)
        retained = late.next(timeout=5, topic=STATUS)
        assert retained.retain and retained.payload == b"stopped"
    finally:
        late.close()
