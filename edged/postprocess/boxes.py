"""Boxes shared by the box decoders: overlap, non-maximum suppression (plain per class, and
MediaPipe's weighted kind), and results in the frame as it was sent.

Boxes here are corners ``[N, 4]`` = (ymin, xmin, ymax, xmax) in fractions of the model
input, the layout of TFLite_Detection_PostProcess.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edged.image import Geometry
from edged.postprocess.base import Array, label_of, to_frame_points


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
    """[N, N] intersection over union of every pair of boxes (one coordinate at a time:
    a quarter of the temporaries of broadcasting the corners together)."""
    y0, x0, y1, x1 = (boxes[:, i] for i in range(4))
    high = np.minimum(y1[:, None], y1[None, :])
    high -= np.maximum(y0[:, None], y0[None, :])
    np.maximum(high, 0.0, out=high)
    wide = np.minimum(x1[:, None], x1[None, :])
    wide -= np.maximum(x0[:, None], x0[None, :])
    np.maximum(wide, 0.0, out=wide)
    inter = high
    inter *= wide
    areas = (y1 - y0) * (x1 - x0)
    union = areas[:, None] + areas[None, :]
    union -= inter
    positive = union > 0
    out: Array = np.divide(inter, union, out=np.zeros_like(inter), where=positive)
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
    keypoints alike, keeping its own score. Returns boxes, scores, keypoints.

    The clusters are found first (a walk over booleans), then every mean at once: one
    scatter-add over the boxes, not a product per cluster (nor a clusters x boxes matrix,
    which BLAS would multiply on threads of its own)."""
    order = np.argsort(-scores, kind="stable")
    n = len(order)
    b, s = boxes[order].astype(np.float64), scores[order].astype(np.float64)
    firsts, cluster = _clusters(b, iou_threshold)
    total = np.bincount(cluster, weights=s, minlength=len(firsts))[cluster]
    size = np.bincount(cluster, minlength=len(firsts))[cluster]
    # Scores of 0 (a logit clipped at -score_clip with score_threshold 0): equal weights.
    weight = np.where(total > 0, s / np.where(total > 0, total, 1.0), 1.0 / np.maximum(size, 1))
    values = b if points is None else np.concatenate(
        [b, points[order].reshape(n, -1).astype(np.float64)], axis=1)
    means = np.zeros((len(firsts), values.shape[1]))
    np.add.at(means, cluster, values * weight[:, None])
    merged_points = None
    if points is not None:
        merged_points = means[:, 4:].reshape(len(firsts), *points.shape[1:])
    return means[:, :4], s[firsts], merged_points


def _clusters(boxes: Array, iou_threshold: float) -> tuple[Array, Array]:
    """Greedy clusters of boxes in score order: the first index of each, and each box's
    cluster (a box belongs to the first cluster whose head overlaps it)."""
    n = len(boxes)
    taken = np.zeros(n, dtype=bool)
    cluster = np.zeros(n, dtype=np.int64)
    firsts: list[int] = []
    overlaps = iou_matrix(boxes) > iou_threshold if n <= _MATRIX_NMS else None
    for i in range(n):
        if taken[i]:
            continue
        near = overlaps[i] if overlaps is not None else iou(boxes[i], boxes) > iou_threshold
        row = near & ~taken
        row[i] = True  # itself, even when degenerate (zero or negative size): IoU 0
        taken |= row
        cluster[row] = len(firsts)
        firsts.append(i)
    return np.asarray(firsts, dtype=np.int64), cluster


def center_to_corners(cx: Array, cy: Array, w: Array, h: Array) -> Array:
    """Centre x, y, width, height -> (ymin, xmin, ymax, xmax)."""
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


def keypoint_dicts(points: Array, names: Sequence[str], min_score: float = 0.0
                   ) -> list[dict[str, Any]]:
    """[K, 2 or 3] (y, x[, score]) in frame fractions -> named keypoints; a keypoint
    scoring below ``min_score``, or whose position the model gave as NaN or infinity, has
    null coordinates (and a score that is no number, a null score)."""
    return keypoint_lists(np.asarray(points)[None], names, min_score)[0]


def keypoint_lists(points: Array, names: Sequence[str], min_score: float = 0.0
                   ) -> list[list[dict[str, Any]]]:
    """:func:`keypoint_dicts` of each of ``points`` [N, K, 2 or 3], rounded and checked
    for all of them at once."""
    pts = np.asarray(points, dtype=np.float64)
    n, k = pts.shape[:2]
    placed = np.logical_and(np.isfinite(pts[..., 0]), np.isfinite(pts[..., 1]))
    yx = np.round(np.clip(np.nan_to_num(pts[..., :2]), 0.0, 1.0), 5).tolist()
    labels = [label_of(names, j) for j in range(k)]
    scored = pts.shape[2] > 2
    if scored:
        raw = pts[..., 2]
        placed &= raw >= min_score  # NaN too
        rounded = np.round(np.nan_to_num(raw, posinf=0.0, neginf=0.0), 6).tolist()
        finite = np.isfinite(raw).tolist()
    shown = placed.tolist()
    out = []
    for i in range(n):
        found = []
        for j in range(k):
            y, x = yx[i][j] if shown[i][j] else (None, None)
            entry: dict[str, Any] = {"name": labels[j], "y": y, "x": x}
            if scored:
                entry["score"] = rounded[i][j] if finite[i][j] else None
            found.append(entry)
        out.append(found)
    return out


def frame_detections(
    boxes: Array, scores: Array, classes: Array, labels: Sequence[str],
    geometry: Geometry | None, *, points: Array | None = None,
    point_names: Sequence[str] = (), min_point_score: float = 0.0,
    max_detections: int | None = None,
) -> list[dict[str, Any]]:
    """Detections (already best first) as result entries in the frame as sent: a letterbox
    or crop is undone, boxes are clipped to the frame, and one that lay wholly in a
    letterbox bar is dropped. ``points`` [N, K, 2 or 3] (y, x[, score]) go along."""
    if not len(boxes):  # the common frame: nothing there
        return []
    kept = geometry.to_frame(boxes) if geometry is not None else np.clip(boxes, 0.0, 1.0)
    kept = kept.reshape(-1, 4)
    finite = finite_rows(kept)
    kept = np.round(np.nan_to_num(kept), 5)  # as reported: a side that rounds away is none
    show = (finite & (kept[:, 2] > kept[:, 0]) & (kept[:, 3] > kept[:, 1])).nonzero()[0]
    if max_detections is not None:
        show = show[:max_detections]
    # Everything rounded and converted at once: a frame where every box passes has
    # hundreds of them.
    rows = kept[show].tolist()
    score_list = np.round(np.asarray(scores, dtype=np.float64)[show], 6).tolist()
    class_list = np.asarray(classes)[show].astype(np.int64).tolist()
    point_lists: list[list[dict[str, Any]]] | None = None
    if points is not None:
        pts = np.array(points[show], dtype=np.float64, copy=True)
        pts[..., :2] = to_frame_points(pts[..., :2], geometry)
        point_lists = keypoint_lists(pts, point_names, min_point_score)
    found = []
    for i, (y0, x0, y1, x1) in enumerate(rows):
        index = class_list[i]
        det: dict[str, Any] = {"index": index, "label": label_of(labels, index),
                               "score": score_list[i],
                               "box": {"ymin": y0, "xmin": x0, "ymax": y1, "xmax": x1}}
        if point_lists is not None:
            det["keypoints"] = point_lists[i]
        found.append(det)
    return found
