"""Boxes shared by the box decoders: overlap, non-maximum suppression (plain per class, and
MediaPipe's weighted kind), and results in the frame as it was sent.

Boxes here are corners ``[N, 4]`` = (ymin, xmin, ymax, xmax) in fractions of the model
input, the layout of TFLite_Detection_PostProcess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from edged.image import Geometry
from edged.postprocess.base import Array, box_dict, label_of, to_frame_points


def iou(box: Array, boxes: Array) -> Array:
    """Intersection over union of one box with each of ``boxes``."""
    ymin = np.maximum(box[0], boxes[:, 0])
    xmin = np.maximum(box[1], boxes[:, 1])
    ymax = np.minimum(box[2], boxes[:, 2])
    xmax = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ymax - ymin, 0, None) * np.clip(xmax - xmin, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    out: Array = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


def iou_matrix(boxes: Array) -> Array:
    """[N, N] intersection over union of every pair of boxes."""
    top = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.maximum(bottom - top, 0.0), axis=2)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = areas[:, None] + areas[None, :] - inter
    out: Array = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


# Up to this many candidates, NMS computes all overlaps at once ([N, N] floats: 2 MB);
# beyond, one row per kept box.
_MATRIX_NMS = 512
# Box values beyond this many input sizes say nothing more about a box that is far outside
# the frame anyway; clipped there, the classes' offsets in NMS stay exact in float64.
_FAR = 1e4


def top_candidates(scores: Array, limit: int) -> Array:
    """Indices of the ``limit`` best scores, best first (ties to the lower index): the
    candidates that enter NMS, so that a frame where every box passes costs a bounded
    time. Every index when there are no more than ``limit``."""
    if scores.shape[0] <= limit:
        return np.arange(scores.shape[0])
    order: Array = np.argsort(-scores.astype(np.float64), kind="stable")[:limit]
    return order


def finite_rows(*arrays: Array) -> Array:
    """[N] True where every value of row i of every array is a finite number: a box or
    keypoint a model gave as NaN or infinity cannot be placed, so it is no detection."""
    keep = np.ones(arrays[0].shape[0], dtype=bool)
    for values in arrays:
        keep &= np.isfinite(values).all(axis=tuple(range(1, values.ndim)))
    return keep


def nms(boxes: Array, scores: Array, iou_threshold: float, classes: Array | None = None,
        max_out: int | None = None) -> Array:
    """Indices of the boxes greedy NMS keeps, best first. With ``classes``, boxes suppress
    only boxes of their own class (each class is shifted to a space of its own, the
    trick torchvision's batched_nms uses)."""
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    work = np.clip(boxes, -_FAR, _FAR)
    if classes is not None:
        span = float(np.max(work) - np.min(work)) + 1.0
        work = work + (classes.astype(np.float64) * span)[:, None]
    order = np.argsort(-scores, kind="stable")
    limit = len(order) if max_out is None else max_out
    keep: list[int] = []
    if len(order) <= _MATRIX_NMS:
        overlaps = iou_matrix(work[order]) > iou_threshold
        suppressed = np.zeros(len(order), dtype=bool)
        for i in range(len(order)):
            if suppressed[i]:
                continue
            keep.append(int(order[i]))
            if len(keep) >= limit:
                break
            suppressed |= overlaps[i]
        return np.asarray(keep, dtype=np.int64)
    while order.size and len(keep) < limit:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[iou(work[best], work[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def weighted_nms(boxes: Array, scores: Array, iou_threshold: float,
                 points: Array | None = None) -> tuple[Array, Array, Array | None]:
    """MediaPipe's weighted NMS: the best box takes every box overlapping it by more than
    ``iou_threshold`` (itself included) and becomes their score-weighted mean, boxes and
    keypoints alike, keeping its own score. Returns boxes, scores, keypoints."""
    order = np.argsort(-scores, kind="stable")
    # Up to _MATRIX_NMS boxes, every overlap at once (rows in score order); beyond, a row
    # per cluster as it is taken.
    overlaps = (iou_matrix(boxes[order]) > iou_threshold
                if 0 < len(order) <= _MATRIX_NMS else None)
    left = np.arange(len(order))  # positions in ``order`` not yet taken by a cluster
    out_boxes, out_scores, out_points = [], [], []
    while left.size:
        first = int(left[0])
        best = int(order[first])
        if overlaps is not None:
            near = overlaps[first, left]
        else:
            near = iou(boxes[best], boxes[order[left]]) > iou_threshold
        near[0] = True  # itself, even when degenerate (zero or negative size): IoU 0
        members = order[left[near]]
        total = float(np.sum(scores[members]))
        # Scores of 0 (a logit clipped at -score_clip with score_threshold 0): equal weights.
        weights = (scores[members] / total if total > 0 else
                   np.full(len(members), 1.0 / len(members)))
        out_boxes.append(weights @ boxes[members])
        out_scores.append(scores[best])
        if points is not None:
            out_points.append(np.tensordot(weights, points[members], axes=1))
        left = left[~near]
    n = len(out_boxes)
    merged_points = (np.asarray(out_points) if points is not None and n else
                     (np.zeros((0, *points.shape[1:])) if points is not None else None))
    return (np.asarray(out_boxes).reshape(n, 4), np.asarray(out_scores, dtype=np.float64),
            merged_points)


def center_to_corners(cx: Array, cy: Array, w: Array, h: Array) -> Array:
    """Centre x, y, width, height -> (ymin, xmin, ymax, xmax)."""
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


def keypoint_dicts(points: Array, names: Sequence[str], min_score: float = 0.0
                   ) -> list[dict[str, Any]]:
    """[K, 2 or 3] (y, x[, score]) in frame fractions -> named keypoints; a keypoint
    scoring below ``min_score``, or whose position the model gave as NaN or infinity, has
    null coordinates (and a score that is no number, a null score)."""
    pts = np.asarray(points, dtype=np.float64)
    placed = finite_rows(pts[:, :2]).tolist()
    yx = np.round(np.clip(np.nan_to_num(pts[:, :2]), 0.0, 1.0), 5).tolist()
    scores = np.round(pts[:, 2], 6).tolist() if pts.shape[1] > 2 else None
    raw_scores = pts[:, 2].tolist() if pts.shape[1] > 2 else None
    found = []
    for k, (y, x) in enumerate(yx):
        entry: dict[str, Any] = {"name": label_of(names, k), "y": y, "x": x}
        if not placed[k]:
            entry["y"] = entry["x"] = None
        if scores is not None and raw_scores is not None:
            score = raw_scores[k]
            if not score >= min_score:  # NaN too
                entry["y"] = entry["x"] = None
            entry["score"] = scores[k] if math.isfinite(score) else None
        found.append(entry)
    return found


def frame_detections(
    boxes: Array, scores: Array, classes: Array, labels: Sequence[str],
    geometry: Geometry | None, *, points: Array | None = None,
    point_names: Sequence[str] = (), min_point_score: float = 0.0,
    max_detections: int | None = None,
) -> list[dict[str, Any]]:
    """Detections (already best first) as result entries in the frame as sent: a letterbox
    or crop is undone, boxes are clipped to the frame, and one that lay wholly in a
    letterbox bar is dropped. ``points`` [N, K, 2 or 3] (y, x[, score]) go along."""
    kept = geometry.to_frame(boxes) if geometry is not None else np.clip(boxes, 0.0, 1.0)
    kept = kept.reshape(-1, 4)
    finite = finite_rows(kept)
    kept = np.round(np.nan_to_num(kept), 5)  # as reported: a side that rounds away is none
    found = []
    for i, row in enumerate(kept):
        if row[2] <= row[0] or row[3] <= row[1] or not finite[i]:
            continue  # nothing of it is left in the frame, or it was never in a place
        index = int(classes[i])
        det: dict[str, Any] = {"index": index, "label": label_of(labels, index),
                               "score": round(float(scores[i]), 6), "box": box_dict(row)}
        if points is not None:
            pts = np.array(points[i], dtype=np.float64, copy=True)
            pts[:, :2] = to_frame_points(pts[:, :2], geometry)
            det["keypoints"] = keypoint_dicts(pts, point_names, min_point_score)
        found.append(det)
        if max_detections is not None and len(found) >= max_detections:
            break
    return found
