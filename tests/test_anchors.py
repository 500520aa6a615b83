"""edged.postprocess.anchors: anchor grids, weighted NMS by hand, and MediaPipe's real
BlazeFace model against what MediaPipe's own pipeline found in the same image
(tests/data/mediapipe_goldens.json, recorded by scripts/models/reference_goldens.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edged.config import ModelConfig
from edged.image import ImageOptions, decode_frame
from edged.postprocess.anchors import anchor_centres
from edged.postprocess.base import PostProcessor
from edged.postprocess.boxes import weighted_nms
from edged.postprocess.options import PostOptions
from edged.postprocess.registry import postprocessor_for
from edged.runtime import select_backend
from edged.runtime.tensors import TensorSpec

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "third_party"
DATA = Path(__file__).parent / "data"
GOLDENS = json.loads((DATA / "mediapipe_goldens.json").read_text())
BLAZEFACE = {"strides": [8, 16], "anchors_per_cell": [2, 6], "keypoints": 6}


def bound(specs: list[TensorSpec], input_spec: TensorSpec, anchors: dict[str, Any],
          threshold: float = 0.5, **keys: Any) -> PostProcessor:
    config = ModelConfig(path=Path("m.tflite"), postprocess="anchors", anchors=anchors,
                         score_threshold=threshold, **keys)
    return postprocessor_for("anchors", specs, (), 3, options=PostOptions(
        score_threshold=threshold), input_spec=input_spec, config=config)


def run_model(path: Path, pixels: np.ndarray[Any, Any]) -> tuple[list[TensorSpec], TensorSpec,
                                                                  list[np.ndarray[Any, Any]]]:
    interpreter = select_backend().interpreter_class(model_path=str(path))
    interpreter.allocate_tensors()
    inp = TensorSpec.from_detail(interpreter.get_input_details()[0])
    specs = [TensorSpec.from_detail(d) for d in interpreter.get_output_details()]
    interpreter.set_tensor(inp.index, pixels[None].astype(np.float32))
    interpreter.invoke()
    return specs, inp, [interpreter.get_tensor(s.index) for s in specs]


def test_blazeface_anchors_golden() -> None:
    centres = anchor_centres((128, 128), [8, 16], [2, 6], 0.5)
    assert centres.shape == (896, 2)  # 16 x 16 x 2 + 8 x 8 x 6, as FACTS.md says
    assert centres[0].tolist() == centres[1].tolist() == [0.5 / 16, 0.5 / 16]
    assert centres[2].tolist() == [1.5 / 16, 0.5 / 16]
    assert centres[512].tolist() == centres[517].tolist() == [0.5 / 8, 0.5 / 8]
    assert centres[-1].tolist() == [7.5 / 8, 7.5 / 8]


def test_weighted_nms_golden() -> None:
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.1, 1.0, 1.1], [2.0, 2.0, 3.0, 3.0]])
    scores = np.array([0.9, 0.6, 0.8])
    points = np.array([[[0.5, 0.5]], [[0.5, 0.6]], [[2.5, 2.5]]])
    merged, kept, pts = weighted_nms(boxes, scores, 0.3, points)
    # IoU(0, 1) = 0.9 / 1.1 > 0.3: merged with weights 0.6 and 0.4, keeping score 0.9.
    np.testing.assert_allclose(merged, [[0.0, 0.04, 1.0, 1.04], [2.0, 2.0, 3.0, 3.0]])
    np.testing.assert_allclose(kept, [0.9, 0.8])
    assert pts is not None
    np.testing.assert_allclose(pts, [[[0.5, 0.54]], [[2.5, 2.5]]])


def test_weighted_nms_ends_on_degenerate_boxes() -> None:
    # A box of negative size overlaps nothing, not even itself: it must still be taken.
    boxes = np.array([[0.5, 0.5, 0.4, 0.4], [0.0, 0.0, 0.2, 0.2]])
    merged, kept, _ = weighted_nms(boxes, np.array([0.9, 0.8]), 0.3)
    np.testing.assert_allclose(merged, boxes)
    np.testing.assert_allclose(kept, [0.9, 0.8])


def test_decoding_golden() -> None:
    """One anchor of a 16x16 input with strides [8, 16] x [1, 1]: 4 + 1 anchors. Anchor 3
    sits at (12, 12) px; regressors in pixels move and size the box."""
    inp = TensorSpec("in", 0, (1, 16, 16, 3), np.dtype(np.float32), 0.0, 0)
    reg = np.zeros((1, 5, 6), np.float32)
    reg[0, 3] = [2.0, -4.0, 8.0, 4.0, 1.0, 1.0]  # cx +2, cy -4, w 8, h 4; keypoint +1, +1
    logits = np.full((1, 5, 1), -300.0, np.float32)  # clipped to -100 first: no overflow
    logits[0, 3] = 1.0
    post = bound([TensorSpec("r", 0, (1, 5, 6), np.dtype(np.float32), 0.0, 0),
                  TensorSpec("s", 1, (1, 5, 1), np.dtype(np.float32), 0.0, 0)], inp,
                 {"strides": [8, 16], "anchors_per_cell": [1, 1], "keypoints": 1})
    result = post([reg, logits])
    assert result == {"count": 1, "detections": [{
        "index": 0, "label": "0", "score": 0.731059,
        "box": {"ymin": 0.375, "xmin": 0.625, "ymax": 0.625, "xmax": 1.0},
        "keypoints": [{"name": "0", "y": 0.8125, "x": 0.8125}]}]}


def test_palm_detector_anchors_fit_the_real_model() -> None:
    interpreter = select_backend().interpreter_class(
        model_path=str(CACHE / "palm_detection_lite.tflite"))
    interpreter.allocate_tensors()
    inp = TensorSpec.from_detail(interpreter.get_input_details()[0])
    specs = [TensorSpec.from_detail(d) for d in interpreter.get_output_details()]
    palm = {"strides": [8, 16], "anchors_per_cell": [2, 6], "keypoints": 7}
    bound(specs, inp, palm)  # 24 x 24 x 2 + 12 x 12 x 6 = 2016 anchors, 4 + 14 regressors
    with pytest.raises(ValueError, match="give 1728 anchors; expected regressors"):
        bound(specs, inp, {**palm, "anchors_per_cell": [2, 4]})
    with pytest.raises(ValueError, match="regressors \\[1, 2016, 16\\]"):
        bound(specs, inp, {**palm, "keypoints": 6})


@pytest.mark.parametrize("nms", ["weighted", "plain"])
def test_blazeface_finds_the_face_mediapipe_finds(nms: str) -> None:
    png = (CACHE / "astronaut.png").read_bytes()
    frame = decode_frame(png, "png", ImageOptions.for_input((1, 128, 128, 3), mean=(0.5,),
                                                            std=(0.5,)))
    specs, inp, outputs = run_model(CACHE / "face_detection_short_range.tflite", frame.array)
    post = bound(specs, inp, {**BLAZEFACE, "nms": nms},
                 keypoint_labels=DATA / "blazeface.keypoints")
    result = post(outputs, geometry=frame.geometry)
    golden = GOLDENS["face_detection_short_range"]
    assert result["count"] == len(golden) == 1
    det, ref = result["detections"][0], golden[0]
    # MediaPipe resizes 512 -> 128 without antialiasing, edged with: a pixel or two apart.
    assert abs(det["score"] - ref["score"]) < 0.03
    for k in ("ymin", "xmin", "ymax", "xmax"):
        assert abs(det["box"][k] - ref["box"][k]) < 0.015, (k, det["box"], ref["box"])
    assert [p["name"] for p in det["keypoints"]][:3] == ["right_eye", "left_eye", "nose_tip"]
    for ours, theirs in zip(det["keypoints"], ref["keypoints"], strict=True):
        assert abs(ours["y"] - theirs["y"]) < 0.015 and abs(ours["x"] - theirs["x"]) < 0.015


def test_no_candidate_is_an_empty_result_not_an_error() -> None:
    """Every logit under the threshold: no rows to regress (issue 20: the keypoints'
    reshape of 0 rows raised, and every face-free frame became an internal_error)."""
    inp = TensorSpec("in", 0, (1, 16, 16, 3), np.dtype(np.float32), 0.0, 0)
    post = bound([TensorSpec("r", 0, (1, 5, 6), np.dtype(np.float32), 0.0, 0),
                  TensorSpec("s", 1, (1, 5, 1), np.dtype(np.float32), 0.0, 0)], inp,
                 {"strides": [8, 16], "anchors_per_cell": [1, 1], "keypoints": 1})
    logits = np.full((1, 5, 1), -5.0, np.float32)
    assert post([np.zeros((1, 5, 6), np.float32), logits]) == {"count": 0, "detections": []}


@pytest.mark.parametrize("model,anchors", [
    ("face_detection_short_range.tflite", BLAZEFACE),
    ("palm_detection_lite.tflite", {"strides": [8, 16], "anchors_per_cell": [2, 6],
                                    "keypoints": 7}),
])
@pytest.mark.parametrize("grey", [0.0, 0.5, 1.0])
def test_real_detectors_on_blank_frames_find_nothing(model: str, anchors: dict[str, Any],
                                                     grey: float) -> None:
    interpreter = select_backend().interpreter_class(model_path=str(CACHE / model))
    size = interpreter.get_input_details()[0]["shape"][1]
    frame = np.full((size, size, 3), grey * 2 - 1, np.float32)  # black, grey, white in [-1, 1]
    specs, inp, outputs = run_model(CACHE / model, frame)
    assert bound(specs, inp, anchors)(outputs) == {"count": 0, "detections": []}
