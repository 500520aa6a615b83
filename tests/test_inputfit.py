"""edged.inputfit and edged.runtime.metadata: ``edged check`` warns where a route's input
format does not fit its model: raw on a camera-sized image model, or normalisation that
differs from what the model's own TFLite metadata states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edged.config import ModelConfig, RouteConfig
from edged.inputfit import warnings
from edged.runtime import LoadedModel, load_model, select_backend
from edged.runtime.metadata import input_normalization
from tests.support.daemon import MODELS

REPO = Path(__file__).resolve().parents[1]
FACES = REPO / ".cache" / "third_party" / "face_detection_short_range.tflite"  # MediaPipe's
SELFIE = REPO / ".cache" / "third_party" / "selfie_segmentation.tflite"


def model(path: Path, postprocess: str = "raw") -> LoadedModel:
    return load_model(path.stem, ModelConfig(path=path, postprocess=postprocess),
                      select_backend())


def route(**input_: Any) -> RouteConfig:
    return RouteConfig(name="cam", subscribe="cam/+", model="m", input=input_)


def test_the_metadata_normalisation_is_read_from_the_flatbuffer() -> None:
    assert input_normalization(FACES) == ((127.5,), (127.5,))
    assert input_normalization(SELFIE) == ((0.0,), (255.0,))
    assert input_normalization(MODELS / "digits_int8.tflite") is None  # it has none


def test_raw_on_a_camera_sized_image_model_is_warned_about() -> None:
    (line,) = warnings(route(), model(MODELS / "mobilenet_v2_1.0_224_quant.tflite"))
    assert line == (
        "route 'cam': input raw on model 'mobilenet_v2_1.0_224_quant', whose input is an "
        "image (uint8[1x224x224x3]): a raw payload must be exactly its 150528 tensor bytes, "
        "and a camera's JPEG or PNG is refused; for frames set input: {format: image}")
    # 8x8 digits are tensors more often than images: no warning.
    assert warnings(route(), model(MODELS / "digits_int8.tflite", "classification")) == []


@pytest.mark.parametrize(("given", "warned"), [
    ({}, True),  # mean 0, std 1: pixels 0..1 where the model wants -1..1
    ({"mean": [0.5], "std": [0.5]}, False),
    ({"mean": [0.5, 0.5, 0.5], "std": [0.5]}, False),
    ({"mean": [0.5, 0.4, 0.5], "std": [0.5]}, True),
])
def test_normalisation_that_differs_from_the_metadata_is_warned_about(
        given: dict[str, Any], warned: bool) -> None:
    found = warnings(route(format="image", **given), model(FACES))
    assert bool(found) == warned, found
    if warned:
        assert found[0].endswith("differ from model 'face_detection_short_range''s metadata, "
                                 "which normalises (pixel - 127.5) / 127.5: set input: "
                                 "{mean: [0.5], std: [0.5]}")
