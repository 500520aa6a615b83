"""YOLO heads: v5 with objectness, v8/v11 without, end-to-end (NMS inside the model), the
Edge TPU split head (class logits + a 64-bin box distribution), and YOLO-pose.

The layout is told from the output shapes (``yolo.layout: auto``) or set. Scores are
compared while still quantized, so only the rows that can pass are dequantized; NMS runs
per class (``yolo.iou_threshold``); boxes come out as fractions of the frame as sent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edged.config.postprocess import YoloConfig
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
from edged.postprocess.boxes import center_to_corners, finite_rows, frame_detections, nms
from edged.postprocess.names import keypoint_names
from edged.runtime.tensors import TensorSpec

Layout = Literal["v5", "v8", "end2end", "split", "pose"]
MAX_CLASS = 2**31  # end2end: a class value from here on is no class index


@dataclass(frozen=True)
class Plan:
    """How one model's outputs are read: the layout, and for single-tensor layouts whether
    features run along the last axis (``[1, N, F]``) or the middle one (``[1, F, N]``)."""

    layout: Layout
    features_last: bool
    classes: int
    anchors: int
    why: str
    box_output: int = 0
    class_output: int = 0


def _single(spec: TensorSpec, config: YoloConfig, labels: Sequence[str]) -> Plan:
    if len(spec.shape) != 3 or spec.shape[0] != 1:
        raise ValueError(f"a YOLO head is one [1, N, F] or [1, F, N] tensor, not "
                         f"{shape_text(spec.shape)}")
    a, b = spec.shape[1], spec.shape[2]
    layout = config.layout
    if layout == "auto":
        layout, reason = _guess(a, b, labels, config)
    else:
        reason = "set by yolo.layout"
    if layout == "end2end":
        if b != 6:
            raise ValueError(f"end2end expects [1, K, 6] (x1, y1, x2, y2, score, class), "
                             f"not {shape_text(spec.shape)}")
        return Plan("end2end", True, 0, a, f"end2end [1, {a}, 6], {reason}")
    # Features are fewer than boxes; a square output is taken as each layout exports it.
    features_last = b < a if a != b else layout == "v5"
    f, n = (b, a) if features_last else (a, b)
    base = 5 if layout in ("v5", "pose") else 4
    classes = 1 if layout == "pose" else f - base
    if layout == "pose" and f != 5 + 3 * config.keypoints:
        raise ValueError(f"pose expects 5 + 3 x {config.keypoints} = "
                         f"{5 + 3 * config.keypoints} features per box, the output has {f}")
    if classes < 1:
        raise ValueError(f"{layout} expects {base} box values plus class scores per box; "
                         f"{shape_text(spec.shape)} has {f} features")
    if labels and layout != "pose" and len(labels) != classes:
        raise ValueError(f"{len(labels)} labels for {classes} classes of {layout} "
                         f"{shape_text(spec.shape)}")
    order = "[1, N, F]" if features_last else "[1, F, N]"
    return Plan(layout, features_last, classes, n,
                f"{layout} {shape_text(spec.shape)} read as {order}: {n} boxes, "
                f"{classes} classes ({reason})")


def _guess(a: int, b: int, labels: Sequence[str], config: YoloConfig) -> tuple[Layout, str]:
    if b == 6 and a <= 1000:
        return "end2end", "6 values per row and few rows: NMS inside the model"
    f = min(a, b)
    if labels:
        if f == 4 + len(labels):
            return "v8", f"4 + {len(labels)} labels features"
        if f == 5 + len(labels):
            return "v5", f"5 + {len(labels)} labels features (objectness)"
    if f == 5 + 3 * config.keypoints and len(labels) <= 1:
        return "pose", f"5 + 3 x {config.keypoints} keypoints features"
    if b < a:
        return "v5", "features along the last axis, as YOLOv5 exports them"
    return "v8", "features along the middle axis, as YOLOv8/v11 export them"


def _split(specs: Sequence[TensorSpec], config: YoloConfig, labels: Sequence[str],
           input_hw: tuple[int, int]) -> Plan:
    bins = 4 * config.reg_max
    shapes = [s.shape for s in specs]
    if any(len(s) != 3 or s[0] != 1 for s in shapes) or shapes[0][1] != shapes[1][1]:
        raise ValueError(f"split expects class logits [1, N, classes] and a box "
                         f"distribution [1, N, {bins}], not {', '.join(map(shape_text, shapes))}")
    boxes = [i for i, s in enumerate(shapes) if s[2] == bins]
    if len(boxes) == 2:  # 64 classes too: a name that says "box" decides, else the second
        boxes = [i for i in (0, 1) if "box" in specs[i].name.lower()] or [1]
    if not boxes:
        got = ", ".join(map(shape_text, shapes))
        raise ValueError(f"split expects one output of {bins} values per box "
                         f"(4 sides x {config.reg_max} bins); got {got}")
    box, cls = boxes[-1], 1 - boxes[-1]
    n = shapes[0][1]
    h, w = input_hw
    cells = sum(math.ceil(h / s) * math.ceil(w / s) for s in config.strides)
    if cells != n:
        raise ValueError(f"split: strides {config.strides} on a {h}x{w} input give {cells} "
                         f"anchors, the outputs have {n}")
    classes = shapes[cls][2]
    return Plan("split", True, classes, n,
                f"split head: class logits {shape_text(shapes[cls])}, box distribution "
                f"{shape_text(shapes[box])}, strides {config.strides}", box, cls)


def plan_for(specs: Sequence[TensorSpec], config: YoloConfig, labels: Sequence[str],
             input_hw: tuple[int, int]) -> Plan:
    """Which layout the outputs have. Raises ValueError saying what was expected."""
    if config.layout == "split" or (config.layout == "auto" and len(specs) == 2):
        if len(specs) != 2:
            raise ValueError(f"split expects 2 outputs, the model has {len(specs)}")
        return _split(specs, config, labels, input_hw)
    if len(specs) != 1:
        raise ValueError(f"yolo expects one output tensor (or two for the split head), "
                         f"the model has {len(specs)}")
    return _single(specs[0], config, labels)


def split_anchors(input_hw: tuple[int, int], strides: Sequence[int]) -> tuple[Array, Array]:
    """Anchor centres (x, y) in input pixels and their strides, finest grid first, rows
    then columns within each grid (Ultralytics' make_anchors with offset 0.5)."""
    centres, steps = [], []
    for s in strides:
        gy, gx = math.ceil(input_hw[0] / s), math.ceil(input_hw[1] / s)
        y, x = np.mgrid[0:gy, 0:gx]
        centres.append(np.stack([x.ravel() + 0.5, y.ravel() + 0.5], axis=1) * s)
        steps.append(np.full(gy * gx, float(s)))
    return np.concatenate(centres), np.concatenate(steps)


class YoloDecoder:
    """One model's YOLO head bound to its settings."""

    def __init__(self, context: Context) -> None:
        config = context.config
        self.config = config.yolo if config is not None else YoloConfig()
        self.specs = context.specs
        self.labels = context.labels
        self.input_hw = context.input_hw()
        self.plan = plan_for(self.specs, self.config, self.labels, self.input_hw)
        o = context.options
        self.score_threshold = o.score_threshold
        self.max_detections = o.max_detections
        self.points: tuple[str, ...] = ()
        if self.plan.layout == "pose":
            self.points = keypoint_names(config.keypoint_labels if config else None,
                                         self.config.keypoints)
        if self.plan.layout == "split":
            self.anchor_xy, self.anchor_stride = split_anchors(self.input_hw,
                                                               self.config.strides)

    def __call__(self, outputs: Sequence[Array], /, *, geometry: Geometry | None = None,
                 **_: Any) -> Result:
        layout = self.plan.layout
        if layout == "split":
            boxes, scores, classes, points = self._split(outputs)
        elif layout == "end2end":
            boxes, scores, classes, points = self._end2end(outputs[0])
        else:
            boxes, scores, classes, points = self._dense(outputs[0])
        if layout != "end2end" and boxes.shape[0]:
            keep = nms(boxes, scores, self.config.iou_threshold,
                       None if self.config.class_agnostic else classes, self.max_detections)
            boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
            points = points[keep] if points is not None else None
        found = frame_detections(boxes, scores, classes, self.labels, geometry,
                                 points=points, point_names=self.points,
                                 max_detections=self.max_detections)
        return {"count": len(found), "detections": found}

    # -- layouts ------------------------------------------------------------------------

    def _rows(self, output: Array) -> Array:
        """The output as [N, F] (a view: nothing is copied or dequantized yet)."""
        rows = np.asarray(output).reshape(output.shape[-2:])
        return rows if self.plan.features_last else rows.T

    def _dense(self, output: Array) -> tuple[Array, Array, Array, Array | None]:
        spec, layout = self.specs[0], self.plan.layout
        rows = self._rows(output)
        gate = quantized_threshold(self.score_threshold, spec)
        if layout == "v5":
            # Objectness first (YOLOv5's own order): a box the model does not believe in
            # is dropped before its class scores are read.
            candidates = np.flatnonzero(rows[:, 4] >= gate)
            candidates = self._best_v5(candidates, rows)
        else:
            candidates = np.flatnonzero(self._best_scores(output) >= gate)
            candidates = self._best(candidates, rows, 4)
        real = dequantize(np.ascontiguousarray(rows[candidates]), spec)
        points = None
        if layout == "v5":
            class_scores = real[:, 5:] * real[:, 4:5]
        elif layout == "pose":
            class_scores = real[:, 4:5]
            points = real[:, 5:].reshape(len(real), self.config.keypoints, 3)
        else:
            class_scores = real[:, 4:]
        classes = np.argmax(class_scores, axis=1)
        scores = class_scores[np.arange(len(real)), classes]
        # A float model's NaN or infinity (in a score or a box) places nothing.
        passed = (scores >= self.score_threshold) & np.isfinite(scores) & \
            finite_rows(real[:, :4])
        pixels = self._pixels(real[passed, :4])
        boxes = self._corners(real[passed, :4], "center", pixels)
        if points is not None:
            points = self._points(points[passed], pixels)
        return boxes, scores[passed], classes[passed], points

    def _best_scores(self, output: Array) -> Array:
        """Each box's best class score, raw. Reduced along the tensor's own memory order:
        over a [1, F, N] output that is ten times quicker than over its transposed view."""
        block = np.asarray(output).reshape(output.shape[-2:])
        classes = slice(4, 4 + self.plan.classes)
        if self.plan.features_last:
            best: Array = block[:, classes].max(axis=1)
        else:
            best = block[classes].max(axis=0)
        return best

    def _best(self, candidates: Array, rows: Array, column: int) -> Array:
        """At most ``max_candidates`` of the candidates, the best scoring ones."""
        limit = self.config.max_candidates
        if candidates.size <= limit:
            return candidates
        width = 1 if self.plan.layout in ("v5", "pose") else self.plan.classes
        best = rows[candidates, column:column + width].max(axis=1)
        return candidates[np.argsort(-best.astype(np.float64), kind="stable")[:limit]]

    def _best_v5(self, candidates: Array, rows: Array) -> Array:
        """v5: at most ``max_candidates`` of the boxes whose objectness passed, ranked by
        the score they are judged by (objectness x best class, from two dequantized
        columns), so the cap never drops a box for one that scores less."""
        limit = self.config.max_candidates
        if candidates.size <= limit:
            return candidates
        spec = self.specs[0]
        objectness = dequantize(rows[candidates, 4], spec)
        best_class = dequantize(rows[candidates, 5:5 + self.plan.classes].max(axis=1), spec)
        score = objectness * best_class
        score = np.where(np.isfinite(score), score, -np.inf)
        return candidates[np.argsort(-score, kind="stable")[:limit]]

    def _end2end(self, output: Array) -> tuple[Array, Array, Array, None]:
        spec = self.specs[0]
        rows = self._rows(output)
        candidates = np.flatnonzero(rows[:, 4] >= quantized_threshold(self.score_threshold,
                                                                        spec))
        real = dequantize(rows[candidates], spec)
        # A row that is no number anywhere, or whose class is not a class index, is no
        # detection (exporters pad with such rows).
        real = real[np.isfinite(real).all(axis=1) & (real[:, 4] >= self.score_threshold)
                    & (real[:, 5] > -0.5) & (real[:, 5] < MAX_CLASS)]
        order = np.argsort(-real[:, 4], kind="stable")
        real = real[order]
        return (self._corners(real[:, :4], "corners", self._pixels(real[:, :4])), real[:, 4],
                np.rint(real[:, 5]).astype(np.int64), None)

    def _split(self, outputs: Sequence[Array]) -> tuple[Array, Array, Array, None]:
        plan = self.plan
        cls_spec, box_spec = self.specs[plan.class_output], self.specs[plan.box_output]
        logits = np.asarray(outputs[plan.class_output]).reshape(plan.anchors, plan.classes)
        t = min(max(self.score_threshold, 1e-6), 1 - 1e-6)
        gate = quantized_threshold(math.log(t / (1 - t)), cls_spec)  # sigmoid^-1, still int
        candidates = self._best(np.flatnonzero(logits.max(axis=1) >= gate), logits, 0)
        scores_all = sigmoid(dequantize(logits[candidates], cls_spec))
        classes = np.argmax(scores_all, axis=1)
        scores = scores_all[np.arange(len(candidates)), classes]
        dist = dequantize(np.asarray(outputs[plan.box_output]).reshape(plan.anchors, -1)
                          [candidates], box_spec).reshape(-1, 4, self.config.reg_max)
        placed = finite_rows(dist)  # a float model's NaN or infinity places nothing
        if not placed.all():
            dist = np.where(placed[:, None, None], dist, 0.0)
        dist = np.exp(dist - dist.max(axis=2, keepdims=True))  # softmax over the bins
        sides = (dist / dist.sum(axis=2, keepdims=True)) @ np.arange(self.config.reg_max)
        stride = self.anchor_stride[candidates][:, None]
        centre = self.anchor_xy[candidates]
        x1y1 = centre - sides[:, :2] * stride  # left, top
        x2y2 = centre + sides[:, 2:] * stride  # right, bottom
        h, w = self.input_hw
        boxes = np.stack([x1y1[:, 1] / h, x1y1[:, 0] / w, x2y2[:, 1] / h, x2y2[:, 0] / w],
                         axis=1)
        passed = (scores >= self.score_threshold) & placed
        return boxes[passed], scores[passed], classes[passed], None

    # -- units --------------------------------------------------------------------------

    def _pixels(self, values: Array) -> bool:
        if self.config.boxes != "auto":
            return self.config.boxes == "pixels"
        return bool(values.size and np.nanmax(np.abs(values)) > 2.0)

    def _corners(self, xy: Array, default: Literal["center", "corners"], pixels: bool
                 ) -> Array:
        """[N, 4] box values as the model gives them -> (ymin, xmin, ymax, xmax) fractions
        of the model input."""
        v = xy.astype(np.float64)
        if pixels:
            h, w = self.input_hw
            v = v / np.array([w, h, w, h], dtype=np.float64)
        form = default if self.config.box_format == "auto" else self.config.box_format
        if form == "center":
            return center_to_corners(v[:, 0], v[:, 1], v[:, 2], v[:, 3])
        return v[:, [1, 0, 3, 2]]

    def _points(self, points: Array, pixels: bool) -> Array:
        """[N, K, 3] (x, y, visibility) -> (y, x, visibility) in input fractions."""
        out = points[..., [1, 0, 2]].astype(np.float64)
        if pixels:
            out[..., 0] /= self.input_hw[0]
            out[..., 1] /= self.input_hw[1]
        return out


def _bind(context: Context) -> Bound:
    decoder = YoloDecoder(context)
    return Bound(decoder, decoder.plan.why)


DECODER = Kind("yolo", "YOLO v5/v8/v11, end-to-end, Edge TPU split head and pose", _bind,
               uses_frame=True, entity=entity.DETECTIONS)
