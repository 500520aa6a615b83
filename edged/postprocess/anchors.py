"""Anchor-based SSD heads without the post-process op (MediaPipe's BlazeFace and palm
detectors): anchors from a few parameters, box and keypoint regression against them,
sigmoid scores with clipping, weighted (MediaPipe) or plain NMS.

The model has two outputs: regressors ``[1, N, 4 + 2 x keypoints]`` (centre x, centre y,
width, height, then x, y per keypoint, in input pixels relative to the anchor) and scores
``[1, N, classes]`` (logits). Anchors have a fixed size of 1 (MediaPipe's
``fixed_anchor_size``), so only their centres matter: each grid of stride ``s`` has
``ceil(H / s) x ceil(W / s)`` cells with ``anchors_per_cell`` anchors at
``((x + offset) / grid_w, (y + offset) / grid_h)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from edged.config.postprocess import AnchorsConfig
from edged.image import Geometry
from edged.postprocess import entity
from edged.postprocess.base import (
    Array,
    Bound,
    Context,
    Kind,
    Result,
    dequantize,
    quantized_threshold,
    shape_text,
    sigmoid,
)
from edged.postprocess.boxes import (
    center_to_corners,
    finite_rows,
    frame_detections,
    nms,
    top_candidates,
    weighted_nms,
)
from edged.postprocess.names import keypoint_names


def anchor_centres(input_hw: tuple[int, int], strides: Sequence[int],
                   per_cell: Sequence[int], offset: float) -> Array:
    """[N, 2] anchor centres (x, y) in input fractions, in the model's order: grid by grid,
    row by row, cell by cell, the cell's anchors together."""
    h, w = input_hw
    out = []
    for stride, count in zip(strides, per_cell, strict=True):
        gh, gw = math.ceil(h / stride), math.ceil(w / stride)
        y, x = np.mgrid[0:gh, 0:gw]
        centres = np.stack([(x.ravel() + offset) / gw, (y.ravel() + offset) / gh], axis=1)
        out.append(np.repeat(centres, count, axis=0))
    return np.concatenate(out)


class AnchorDecoder:
    def __init__(self, context: Context) -> None:
        config = context.config
        if config is None or config.anchors is None:
            raise ValueError("postprocess anchors needs an anchors section (strides, "
                             "anchors_per_cell)")
        self.config: AnchorsConfig = config.anchors
        self.labels = context.labels
        self.input_hw = context.input_hw()
        self.anchors = anchor_centres(self.input_hw, self.config.strides,
                                      self.config.anchors_per_cell, self.config.offset)
        self.regressors, self.scores, self.why = self._outputs(context)
        self.specs = context.specs
        self.names = keypoint_names(config.keypoint_labels, self.config.keypoints) \
            if self.config.keypoints else ()
        self.score_threshold = context.options.score_threshold
        self.max_detections = context.options.max_detections
        h, w = self.input_hw
        scale = self.config.box_scale
        self.scale = np.array([scale or w, scale or h], dtype=np.float64)

    def _outputs(self, context: Context) -> tuple[int, int, str]:
        specs, n = context.specs, len(self.anchors)
        coords = 4 + 2 * self.config.keypoints
        expected = (f"regressors [1, {n}, {coords}] (box + {self.config.keypoints} "
                    f"keypoints) and scores [1, {n}, classes]")
        if len(specs) != 2:
            raise ValueError(f"anchors expects 2 outputs, {expected}; the model has "
                             f"{len(specs)}")
        shapes = [s.shape for s in specs]
        if any(len(s) != 3 or s[1] != n for s in shapes):
            raise ValueError(f"anchors: strides {self.config.strides} x anchors_per_cell "
                             f"{self.config.anchors_per_cell} on a {self.input_hw[0]}x"
                             f"{self.input_hw[1]} input give {n} anchors; expected "
                             f"{expected}, got {', '.join(map(shape_text, shapes))}")
        found = [i for i, s in enumerate(shapes) if s[2] == coords]
        if not found:
            raise ValueError(f"anchors expects {expected}; got "
                             f"{', '.join(map(shape_text, shapes))}")
        reg = found[-1]
        return reg, 1 - reg, (f"anchor head: {n} anchors from strides {self.config.strides}, "
                              f"regressors {shape_text(shapes[reg])}, scores "
                              f"{shape_text(shapes[1 - reg])}, {self.config.nms} NMS")

    def __call__(self, outputs: Sequence[Array], /, *, geometry: Geometry | None = None,
                 **_: Any) -> Result:
        spec_s, spec_r = self.specs[self.scores], self.specs[self.regressors]
        n = len(self.anchors)
        logits = np.asarray(outputs[self.scores]).reshape(n, -1)
        clip = self.config.score_clip
        t = min(max(self.score_threshold, 1e-6), 1 - 1e-6)
        gate = quantized_threshold(min(max(math.log(t / (1 - t)), -clip), clip), spec_s)
        rows = np.flatnonzero(logits.max(axis=1) >= gate)
        all_scores = sigmoid(np.clip(dequantize(logits[rows], spec_s), -clip, clip))
        classes = np.argmax(all_scores, axis=1)
        scores = all_scores[np.arange(len(rows)), classes]
        keep = scores >= self.score_threshold
        rows, classes, scores = rows[keep], classes[keep], scores[keep]
        best = top_candidates(scores, self.config.max_candidates)
        rows, classes, scores = rows[best], classes[best], scores[best]
        raw = dequantize(np.asarray(outputs[self.regressors]).reshape(n, -1)[rows], spec_r)
        placed = finite_rows(raw)  # a float model's NaN or infinity places nothing
        if not placed.all():
            rows, classes, scores, raw = rows[placed], classes[placed], scores[placed], \
                raw[placed]
        centre = self.anchors[rows]
        xy = raw[:, :2] / self.scale + centre
        wh = raw[:, 2:4] / self.scale
        boxes = center_to_corners(xy[:, 0], xy[:, 1], wh[:, 0], wh[:, 1])
        points = None
        if self.config.keypoints:
            # The count is given, not inferred: a frame without a candidate has 0 rows.
            kp = raw[:, 4:4 + 2 * self.config.keypoints].reshape(
                len(rows), self.config.keypoints, 2)
            kp = kp / self.scale + centre[:, None, :]
            points = kp[..., ::-1]  # (x, y) -> (y, x)
        boxes, scores, classes, points = self._suppress(boxes, scores, classes, points)
        found = frame_detections(boxes, scores, classes, self.labels, geometry,
                                 points=points, point_names=self.names,
                                 max_detections=self.max_detections)
        return {"count": len(found), "detections": found}

    def _suppress(self, boxes: Array, scores: Array, classes: Array, points: Array | None
                  ) -> tuple[Array, Array, Array, Array | None]:
        if self.config.nms == "plain":
            keep = nms(boxes, scores, self.config.iou_threshold, classes)
            return (boxes[keep], scores[keep], classes[keep],
                    points[keep] if points is not None else None)
        out_b, out_s, out_c, out_p = [], [], [], []
        for k in np.unique(classes):  # weighted NMS within each class
            mine = classes == k
            b, s, p = weighted_nms(boxes[mine], scores[mine], self.config.iou_threshold,
                                   points[mine] if points is not None else None)
            out_b.append(b)
            out_s.append(s)
            out_c.append(np.full(len(s), k))
            if p is not None:
                out_p.append(p)
        if not out_s:
            return boxes, scores, classes, points
        s = np.concatenate(out_s)
        order = np.argsort(-s, kind="stable")
        merged_p = np.concatenate(out_p)[order] if out_p else None
        return np.concatenate(out_b)[order], s[order], np.concatenate(out_c)[order], merged_p


def _bind(context: Context) -> Bound:
    decoder = AnchorDecoder(context)
    return Bound(decoder, decoder.why)


DECODER = Kind("anchors", "SSD anchor heads without the post-process op (BlazeFace, palm)",
               _bind, uses_frame=True, entity=entity.DETECTIONS)
