"""edged.postprocess.yolo against an independent decoder (edgefirst-decoder, the EdgeFirst
HAL's YOLO decoder from PyPI) and hand-computed golden outputs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edged.config import ModelConfig
from edged.image import Geometry
from edged.postprocess.base import PostProcessor
from edged.postprocess.options import PostOptions
from edged.postprocess.registry import postprocessor_for
from edged.postprocess.yolo import split_anchors
from edged.runtime.tensors import TensorSpec

Array = np.ndarray[Any, Any]


def _edgefirst() -> tuple[Any, Any]:
    """edgefirst-decoder (a test dependency in pyproject.toml), imported when a test needs
    it: the legacy run (tflite-runtime, numpy<2) collects this module without it."""
    import edgefirst.decoder as decoder
    import edgefirst.tensor as tensor

    return decoder, tensor
INPUT = TensorSpec("images", 0, (1, 320, 320, 3), np.dtype(np.uint8), 1 / 255, 0)
THRESHOLD, IOU = 0.4, 0.45


def spec_of(x: Array, scale: float = 0.0, zero_point: int = 0, name: str = "out") -> TensorSpec:
    return TensorSpec(name, 0, tuple(x.shape), x.dtype, scale, zero_point)


def yolo(specs: list[TensorSpec], labels: tuple[str, ...] = (), input_spec: TensorSpec = INPUT,
         **yolo_keys: Any) -> PostProcessor:
    config = ModelConfig(path=Path("m.tflite"), postprocess="yolo",
                         score_threshold=THRESHOLD, yolo={"iou_threshold": IOU, **yolo_keys})
    return postprocessor_for("yolo", specs, labels, 3, options=PostOptions(
        score_threshold=THRESHOLD), input_spec=input_spec, config=config)


def scene(seed: int, n: int = 600, classes: int = 4) -> tuple[Array, Array]:
    """Normalised centre boxes [N, 4] and class scores [N, C]: noise, and objects each seen
    by five anchors with jittered boxes (so NMS has work to do)."""
    rng = np.random.default_rng(seed)
    boxes = np.column_stack([rng.uniform(0.05, 0.95, (n, 2)), rng.uniform(0.02, 0.1, (n, 2))])
    scores = rng.uniform(0, 0.3, (n, classes))
    for _ in range(8):
        rows = rng.choice(n, 5, replace=False)
        centre, size = rng.uniform(0.2, 0.8, 2), rng.uniform(0.1, 0.3, 2)
        boxes[rows] = np.column_stack([centre + rng.normal(0, 0.01, (5, 2)),
                                       size + rng.normal(0, 0.01, (5, 2))])
        scores[rows, rng.integers(classes)] = rng.uniform(0.45, 0.99, 5)
    return boxes.astype(np.float32), scores.astype(np.float32)


def reference(x: Array, output: Any, version: Any = None) -> tuple[Array, Array, Array]:
    """edgefirst-decoder's boxes (x1, y1, x2, y2), scores and classes, best first."""
    ef, ef_tensor = _edgefirst()
    tensor = ef_tensor.Tensor(list(x.shape), dtype=str(x.dtype))  # type: ignore[arg-type]
    tensor.from_numpy(np.ascontiguousarray(x))
    decoder = ef.Decoder.new_from_outputs([output], score_threshold=THRESHOLD,
                                          iou_threshold=IOU, decoder_version=version)
    boxes, scores, classes, _ = decoder.decode([tensor], max_boxes=300)
    return boxes, scores, classes.astype(np.int64)


def ours(result: dict[str, Any]) -> tuple[Array, Array, Array]:
    dets = result["detections"]
    boxes = np.array([[d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for d in dets])
    return (boxes.reshape(-1, 4), np.array([d["score"] for d in dets]),
            np.array([d["index"] for d in dets], dtype=np.int64))


def assert_same(result: dict[str, Any], ref: tuple[Array, Array, Array], atol: float) -> None:
    boxes, scores, classes = ours(result)
    rb, rs, rc = ref
    assert len(rb) >= 4, "the scene should give several boxes"
    assert result["count"] == len(rb)
    np.testing.assert_array_equal(classes, rc)
    np.testing.assert_allclose(scores, rs, atol=max(atol, 1e-5))
    np.testing.assert_allclose(boxes, np.clip(rb, 0, 1), atol=max(atol, 1e-4))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_v8_features_first_matches_the_reference(seed: int) -> None:
    ef = _edgefirst()[0]
    boxes, scores = scene(seed)
    x = np.concatenate([boxes, scores], axis=1).T[None].copy()  # [1, 4 + C, N]
    result = yolo([spec_of(x)])([x])
    assert_same(result, reference(x, ef.Output.detection(shape=list(x.shape))), 0)


def test_v8_features_last_is_the_same_model_read_the_other_way() -> None:
    ef = _edgefirst()[0]
    boxes, scores = scene(4)
    x = np.concatenate([boxes, scores], axis=1)[None].copy()  # [1, N, 4 + C]
    expected = reference(x.transpose(0, 2, 1).copy(),
                         ef.Output.detection(shape=[1, x.shape[2], x.shape[1]]))
    # Features last without labels reads as YOLOv5; labels (4 + 4 classes) or the key say v8.
    assert_same(yolo([spec_of(x)], ("a", "b", "c", "d"))([x]), expected, 0)
    assert_same(yolo([spec_of(x)], layout="v8")([x]), expected, 0)


def test_v8_int8_is_dequantized_with_the_models_parameters() -> None:
    ef = _edgefirst()[0]
    boxes, scores = scene(5)
    real = np.concatenate([boxes, scores], axis=1).T[None]
    scale, zero = 1 / 255, -128
    q = np.clip(np.rint(real / scale) + zero, -128, 127).astype(np.int8)
    expected = reference(q, ef.Output.detection(shape=list(q.shape))
                         .with_quantization(scale=scale, zero_point=zero))
    assert_same(yolo([spec_of(q, scale, zero)])([q]), expected, scale / 2)


def test_v8_pixel_boxes_are_divided_by_the_input_size() -> None:
    ef = _edgefirst()[0]
    boxes, scores = scene(6)
    x = np.concatenate([boxes, scores], axis=1).T[None].copy()
    pixels = x.copy()
    pixels[0, :4] *= 320
    expected = reference(x, ef.Output.detection(shape=list(x.shape)))
    assert_same(yolo([spec_of(pixels)])([pixels]), expected, 1e-5)
    assert_same(yolo([spec_of(pixels)], boxes="pixels")([pixels]), expected, 1e-5)


def test_v5_scores_are_objectness_times_class() -> None:
    """YOLOv5: conf = objectness x class score. The reference decodes the same boxes with
    those products as v8-style class scores."""
    ef = _edgefirst()[0]
    boxes, scores = scene(7)
    rng = np.random.default_rng(7)
    obj = np.clip(scores.max(axis=1) + rng.uniform(0, 0.4, len(scores)), 0, 1)
    cls = np.clip(scores / np.maximum(scores.max(axis=1, keepdims=True), 1e-6)
                  * rng.uniform(0.6, 1.0, (len(scores), 1)), 0, 1)
    x5 = np.concatenate([boxes, obj[:, None], cls], axis=1)[None].astype(np.float32)
    product = (np.concatenate([boxes, obj[:, None] * cls], axis=1).T[None]).astype(np.float32)
    expected = reference(product, ef.Output.detection(shape=list(product.shape)))
    assert_same(yolo([spec_of(x5)])([x5]), expected, 1e-5)


def test_v5_golden() -> None:
    # Two anchors: obj 0.9 x class 1 at 0.8 = 0.72 passes; obj 0.3 fails before its 0.99.
    x = np.array([[[0.5, 0.5, 0.2, 0.4, 0.9, 0.1, 0.8],
                   [0.2, 0.2, 0.1, 0.1, 0.3, 0.99, 0.0]] + [[0.0] * 7] * 8], np.float32)
    result = yolo([spec_of(x)], ("cat", "dog"), layout="v5")([x])
    assert result == {"count": 1, "detections": [
        {"index": 1, "label": "dog", "score": 0.72,
         "box": {"ymin": 0.3, "xmin": 0.4, "ymax": 0.7, "xmax": 0.6}}]}


def test_end_to_end_rows_are_taken_as_they_are() -> None:
    rows = np.zeros((1, 300, 6), np.float32)
    rows[0, 0] = [64, 32, 192, 96, 0.9, 2]      # pixels: x1, y1, x2, y2, score, class
    rows[0, 1] = [0, 0, 320, 320, 0.35, 0]      # below the threshold
    rows[0, 2] = [70, 40, 190, 100, 0.8, 2]     # overlaps the first: no NMS here
    result = yolo([spec_of(rows)], ("a", "b", "c"))([rows])
    assert [d["box"] for d in result["detections"]] == [
        {"ymin": 0.1, "xmin": 0.2, "ymax": 0.3, "xmax": 0.6},
        {"ymin": 0.125, "xmin": 0.21875, "ymax": 0.3125, "xmax": 0.59375}]
    assert [d["score"] for d in result["detections"]] == [0.9, 0.8]


def test_end_to_end_matches_the_reference() -> None:
    ef = _edgefirst()[0]
    boxes, scores = scene(8, n=300, classes=1)
    corners = np.column_stack([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2])
    cls = np.random.default_rng(8).integers(0, 5, (300, 1))
    rows = np.concatenate([corners, scores, cls], axis=1)[None].astype(np.float32)
    features_first = rows.transpose(0, 2, 1).copy()  # edgefirst takes [1, 6, K]
    boxes_r, scores_r, classes_r = reference(
        features_first, ef.Output.detection(shape=list(features_first.shape)),
        ef.DecoderVersion.Yolo26)
    order = np.argsort(-scores_r, kind="stable")  # it keeps the model's order; edged: best first
    expected = (boxes_r[order], scores_r[order], classes_r[order])
    assert_same(yolo([spec_of(rows)])([rows]), expected, 1e-5)


def test_split_head_golden() -> None:
    """A 32x32 input: 16 + 4 + 1 anchors at strides 8, 16, 32. Bin logits of 60 put all of
    a side's softmax on one bin, so each box is known exactly by hand."""
    inp = TensorSpec("in", 0, (1, 32, 32, 3), np.dtype(np.uint8), 1 / 255, 0)
    logits = np.full((1, 21, 2), -8.0, np.float32)
    dist = np.zeros((1, 21, 64), np.float32)
    logits[0, 5, 1] = 2.0           # anchor 5: stride 8, row 1, col 1 -> centre (12, 12)
    dist[0, 5, [0 + 1, 16 + 1, 32 + 2, 48 + 3]] = 60.0  # l 1, t 1, r 2, b 3 (x 8 px)
    logits[0, 20, 0] = 0.0          # the stride-32 anchor, centre (16, 16): score 0.5
    dist[0, 20, [0 + 0, 16 + 0, 32 + 0, 48 + 0]] = 60.0  # a point box: dropped as empty
    post = yolo([spec_of(logits, name="cls"), spec_of(dist, name="box")], ("a", "b"),
                input_spec=inp)
    result = post([logits, dist])
    sigmoid2 = 1 / (1 + math.exp(-2.0))
    assert result == {"count": 1, "detections": [
        {"index": 1, "label": "b", "score": round(sigmoid2, 6),
         "box": {"ymin": 0.125, "xmin": 0.125, "ymax": 1.0, "xmax": 0.875}}]}
    # (12 - 8) / 32 = 0.125; (12 + 16) / 32 = 0.875; (12 + 24) / 32 clipped to 1.0


def test_split_head_int8_matches_float() -> None:
    inp = TensorSpec("in", 0, (1, 64, 64, 3), np.dtype(np.uint8), 1 / 255, 0)
    rng = np.random.default_rng(9)
    n = sum((64 // s) ** 2 for s in (8, 16, 32))
    logits = rng.normal(-4, 2, (1, n, 3)).astype(np.float32)
    dist = rng.normal(0, 2, (1, n, 64)).astype(np.float32)

    def q(v: Array, s: float) -> Array:
        return np.clip(np.rint(v / s), -128, 127).astype(np.int8)

    ql, qd = q(logits, 0.1), q(dist, 0.05)
    floats = yolo([spec_of(logits), spec_of(dist)], input_spec=inp)
    ints = yolo([spec_of(ql, 0.1), spec_of(qd, 0.05)], input_spec=inp)
    expected = floats([(ql * 0.1).astype(np.float32), (qd * 0.05).astype(np.float32)])
    assert expected["count"] > 0
    assert ints([ql, qd]) == expected


def test_split_anchors_are_cell_centres_finest_grid_first() -> None:
    xy, stride = split_anchors((32, 32), (8, 16, 32))
    assert xy.shape == (21, 2)
    assert xy[:5].tolist() == [[4, 4], [12, 4], [20, 4], [28, 4], [4, 12]]
    assert xy[16:20].tolist() == [[8, 8], [24, 8], [8, 24], [24, 24]]
    assert xy[20].tolist() == [16, 16] and stride.tolist() == [8] * 16 + [16] * 4 + [32]


def test_pose_keypoints_follow_their_box_into_the_frame() -> None:
    x = np.zeros((1, 56, 100), np.float32)  # [1, 5 + 17 x 3, N]
    x[0, :5, 0] = [160, 160, 64, 128, 0.9]  # pixels
    x[0, 5:, 0] = np.tile([160, 96, 0.8], 17)
    x[0, 5 + 3 * 16: 5 + 3 * 17, 0] = [200, 220, 0.1]
    x[0, :5, 1] = [162, 158, 60, 120, 0.7]  # a duplicate of the first: suppressed
    geometry = Geometry(240, 320, 0.125, 0.0, 0.75, 1.0)  # 320x240 frame letterboxed
    result = yolo([spec_of(x)])([x], geometry=geometry)
    assert result["count"] == 1
    det = result["detections"][0]
    # y 96..224 of 320 = 0.3..0.7 of the input; the content is rows 0.125..0.875 of it
    assert det["box"] == {"ymin": 0.23333, "xmin": 0.4, "ymax": 0.76667, "xmax": 0.6}
    nose, ankle = det["keypoints"][0], det["keypoints"][16]
    assert nose == {"name": "nose", "y": 0.23333, "x": 0.5, "score": 0.8}
    assert ankle == {"name": "right_ankle", "y": 0.75, "x": 0.625, "score": 0.1}


def test_letterbox_is_undone_and_boxes_in_the_bars_dropped() -> None:
    x = np.zeros((1, 5, 100), np.float32)
    x[0, :, 0] = [0.5, 0.5, 0.5, 0.5, 0.9]     # the middle of the content
    x[0, :, 1] = [0.5, 0.05, 0.2, 0.08, 0.8]   # inside the top bar
    geometry = Geometry(240, 320, 0.125, 0.0, 0.75, 1.0)
    result = yolo([spec_of(x)], ("thing",))([x], geometry=geometry)
    assert result["detections"] == [{"index": 0, "label": "thing", "score": 0.9,
                                     "box": {"ymin": 0.16667, "xmin": 0.25, "ymax": 0.83333,
                                             "xmax": 0.75}}]


@pytest.mark.parametrize(
    ("shapes", "keys", "message"),
    [
        ([(1, 84)], {}, "one \\[1, N, F\\] or \\[1, F, N\\] tensor"),
        ([(1, 84, 8400), (1, 4)], {"layout": "v8"}, "one output tensor"),
        ([(1, 300, 7)], {"layout": "end2end"}, "end2end expects \\[1, K, 6\\]"),
        ([(1, 4, 8400)], {}, "4 box values plus class scores"),
        ([(1, 2100, 80), (1, 2100, 64)], {}, "give 8400 anchors, the outputs have 2100"),
        ([(1, 2100, 80), (1, 2100, 60)], {}, "one output of 64 values per box"),
        ([(1, 50, 8400)], {"layout": "pose"}, "5 \\+ 3 x 17 = 56 features"),
    ],
)
def test_outputs_that_do_not_fit_are_refused_saying_what_was_expected(
    shapes: list[tuple[int, ...]], keys: dict[str, Any], message: str
) -> None:
    inp = TensorSpec("in", 0, (1, 640, 640, 3), np.dtype(np.uint8), 1 / 255, 0)
    specs = [TensorSpec(f"o{i}", i, s, np.dtype(np.float32), 0.0, 0)
             for i, s in enumerate(shapes)]
    with pytest.raises(ValueError, match=message):
        yolo(specs, input_spec=inp, **keys)


def test_labels_tell_v5_from_v8() -> None:
    from edged.config.postprocess import YoloConfig
    from edged.postprocess.yolo import plan_for

    spec = TensorSpec("o", 0, (1, 84, 8400), np.dtype(np.float32), 0.0, 0)
    assert plan_for([spec], YoloConfig(), [str(i) for i in range(80)], (640, 640)).layout == "v8"
    spec5 = TensorSpec("o", 0, (1, 25200, 85), np.dtype(np.float32), 0.0, 0)
    assert plan_for([spec5], YoloConfig(), [str(i) for i in range(80)], (640, 640)).layout == "v5"
    e2e = TensorSpec("o", 0, (1, 300, 6), np.dtype(np.float32), 0.0, 0)
    assert plan_for([e2e], YoloConfig(), (), (640, 640)).layout == "end2end"
