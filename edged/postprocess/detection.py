"""SSD-style detection: the four outputs of models ending in TFLite_Detection_PostProcess
(the Coral and TFLite detection models), in either output order."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edged.image import Geometry
from edged.postprocess import entity
from edged.postprocess.base import (
    Array,
    Bound,
    Context,
    Kind,
    Result,
    box_dict,
    dequantize,
    label_of,
)
from edged.runtime.tensors import TensorSpec


@dataclass(frozen=True)
class DetectionLayout:
    """Which output holds what in an SSD-style model (TFLite_Detection_PostProcess).

    Models disagree on the order of the four outputs (TF1 exports: boxes, classes, scores,
    count; TF2 exports often scores first), so they are told apart by shape: boxes are
    [1, N, 4], count has one element. Classes and scores share the shape [1, N]: a name
    saying "class" or "score" decides; otherwise :func:`detection` decides per result by
    their values, and ``classes`` is only the first guess."""

    boxes: int
    classes: int
    scores: int
    count: int
    by_name: bool

    @classmethod
    def of(cls, specs: Sequence[TensorSpec]) -> DetectionLayout:
        if len(specs) != 4:
            raise ValueError(f"detection needs the 4 outputs boxes, classes, scores, count; "
                             f"the model has {len(specs)}")
        sizes = [math.prod(s.shape) for s in specs]
        boxes = [i for i, s in enumerate(specs) if len(s.shape) >= 2 and s.shape[-1] == 4]
        count = [i for i, n in enumerate(sizes) if n == 1]
        if len(count) > 1:  # one detection at most: classes and scores hold one value too
            count = ([i for i in count if any(w in specs[i].name.lower()
                                              for w in ("count", "num"))]
                     or [i for i in count if len(specs[i].shape) <= 1] or count[-1:])[:1]
        if len(boxes) != 1 or len(count) != 1:
            raise ValueError("detection needs one [1, N, 4] boxes output and one count output")
        pair = [i for i in range(4) if i not in (boxes[0], count[0])]
        n = sizes[boxes[0]] // 4
        if any(sizes[i] != n for i in pair):
            raise ValueError(f"detection: classes and scores must hold {n} values like boxes")
        named = [i for i in pair if "score" in specs[i].name.lower()]
        if len(named) == 1:
            other = pair[0] if named[0] == pair[1] else pair[1]
            return cls(boxes[0], other, named[0], count[0], True)
        named = [i for i in pair if "class" in specs[i].name.lower()]
        if len(named) == 1:
            other = pair[0] if named[0] == pair[1] else pair[1]
            return cls(boxes[0], named[0], other, count[0], True)
        return cls(boxes[0], pair[0], pair[1], count[0], False)


def _looks_like_scores(values: Array) -> bool:
    """Scores are fractions in [0, 1]; class ids are whole numbers."""
    return bool(np.all((values >= 0) & (values <= 1)) and np.any(values != np.round(values)))


def detection(
    outputs: Sequence[Array],
    specs: Sequence[TensorSpec],
    labels: Sequence[str],
    score_threshold: float,
    max_detections: int | None = None,
    geometry: Geometry | None = None,
    layout: DetectionLayout | None = None,
) -> Result:
    """Boxes scoring at least ``score_threshold``, best first, as fractions of the frame
    (``geometry`` undoes a letterbox or crop)."""
    boxes, classes, scores = _detections(outputs, specs, layout or DetectionLayout.of(specs))
    # A score or class the model gave as NaN or infinity is no detection.
    keep = [i for i in np.argsort(-scores, kind="stable")
            if np.isfinite(scores[i]) and scores[i] >= score_threshold
            and np.isfinite(classes[i])]
    if max_detections is not None:
        keep = keep[:max_detections]
    kept = boxes[keep] if keep else np.zeros((0, 4))
    if geometry is not None:
        kept = geometry.to_frame(kept)
    kept = np.round(np.clip(np.nan_to_num(kept), 0.0, 1.0), 5)  # as reported
    found = []
    for row, i in zip(kept, keep, strict=True):
        if row[2] <= row[0] or row[3] <= row[1]:
            continue  # nothing of it is left in the frame (it lay in a letterbox bar)
        index = round(float(classes[i]))
        found.append({
            "index": index,
            "label": label_of(labels, index),
            "score": round(float(scores[i]), 6),
            "box": box_dict(row),
        })
    return {"count": len(found), "detections": found}


def _detections(
    outputs: Sequence[Array], specs: Sequence[TensorSpec], layout: DetectionLayout
) -> tuple[Array, Array, Array]:
    """The first ``count`` boxes, classes and scores as real values. Only those rows are
    read: the runtime leaves whatever it likes (even NaN) in the rest."""
    def first(index: int, count: int, width: int = 1) -> Array:
        # Slice before dequantizing: the rows past count may hold NaN or worse.
        return dequantize(np.asarray(outputs[index]).reshape(-1, width)[:count], specs[index])

    rows = math.prod(specs[layout.boxes].shape) // 4
    raw_count = float(first(layout.count, 1)[0, 0])
    n = int(min(max(raw_count, 0), rows)) if np.isfinite(raw_count) else 0
    boxes = first(layout.boxes, n, 4)
    classes, scores = first(layout.classes, n)[:, 0], first(layout.scores, n)[:, 0]
    if not layout.by_name and _looks_like_scores(classes) and not _looks_like_scores(scores):
        classes, scores = scores, classes
    return boxes, classes, scores


def _bind(context: Context) -> Bound:
    specs, labels, o = context.specs, context.labels, context.options
    layout = DetectionLayout.of(specs)

    def process(outputs: Sequence[Array], /, *, geometry: Geometry | None = None,
                **_: object) -> Result:
        return detection(outputs, specs, labels, o.score_threshold, o.max_detections,
                         geometry, layout)

    how = "by name" if layout.by_name else "by shape, classes and scores told apart by value"
    return Bound(process, f"TFLite_Detection_PostProcess outputs: boxes {layout.boxes}, "
                 f"classes {layout.classes}, scores {layout.scores}, count {layout.count} "
                 f"({how})")


DECODER = Kind("detection", "SSD boxes from TFLite_Detection_PostProcess", _bind,
               uses_frame=True, entity=entity.DETECTIONS)
