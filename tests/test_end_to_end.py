"""The real daemon, a real mosquitto and the bundled quantized models, end to end."""

from __future__ import annotations

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
    for image, label in zip(images, labels):
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
    wait_online(probe, edged)
    return edged


def wait_online(probe: Probe, edged: Edged, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            msg = probe.next(timeout=0.5, topic=STATUS)
        except TimeoutError:
            assert edged.proc is not None and edged.proc.poll() is None, edged.log()
            continue
        if msg.payload == b"online":
            time.sleep(0.3)  # edged subscribes before it says online; let the SUBACK land
            return
    raise AssertionError(f"edged never said online:\n{edged.log()}")


@pytest.mark.legacy
def test_holdout_set_through_the_broker_has_the_models_accuracy(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    manifest = json.loads((MODELS / "manifest.json").read_text())["models"]["digits"]
    start_edged(tmp_path, broker, daemons, probe)
    probe.subscribe(PREDICTIONS)
    images, labels = holdout()
    for i, image in enumerate(images):
        probe.publish(f"sensors/img{i}/frame", quantized(image))
        if i % 50 == 49:
            time.sleep(0.05)  # an honest camera rate, not a burst that fills the queue
    answers = probe.collect(len(images), timeout=60, topic=PREDICTIONS)
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
