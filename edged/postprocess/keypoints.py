"""Pose keypoints from MoveNet: single pose ``[1, 1, K, 3]`` (y, x, score per keypoint)
and multi-pose ``[1, P, 56]`` (17 x (y, x, score), then ymin, xmin, ymax, xmax, score).
Coordinates are fractions of the model input; results are in the frame as sent.

YOLO-pose and the keypoints of anchor heads come with their boxes (``yolo`` with
``layout: pose``, ``anchors`` with ``keypoints``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from edged.config.postprocess import KeypointsConfig
from edged.image import Geometry
from edged.postprocess import entity
from edged.postprocess.base import (
    Array,
    Bound,
    Context,
    Kind,
    Result,
    dequantize,
    one_output,
    shape_text,
    to_frame_points,
)
from edged.postprocess.boxes import keypoint_lists
from edged.postprocess.names import keypoint_names

MULTI_KEYPOINTS = 17


def pose_boxes(values: Array, geometry: Geometry | None) -> list[dict[str, float]]:
    """Multi-pose boxes [N, 4] in the frame: corners in order even when the model gave them
    the wrong way round, a side the model gave as NaN at 0 and infinity at the frame's
    edge."""
    box = np.nan_to_num(np.asarray(values, dtype=np.float64).reshape(-1, 4), posinf=1.0,
                        neginf=0.0)
    framed = geometry.to_frame(box) if geometry is not None else np.clip(box, 0, 1)
    ys, xs = np.sort(framed[:, 0::2], axis=1), np.sort(framed[:, 1::2], axis=1)
    rows = np.round(np.stack([ys[:, 0], xs[:, 0], ys[:, 1], xs[:, 1]], axis=1), 5).tolist()
    return [dict(zip(("ymin", "xmin", "ymax", "xmax"), row, strict=True)) for row in rows]


def layout_of(shape: tuple[int, ...], wanted: str) -> tuple[Literal["single", "multi"], int]:
    """The layout and keypoint count of a MoveNet output. Raises ValueError."""
    single = len(shape) == 4 and shape[:2] == (1, 1) and shape[3] == 3
    multi = len(shape) == 3 and shape[0] == 1 and shape[2] == 3 * MULTI_KEYPOINTS + 5
    if wanted in ("auto", "single") and single:
        return "single", shape[2]
    if wanted in ("auto", "multi") and multi:
        return "multi", MULTI_KEYPOINTS
    expected = {"single": "[1, 1, K, 3]", "multi": "[1, P, 56]"}.get(
        wanted, "[1, 1, K, 3] (single pose) or [1, P, 56] (multi-pose)")
    raise ValueError(f"keypoints expects one MoveNet output {expected} (y, x, score per "
                     f"keypoint), not {shape_text(shape)}")


class PoseDecoder:
    def __init__(self, context: Context) -> None:
        config = context.config
        self.config = config.keypoints if config is not None else KeypointsConfig()
        self.spec = one_output(context, "keypoints")
        self.layout, count = layout_of(self.spec.shape, self.config.layout)
        self.names = keypoint_names(config.keypoint_labels if config else None, count)
        self.threshold = context.options.score_threshold
        self.max_poses = context.options.max_detections
        self.why = (f"MoveNet {self.layout} pose {shape_text(self.spec.shape)}: {count} "
                    f"keypoints")

    def __call__(self, outputs: Sequence[Array], /, *, geometry: Geometry | None = None,
                 **_: Any) -> Result:
        values = dequantize(np.asarray(outputs[0]), self.spec)
        if self.layout == "single":
            points = values.reshape(1, -1, 3)
            scores = points[:, :, 2].mean(axis=1)  # MoveNet gives no pose score: the mean
            boxes = None
        else:
            rows = values.reshape(-1, 3 * MULTI_KEYPOINTS + 5)
            points = rows[:, :3 * MULTI_KEYPOINTS].reshape(len(rows), MULTI_KEYPOINTS, 3)
            boxes, scores = rows[:, -5:-1], rows[:, -1]
        passed = np.flatnonzero(np.isfinite(scores) & (scores >= self.threshold))
        if not passed.size:  # the common frame: nobody there
            return {"count": 0, "poses": []}
        order = passed[np.argsort(-scores[passed], kind="stable")][:self.max_poses]
        # Every pose's keypoints and box mapped, rounded and converted at once.
        pts = np.array(points[order], dtype=np.float64, copy=True)
        pts[..., :2] = to_frame_points(pts[..., :2], geometry)
        keypoints = keypoint_lists(pts, self.names, self.config.min_score)
        framed = pose_boxes(boxes[order], geometry) if boxes is not None else None
        poses = []
        for n, score in enumerate(np.round(scores[order].astype(np.float64), 6).tolist()):
            pose: dict[str, Any] = {"score": score}
            if framed is not None:
                pose["box"] = framed[n]
            pose["keypoints"] = keypoints[n]
            poses.append(pose)
        return {"count": len(poses), "poses": poses}


def _bind(context: Context) -> Bound:
    decoder = PoseDecoder(context)
    return Bound(decoder, decoder.why)


DECODER = Kind("keypoints", "MoveNet single- and multi-pose keypoints", _bind,
               uses_frame=True, entity=entity.POSES)
