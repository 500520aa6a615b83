"""edged.postprocess: output tensors -> results (classification, raw)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.config import ModelConfig
from edged.errors import ModelExecutionError
from edged.image import Geometry
from edged.postprocess.anomaly import AnomalyOptions, AnomalyTracker, anomaly_score
from edged.postprocess.base import dequantize
from edged.postprocess.classification import classification
from edged.postprocess.detection import DetectionLayout, detection
from edged.postprocess.options import PostOptions
from edged.postprocess.raw import raw
from edged.postprocess.registry import postprocessor_for
from edged.runtime.model import TensorSpec

LABELS = ("cat", "dog", "fox", "owl", "elk")
SCORES_U8 = TensorSpec("scores", 7, (1, 5), np.dtype(np.uint8), 1 / 256, 0)
FLOAT_OUT = TensorSpec("logits", 9, (1, 5), np.dtype(np.float32), 0.0, 0)


def u8(*values: int) -> np.ndarray[Any, Any]:
    return np.array([values], dtype=np.uint8)


def test_dequantize() -> None:
    spec = TensorSpec("o", 0, (3,), np.dtype(np.int8), 0.5, -128)
    real = dequantize(np.array([-128, 0, 127], dtype=np.int8), spec)
    assert real.dtype == np.float64
    np.testing.assert_array_equal(real, [0.0, 64.0, 127.5])


def test_dequantize_passes_floats_through() -> None:
    values = np.array([0.25, -1.5], dtype=np.float32)
    np.testing.assert_array_equal(dequantize(values, FLOAT_OUT), [0.25, -1.5])


def test_classification_golden() -> None:
    # scale 1/256, zero point 0: score = q / 256
    result = classification([u8(16, 192, 0, 32, 8)], [SCORES_U8], LABELS, top_k=3)
    assert result == {
        "label": "dog",
        "score": 0.75,
        "top_k": [
            {"index": 1, "label": "dog", "score": 0.75},
            {"index": 3, "label": "owl", "score": 0.125},
            {"index": 0, "label": "cat", "score": 0.0625},
        ],
    }


def test_classification_scores_are_rounded_to_six_places() -> None:
    result = classification([u8(1, 0, 0, 0, 0)], [SCORES_U8], LABELS, top_k=1)
    assert result["score"] == 0.003906  # 1/256 = 0.00390625


def test_top_k_larger_than_the_classes_gives_every_class_best_first() -> None:
    result = classification([u8(5, 4, 3, 2, 1)], [SCORES_U8], LABELS, top_k=100)
    assert [t["label"] for t in result["top_k"]] == list(LABELS)


def test_top_k_of_one() -> None:
    result = classification([u8(0, 0, 0, 0, 255)], [SCORES_U8], LABELS, top_k=1)
    assert result["top_k"] == [{"index": 4, "label": "elk", "score": 0.996094}]
    assert result["label"] == "elk"


def test_ties_go_to_the_lower_index() -> None:
    # Quantized outputs tie often (most classes sit at 0): the order must not depend on
    # NumPy's partition algorithm or version.
    spec = TensorSpec("o", 0, (1, 20), np.dtype(np.uint8), 1 / 256, 0)
    values = np.zeros((1, 20), dtype=np.uint8)
    values[0, 19] = 9
    result = classification([values], [spec], [], top_k=5)
    assert [t["index"] for t in result["top_k"]] == [19, 0, 1, 2, 3]
    assert [t["index"] for t in classification([values * 0], [spec], [], 4)["top_k"]] == [
        0, 1, 2, 3,
    ]


def test_missing_labels_become_index_strings() -> None:
    result = classification([u8(0, 9, 0, 10, 0)], [SCORES_U8], [], top_k=2)
    assert [(t["index"], t["label"]) for t in result["top_k"]] == [(3, "3"), (1, "1")]
    assert result["label"] == "3"


def test_short_label_list_falls_back_to_index_strings() -> None:
    result = classification([u8(0, 0, 0, 0, 200)], [SCORES_U8], LABELS[:2], top_k=1)
    assert result["label"] == "4"


def test_classification_of_float_output() -> None:
    out = np.array([[0.1, -2.0, 3.5, 0.0, 1.0]], dtype=np.float32)
    result = classification([out], [FLOAT_OUT], LABELS, top_k=2)
    assert [(t["label"], t["score"]) for t in result["top_k"]] == [("fox", 3.5), ("elk", 1.0)]


def test_classification_of_a_signed_quantized_output() -> None:
    spec = TensorSpec("o", 0, (1, 3), np.dtype(np.int8), 1 / 256, -128)
    result = classification([np.array([[-128, 127, 0]], dtype=np.int8)], [spec], [], top_k=3)
    assert [(t["index"], t["score"]) for t in result["top_k"]] == [
        (1, 0.996094),
        (2, 0.5),
        (0, 0.0),
    ]


def test_classification_result_is_json() -> None:
    result = classification([u8(16, 192, 0, 32, 8)], [SCORES_U8], LABELS, top_k=3)
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_raw_gives_every_output_with_its_quantization() -> None:
    boxes = np.array([[[0.5, 0.25]]], dtype=np.float32)
    counts = np.array([3, 250], dtype=np.uint8)
    specs = [
        TensorSpec("boxes", 1, (1, 1, 2), np.dtype(np.float32), 0.0, 0),
        TensorSpec("counts", 2, (2,), np.dtype(np.uint8), 0.5, 10),
    ]
    assert raw([boxes, counts], specs) == {
        "outputs": [
            {
                "name": "boxes",
                "shape": [1, 1, 2],
                "dtype": "float32",
                "quantization": {"scale": 0.0, "zero_point": 0},
                "data": [[[0.5, 0.25]]],
            },
            {
                "name": "counts",
                "shape": [2],
                "dtype": "uint8",
                "quantization": {"scale": 0.5, "zero_point": 10},
                "data": [3, 250],
            },
        ]
    }
    json.dumps(raw([boxes, counts], specs), allow_nan=False)  # plain Python values


def test_postprocessor_for() -> None:
    classify = postprocessor_for("classification", [SCORES_U8], LABELS, 2)
    assert classify([u8(0, 0, 9, 0, 0)])["label"] == "fox"
    as_raw = postprocessor_for("raw", [SCORES_U8], LABELS, 2)
    assert as_raw([u8(1, 2, 3, 4, 5)])["outputs"][0]["data"] == [[1, 2, 3, 4, 5]]
    with pytest.raises(ValueError, match="unknown postprocess 'boxes'"):
        postprocessor_for("boxes", [SCORES_U8], LABELS, 2)


# --- classification threshold -----------------------------------------------------------


def test_classification_threshold_leaves_out_low_scores() -> None:
    # scores 0.0625, 0.75, 0, 0.125, 0.03125
    result = classification([u8(16, 192, 0, 32, 8)], [SCORES_U8], LABELS, top_k=3,
                            threshold=0.1)
    assert [c["label"] for c in result["top_k"]] == ["dog", "owl"]
    assert result["label"] == "dog"


def test_classification_below_threshold_reports_nothing() -> None:
    result = classification([u8(16, 100, 0, 32, 8)], [SCORES_U8], LABELS, top_k=3,
                            threshold=0.5)
    assert result == {"label": None, "score": None, "top_k": []}


def test_postprocessor_for_passes_the_threshold() -> None:
    post = postprocessor_for("classification", [SCORES_U8], LABELS, 3,
                             options=PostOptions(top_k=3, threshold=0.9))
    assert post([u8(0, 230, 0, 0, 0)])["label"] is None  # 0.898 < 0.9
    assert post([u8(0, 240, 0, 0, 0)])["score"] == 0.9375


# --- detection --------------------------------------------------------------------------

SHAPES = ("circle", "square", "triangle")
N = 5


def det_specs(names: tuple[str, str, str, str], order: str = "bcsn") -> list[TensorSpec]:
    """Float output specs in the given order (b boxes, c classes, s scores, n count)."""
    shapes = {"b": (1, N, 4), "c": (1, N), "s": (1, N), "n": (1,)}
    return [TensorSpec(name, i, shapes[k], np.dtype(np.float32), 0.0, 0)
            for i, (k, name) in enumerate(zip(order, names, strict=True))]


def det_outputs(order: str = "bcsn") -> list[np.ndarray[Any, Any]]:
    boxes = np.full((1, N, 4), np.nan, dtype=np.float32)  # rows past count: garbage
    boxes[0, :3] = [[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 0.25, 0.25], [0.5, 0.5, 1.2, 0.9]]
    classes = np.array([[1.0, 0.0, 2.0, 7e30, -3.0]], dtype=np.float32)
    scores = np.array([[0.95, 0.40, 0.70, np.inf, 5.0]], dtype=np.float32)
    count = np.array([3.0], dtype=np.float32)
    by = {"b": boxes, "c": classes, "s": scores, "n": count}
    return [by[k] for k in order]


TFLITE_NAMES = ("TFLite_Detection_PostProcess", "TFLite_Detection_PostProcess:1",
                "TFLite_Detection_PostProcess:2", "TFLite_Detection_PostProcess:3")
GOLDEN_DETECTIONS = [
    {"index": 1, "label": "square", "score": 0.95,
     "box": {"ymin": 0.1, "xmin": 0.2, "ymax": 0.5, "xmax": 0.6}},
    {"index": 2, "label": "triangle", "score": 0.7,
     "box": {"ymin": 0.5, "xmin": 0.5, "ymax": 1.0, "xmax": 0.9}},  # clipped to the frame
]


def test_detection_golden() -> None:
    result = detection(det_outputs(), det_specs(TFLITE_NAMES), SHAPES, score_threshold=0.5)
    assert result == {"count": 2, "detections": GOLDEN_DETECTIONS}
    json.dumps(result, allow_nan=False)  # a publishable payload: no NaN or inf leaks


@pytest.mark.parametrize("order", ["scbn", "bscn", "ncsb", "nsbc"])
def test_detection_finds_outputs_by_shape_and_values_not_order(order: str) -> None:
    names = ("StatefulPartitionedCall:0", "StatefulPartitionedCall:1",
             "StatefulPartitionedCall:2", "StatefulPartitionedCall:3")
    result = detection(det_outputs(order), det_specs(names, order), SHAPES, 0.5)
    assert result["detections"] == GOLDEN_DETECTIONS


def test_detection_trusts_names_that_say_what_they_hold() -> None:
    names = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
    layout = DetectionLayout.of(det_specs(names, "bscn"))
    assert layout == DetectionLayout(boxes=0, classes=2, scores=1, count=3, by_name=True)
    result = detection(det_outputs("bscn"), det_specs(names, "bscn"), SHAPES, 0.5)
    assert result["detections"] == GOLDEN_DETECTIONS


def test_detection_threshold_and_max_detections() -> None:
    specs, outputs = det_specs(TFLITE_NAMES), det_outputs()
    assert detection(outputs, specs, SHAPES, 0.3)["count"] == 3
    best = detection(outputs, specs, SHAPES, 0.3, max_detections=1)
    assert best["detections"] == GOLDEN_DETECTIONS[:1]
    assert detection(outputs, specs, SHAPES, 0.99) == {"count": 0, "detections": []}


@pytest.mark.parametrize("count", [0.0, -1.0, np.nan, 1e9])
def test_detection_survives_any_count(count: float) -> None:
    outputs = det_outputs()
    outputs[3] = np.array([count], dtype=np.float32)
    result = detection(outputs, det_specs(TFLITE_NAMES), SHAPES, 0.0)
    assert result["count"] == (3 if count == 1e9 else 0)  # at most the rows there are
    json.dumps(result, allow_nan=False)


def test_detection_boxes_map_back_through_the_letterbox() -> None:
    # A 64x48 frame letterboxed into a square input: content in rows 0.125 .. 0.875.
    geometry = Geometry(48, 64, 0.125, 0.0, 0.75, 1.0)
    outputs = det_outputs()
    outputs[0][0, :3] = [[0.125, 0.0, 0.875, 0.5], [0.0, 0.0, 0.1, 1.0],
                         [0.5, 0.25, 0.6875, 0.75]]
    result = detection(outputs, det_specs(TFLITE_NAMES), SHAPES, 0.3, geometry=geometry)
    boxes = [d["box"] for d in result["detections"]]
    assert boxes == [
        {"ymin": 0.0, "xmin": 0.0, "ymax": 1.0, "xmax": 0.5},
        {"ymin": 0.5, "xmin": 0.25, "ymax": 0.75, "xmax": 0.75},
    ]  # the box that lay in the top bar is gone


def test_unknown_class_ids_are_reported_as_numbers() -> None:
    result = detection(det_outputs(), det_specs(TFLITE_NAMES), ("circle",), 0.5)
    assert [d["label"] for d in result["detections"]] == ["1", "2"]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (det_specs(TFLITE_NAMES)[:3], "the model has 3"),
        ([TensorSpec("x", i, (1, N), np.dtype(np.float32), 0.0, 0) for i in range(4)],
         "one \\[1, N, 4\\] boxes output"),
        ([*det_specs(TFLITE_NAMES)[:3], TensorSpec("n", 3, (1, 2), np.dtype(np.float32),
                                                   0.0, 0)], "one count output"),
    ],
)
def test_detection_refuses_models_without_the_four_outputs(
    specs: list[TensorSpec], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        postprocessor_for("detection", specs, SHAPES, 3)


def test_detection_through_postprocessor_for_with_geometry() -> None:
    post = postprocessor_for("detection", det_specs(TFLITE_NAMES), SHAPES, 3,
                             options=PostOptions(score_threshold=0.9))
    stretched = post(det_outputs())
    assert stretched["detections"] == GOLDEN_DETECTIONS[:1]
    shifted = post(det_outputs(), geometry=Geometry(10, 10, 0.1, 0.0, 0.8, 1.0))
    assert shifted["detections"][0]["box"]["ymin"] == 0.0


def test_detection_on_the_bundled_shapes_model() -> None:
    """The real .tflite file, end to end through the post-processor: boxes where the
    hold-out scenes have their shapes."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tflite_runtime.interpreter import Interpreter
    models = Path(__file__).parent.parent / "models"
    interpreter = Interpreter(model_path=str(models / "shapes_detect_int8.tflite"))
    interpreter.allocate_tensors()
    specs = [TensorSpec.from_detail(d) for d in interpreter.get_output_details()]
    labels = (models / "shapes.labels").read_text().split()
    post = postprocessor_for("detection", specs, labels, 3)
    hold = np.load(models / "shapes_holdout.npz")
    found = matched = 0
    for i in range(40):
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"],
                               hold["images"][i : i + 1])
        interpreter.invoke()
        result = post([interpreter.get_tensor(s.index) for s in specs])
        found += result["count"]
        for det in result["detections"]:
            box = np.array([det["box"][k] for k in ("ymin", "xmin", "ymax", "xmax")])
            truth = hold["boxes"][i][: hold["counts"][i]]
            best = int(np.argmin(np.abs(truth - box).sum(1)))
            matched += (np.abs(truth[best] - box).max() < 0.1
                        and labels[hold["classes"][i][best]] == det["label"])
    assert found >= 0.9 * int(hold["counts"][:40].sum())
    assert matched >= 0.95 * found


# --- anomaly ----------------------------------------------------------------------------

ONE_U8 = TensorSpec("error", 3, (1, 1), np.dtype(np.uint8), 0.5, 10)


def test_anomaly_score_sources() -> None:
    output = AnomalyOptions("output", threshold=1.0)
    assert anomaly_score([np.array([[14]], dtype=np.uint8)], [ONE_U8], output) == 2.0
    normal = AnomalyOptions("class", threshold=0.5, direction="below", class_index=1)
    assert anomaly_score([u8(0, 192, 64, 0, 0)], [SCORES_U8], normal) == 0.75
    reconstruction = AnomalyOptions("reconstruction", threshold=0.1)
    x = np.array([[0.0, 1.0, 2.0, 3.0]], dtype=np.float32)
    y = np.array([[0.0, 1.0, 2.0, 5.0]], dtype=np.float32)
    spec = TensorSpec("x", 0, (1, 4), np.dtype(np.float32), 0.0, 0)
    assert anomaly_score([y], [spec], reconstruction, model_input=x, input_spec=spec) == 1.0


def test_anomaly_score_must_be_finite() -> None:
    spec = TensorSpec("x", 0, (1, 1), np.dtype(np.float32), 0.0, 0)
    with pytest.raises(ModelExecutionError, match="not a finite number"):
        anomaly_score([np.array([[np.nan]], dtype=np.float32)], [spec],
                      AnomalyOptions("output", threshold=1.0))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (AnomalyOptions("output", 1.0), "single-value output, not 5"),
        (AnomalyOptions("class", 1.0, class_index=5), "class 5 is not among 5 outputs"),
        (AnomalyOptions("reconstruction", 1.0), "an output the size of the input"),
    ],
)
def test_anomaly_models_are_checked_at_start(options: AnomalyOptions, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        postprocessor_for("anomaly", [SCORES_U8], LABELS, 3,
                          options=PostOptions(anomaly=options))


def test_anomaly_needs_its_section() -> None:
    with pytest.raises(ValueError, match="needs an anomaly section"):
        postprocessor_for("anomaly", [SCORES_U8], LABELS, 3)


def test_anomaly_options_from_config_find_the_label() -> None:
    config = ModelConfig(path=Path("m.tflite"), postprocess="anomaly",
                         anomaly={"source": "class", "label": "owl", "threshold": 0.5,
                                  "direction": "below", "hysteresis": 0.1})
    options = PostOptions.from_config(config, LABELS)
    assert options.anomaly == AnomalyOptions("class", 0.5, "below", 0.1, 3, 1000)
    post = postprocessor_for("anomaly", [SCORES_U8], LABELS, 3, options=options)
    assert post([u8(0, 0, 0, 64, 0)]) == {"score": 0.25}
    bad = config.model_copy(update={"anomaly": config.anomaly.model_copy(  # type: ignore[union-attr]
        update={"label": "yak"})})
    with pytest.raises(ValueError, match="'yak' is not among the labels"):
        PostOptions.from_config(bad, LABELS)


def states(tracker: AnomalyTracker, scores: list[float], topic: str = "t") -> list[str]:
    """The state after each score, with '!' where it changed (an event is published)."""
    out = []
    for i, score in enumerate(scores):
        r = tracker.observe(topic, score, at=float(i))
        out.append(("!" if r["changed"] else "") + r["state"][0])
    return out


def test_anomaly_events_only_on_state_changes() -> None:
    tracker = AnomalyTracker(AnomalyOptions("output", threshold=0.5))
    assert states(tracker, [0.1, 0.2, 0.6, 0.9, 0.5, 0.4, 0.7]) == [
        "n", "n", "!a", "a", "!n", "n", "!a"
    ]


def test_anomaly_event_payload() -> None:
    tracker = AnomalyTracker(AnomalyOptions("output", threshold=0.5))
    assert tracker.observe("t", 0.8, at=1.0) == {
        "score": 0.8, "threshold": 0.5, "state": "anomalous", "changed": True,
        "previous": "normal", "first": True,
    }
    assert tracker.observe("t", 0.9, at=2.0) == {
        "score": 0.9, "threshold": 0.5, "state": "anomalous", "changed": False,
    }


def test_anomaly_hysteresis_stops_flapping() -> None:
    tracker = AnomalyTracker(AnomalyOptions("output", threshold=0.5, hysteresis=0.2))
    assert states(tracker, [0.6, 0.45, 0.55, 0.31, 0.3, 0.45, 0.51]) == [
        "!a", "a", "a", "a", "!n", "n", "!a"
    ]


def test_anomaly_below_threshold_direction() -> None:
    # p(normal) falling below 0.5 is the anomaly; back once it is 0.6 or more.
    tracker = AnomalyTracker(AnomalyOptions("class", 0.5, "below", hysteresis=0.1))
    assert states(tracker, [0.9, 0.4, 0.55, 0.6]) == ["n", "!a", "a", "!n"]


def test_anomaly_state_is_per_topic() -> None:
    tracker = AnomalyTracker(AnomalyOptions("output", threshold=0.5))
    assert states(tracker, [0.9, 0.9], topic="pump1") == ["!a", "a"]
    assert states(tracker, [0.1, 0.9], topic="pump2") == ["n", "!a"]


def test_stale_results_move_no_state() -> None:
    tracker = AnomalyTracker(AnomalyOptions("output", threshold=0.5))
    tracker.observe("t", 0.9, at=10.0)
    late = tracker.observe("t", 0.1, at=9.0)  # finished after a newer message
    assert late["stale"] is True and late["state"] == "anomalous" and not late["changed"]
    assert tracker.observe("t", 0.9, at=11.0)["changed"] is False


def test_anomaly_tracker_forgets_the_least_recent_topic() -> None:
    tracker = AnomalyTracker(AnomalyOptions("output", threshold=0.5, max_topics=2))
    for topic in ("a", "b", "c"):
        tracker.observe(topic, 0.9, at=1.0)
    assert tracker.observe("a", 0.9, at=2.0)["changed"] is True  # a was forgotten
    assert tracker.observe("c", 0.9, at=2.0)["changed"] is False


@given(st.sampled_from(["uint8", "int8", "float32"]), st.integers(1, 2000), st.integers(1, 8),
       st.integers(0, 2**32 - 1))
def test_classification_orders_as_a_stable_sort_of_the_real_scores(
    dtype: str, classes: int, top_k: int, seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        values = rng.choice([0.0, 0.25, 0.5, 1.0], classes).astype(np.float32)  # with ties
        spec = TensorSpec("out", 0, (1, classes), np.dtype(np.float32), 0.0, 0)
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max + 1, classes, dtype=dtype)
        zero = int(rng.integers(info.min, info.max + 1))
        spec = TensorSpec("out", 0, (1, classes), np.dtype(dtype), 0.0039, zero)
    real = dequantize(values, spec)
    want = np.argsort(-real, kind="stable")[:top_k]  # the definition: ties to the lower index
    got = classification([values.reshape(1, -1)], [spec], (), top_k)
    assert [c["index"] for c in got["top_k"]] == want.tolist()
    assert [c["score"] for c in got["top_k"]] == [round(float(real[i]), 6) for i in want]
