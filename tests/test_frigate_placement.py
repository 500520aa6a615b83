"""Which served model a detector's frame is for (edged.frigate.placement), with the bundled
models bound as the door binds them."""

from __future__ import annotations

import numpy as np
import pytest

from edged.config import Settings
from edged.frigate import placement, serve
from edged.frigate.placement import Placement
from edged.frigate.protocol import Detect
from edged.runtime import load_model, select_backend
from tests.support.daemon import MODELS

IDS = {"circle": 0, "square": 2, "triangle": 16}


@pytest.fixture(scope="module")
def served() -> list[serve.Served]:
    labels = MODELS / "shapes.labels"
    settings = Settings(
        models={"ssd": {"path": MODELS / "shapes_detect_int8.tflite", "labels": labels,
                        "postprocess": "detection"},
                "yolo": {"path": MODELS / "shapes_yolov8_int8.tflite", "labels": labels,
                         "postprocess": "yolo"}},
        frigate={"endpoints": ["ipc:///tmp/x.sock"],
                 "models": [{"model": "ssd", "labelmap": IDS},
                            {"model": "yolo", "labelmap": IDS}]})
    backend = select_backend()
    models = {n: load_model(n, c, backend) for n, c in settings.models.items()}
    return serve.bind(settings, models)


def frame(model_type: str | None, shape: tuple[int, ...] = (1, 64, 64, 3)) -> Detect:
    return Detect(shape, np.dtype(np.uint8), model_type, bytes(int(np.prod(shape))))


def test_a_detector_is_placed_by_its_handshake_or_its_frame(
        served: list[serve.Served]) -> None:
    place = Placement(served)
    place.remember(b"a", "shapes_yolov8_int8.tflite")
    assert place.served_for(b"a", frame("ssd")) is place.served["shapes_yolov8_int8.tflite"]
    # Without a handshake: both models take 64x64 uint8; the model type tells them apart.
    assert place.served_for(b"b", frame("ssd")) is place.served["shapes_detect_int8.tflite"]
    assert place.asked(b"b") == "shapes_detect_int8.tflite"  # remembered from now on
    assert place.served_for(b"c", frame("yologeneric")).decoder == "yolo"  # type: ignore[union-attr]
    assert place.served_for(b"d", frame(None)) is None  # either: ask it to make a handshake
    assert place.served_for(b"e", frame("ssd", (1, 32, 32, 3))) is None  # neither
    assert len(place) == 3
    place.replace(served[:1])  # a reload stops serving the YOLO model
    assert place.served_for(b"a", frame("yologeneric")) is None


def test_detectors_are_forgotten_oldest_first_and_problems_said_once(
        served: list[serve.Served], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "MAX_PEERS", 2)
    place = Placement(served)
    for peer in (b"1", b"2", b"3"):
        place.remember(peer, "shapes_detect_int8.tflite")
    assert place.asked(b"1") is None and place.asked(b"3") is not None
    assert place.first_report(served[0], "input") and not place.first_report(served[0], "input")
