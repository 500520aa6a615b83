"""edged.postprocess: output tensors -> results (classification, raw)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from edged.postprocess import classification, dequantize, postprocessor_for, raw
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
