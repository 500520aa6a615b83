"""Frigate's zmq frames, labelmaps and the door's config section (pure)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from edged.config import FrigateConfig, Settings
from edged.frigate import labelmaps, protocol
from edged.frigate.protocol import Detect, Fit, Malformed, ModelData, ModelRequest
from edged.runtime.tensors import TensorSpec

UINT8 = TensorSpec("in", 0, (1, 64, 64, 3), np.dtype(np.uint8), 1 / 255, 0)


def header(**values: Any) -> bytes:
    base: dict[str, Any] = {"shape": [1, 64, 64, 3], "dtype": "uint8", "model_type": "ssd"}
    base.update(values)
    return json.dumps(base).encode()


def test_the_three_requests_of_the_plugin() -> None:
    assert protocol.parse([b'{"model_request": true, "model_name": "m.tflite"}']) == (
        ModelRequest("m.tflite"))
    assert protocol.parse([b'{"model_data": true, "model_name": "m"}', b"file"]) == (
        ModelData("m", b"file"))
    got = protocol.parse([header(), bytes(64 * 64 * 3)])
    assert isinstance(got, Detect) and got.shape == (1, 64, 64, 3) and got.model_type == "ssd"


@pytest.mark.parametrize("frames,reason", [
    ([], "bad_header"),
    ([b"a", b"b", b"c"], "bad_header"),
    ([b"\xff\xfe", b""], "bad_header"),
    ([b"[]", b""], "bad_header"),
    ([b"x" * 5000, b""], "bad_header"),
    ([header(shape=[1, -64, 3]), b""], "bad_header"),
    ([header(shape=[True, 1]), b""], "bad_header"),
    ([header(dtype="float64"), bytes(64 * 64 * 3 * 8)], "bad_dtype"),
    ([header(), bytes(10)], "bad_length"),
    ([header()], "bad_header"),
    ([b'{"model_request": true}'], "bad_header"),
    ([b'{"model_data": true, "model_name": "m"}'], "bad_header"),
])
def test_what_cannot_be_read_is_named(frames: list[bytes], reason: str) -> None:
    got = protocol.parse(frames)
    assert isinstance(got, Malformed) and got.reason == reason


@given(st.lists(st.binary(max_size=64), max_size=3))
def test_any_frames_parse_to_a_value(frames: list[bytes]) -> None:
    assert protocol.parse(frames) is not None


def test_fit_takes_nhwc_nchw_and_floats_and_says_what_to_set() -> None:
    assert protocol.fit((1, 64, 64, 3), np.dtype(np.uint8), UINT8) == Fit(False, False)
    assert protocol.fit((1, 3, 64, 64), np.dtype(np.uint8), UINT8) == Fit(True, False)
    assert protocol.fit((1, 64, 64, 3), np.dtype(np.float32), UINT8) == Fit(False, True)
    wrong = protocol.fit((1, 320, 320, 3), np.dtype(np.uint8), UINT8)
    assert isinstance(wrong, str) and "width: 64, height: 64" in wrong
    int8 = protocol.fit((1, 64, 64, 3), np.dtype(np.int8), UINT8)
    assert isinstance(int8, str) and "input_dtype: int" in int8


def test_model_input_transposes_and_quantizes() -> None:
    image = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    nchw = Detect((1, 3, 64, 64), np.dtype(np.uint8), None, image.transpose(0, 3, 1, 2).tobytes())
    assert protocol.model_input(nchw, Fit(True, False), UINT8) == image.tobytes()
    floats = Detect((1, 64, 64, 3), np.dtype(np.float32), None,
                    (image.astype(np.float32) / 255).tobytes())
    assert protocol.model_input(floats, Fit(False, True), UINT8) == image.tobytes()


def test_rows_are_best_first_above_the_threshold_with_frigate_ids() -> None:
    def det(index: int, score: float) -> dict[str, Any]:
        return {"index": index, "score": score,
                "box": {"ymin": 0.1, "xmin": 0.2, "ymax": 0.3, "xmax": 0.4}}

    result = {"detections": [det(1, 0.5), det(0, 0.9), det(2, 0.8), det(0, 0.3)]}
    rows = np.frombuffer(protocol.rows(result, {0: 15, 1: 2}, 0.4), np.float32).reshape(20, 6)
    assert rows[:2, :2].tolist() == [[15, pytest.approx(0.9)], [2, pytest.approx(0.5)]]
    assert rows[0, 2:].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert not rows[2:].any()  # class 2 has no id; 0.3 is under the threshold
    many = {"detections": [det(0, 0.99 - i / 100) for i in range(30)]}
    assert np.frombuffer(protocol.rows(many, {0: 0}, 0.4), np.float32).reshape(20, 6)[19, 1] > 0
    assert len(protocol.rows({}, {}, 0.4)) == 480 == len(protocol.ZEROS)


def test_labelmaps() -> None:
    assert len(labelmaps.COCO_91) == 90 and labelmaps.COCO_91[14] == "bird"
    assert len(labelmaps.COCO_80) == 80 and labelmaps.COCO_80[7] == "truck"
    assert labelmaps.class_ids("coco-91", ("person", "truck", "dog"), 3) == {0: 0, 2: 16}
    assert labelmaps.class_ids("coco-80", ("person", "truck", "dog"), 3) == {0: 0, 1: 7, 2: 16}
    assert labelmaps.class_ids("coco-80", (), 90) == {i: i for i in range(80)}
    assert labelmaps.class_ids({"square": 2, "0": 1}, ("circle", "square"), 2) == {1: 2, 0: 1}
    with pytest.raises(ValueError, match="explicit labelmap"):
        labelmaps.class_ids("coco-91", ("circle", "square"), 2)
    with pytest.raises(ValueError, match="neither one of the model's labels"):
        labelmaps.class_ids({"hexagon": 1}, ("circle",), 1)


def test_config_defaults_and_refusals() -> None:
    cfg = FrigateConfig(models=[{"model": "m"}])
    assert cfg.endpoints == ["ipc:///run/edged/frigate.sock"] and cfg.request_timeout_ms == 200
    with pytest.raises(ValidationError, match="allow_remote"):
        FrigateConfig(models=[{"model": "m"}], endpoints=["tcp://0.0.0.0:5555"])
    FrigateConfig(models=[{"model": "m"}], endpoints=["tcp://0.0.0.0:5555"], allow_remote=True)
    FrigateConfig(models=[{"model": "m"}], endpoints=["tcp://127.0.0.1:5555",
                                                       "tcp://[::1]:5556", "tcp://localhost:1"])
    with pytest.raises(ValidationError, match="ipc:///path or tcp://host:port"):
        FrigateConfig(models=[{"model": "m"}], endpoints=["inproc://x"])
    with pytest.raises(ValidationError, match="Extra inputs"):
        FrigateConfig(models=[{"model": "m", "treshold": 1}])
    models = {"a": {"path": "/m/a.tflite"}, "b": {"path": "/n/a.tflite"}}
    with pytest.raises(ValidationError, match=r"two models as 'a\.tflite'"):
        Settings(models=models, frigate={"models": [{"model": "a"}, {"model": "b"}]})
    with pytest.raises(ValidationError, match="frigate serves model 'c'"):
        Settings(models=models, frigate={"models": [{"model": "c"}]})
    ok = Settings(models=models, frigate={"models": [{"model": "a"}, {"model": "b",
                                                                      "name": "b.tflite"}]})
    assert ok.served_name("a", None) == "a.tflite"


def test_an_upload_is_refused_before_it_is_looked_at_when_it_cannot_be_kept() -> None:
    from edged.config.frigate import UploadsConfig
    from edged.frigate.uploads import refusal

    on = UploadsConfig(enabled=True, max_bytes=2048)
    assert refusal(UploadsConfig(), set(), "m.tflite", 10) is not None
    assert refusal(on, set(), "m.tflite", 10) is None
    assert "ending in .tflite" in (refusal(on, set(), "../etc/passwd", 10) or "")
    assert "ending in .tflite" in (refusal(on, set(), ".hidden.tflite", 10) or "")
    assert "max_bytes" in (refusal(on, set(), "m.tflite", 4096) or "")
    assert "never replaces" in (refusal(on, {"m.tflite"}, "m.tflite", 10) or "")


def test_a_door_serves_configured_models_or_uploads() -> None:
    with pytest.raises(ValidationError, match="serves no model"):
        FrigateConfig()
    assert FrigateConfig(uploads={"enabled": True}).models == []
