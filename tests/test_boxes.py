"""edged.postprocess.boxes: NMS checked against its definition (properties over random
boxes), and the overlap measure by hand."""

from __future__ import annotations

from typing import Any
from unittest import mock

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from edged.postprocess import boxes as boxes_module
from edged.postprocess.boxes import iou, nms

Array = np.ndarray[Any, Any]


def test_iou_golden() -> None:
    box = np.array([0.0, 0.0, 2.0, 2.0])
    others = np.array([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0],
                       [0.5, 0.5, 0.5, 0.5]])
    np.testing.assert_allclose(iou(box, others), [1 / 7, 0.0, 1.0, 0.0])


def pair_iou(a: Array, b: Array) -> float:
    return float(iou(a, b[None])[0])


@st.composite
def scenes(draw: Any) -> tuple[Array, Array, Array, float]:
    n = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 0.8, (n, 2))
    size = rng.uniform(0.01, 0.3, (n, 2))
    boxes = np.concatenate([corner, corner + size], axis=1)
    scores = rng.permutation(n).astype(np.float64) / n  # distinct: the order is defined
    classes = rng.integers(0, 3, n)
    return boxes, scores, classes, draw(st.sampled_from([0.1, 0.3, 0.45, 0.7]))


@given(scenes(), st.booleans())
def test_nms_keeps_exactly_what_its_definition_keeps(
    scene: tuple[Array, Array, Array, float], by_rows: bool
) -> None:
    boxes, scores, classes, threshold = scene
    # Both ways of computing it: all overlaps at once (few boxes), one row per kept box.
    with mock.patch.object(boxes_module, "_MATRIX_NMS", 0 if by_rows else 512):
        kept = [int(i) for i in nms(boxes, scores, threshold, classes)]
    assert kept == sorted(kept, key=lambda i: -scores[i])  # best first
    for a, i in enumerate(kept):  # no two kept boxes of a class overlap past the threshold
        for j in kept[a + 1:]:
            if classes[i] == classes[j]:
                assert pair_iou(boxes[i], boxes[j]) <= threshold
    for j in set(range(len(boxes))) - set(kept):  # each dropped box had a better one
        assert any(classes[i] == classes[j] and scores[i] > scores[j]
                   and pair_iou(boxes[i], boxes[j]) > threshold for i in kept)
