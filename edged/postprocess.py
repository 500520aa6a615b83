"""Output tensors -> results people can use (pure functions, and one small class that
remembers each topic's anomaly state)."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from edged.config import AnomalyConfig, ModelConfig
from edged.errors import ModelExecutionError
from edged.image import Geometry
from edged.runtime.model import TensorSpec

Array = np.ndarray[Any, Any]
Result = dict[str, Any]


def dequantize(values: Array, spec: TensorSpec) -> Array:
    """q -> real = (q - zero_point) * scale; float tensors pass through."""
    if not spec.quantized:
        return values.astype(np.float64)
    return (values.astype(np.float64) - spec.zero_point) * spec.scale


def classification(
    outputs: Sequence[Array],
    specs: Sequence[TensorSpec],
    labels: Sequence[str],
    top_k: int,
    threshold: float | None = None,
) -> Result:
    """The top-k classes of the single output, best first, with dequantized scores.

    With ``threshold``, classes scoring below it are left out; when none reaches it the
    result is ``{"label": None, "score": None, "top_k": []}``: nothing to report.
    """
    scores = dequantize(outputs[0], specs[0]).reshape(-1)
    k = min(top_k, scores.size)
    # A full stable sort, not argpartition: quantized scores tie often, and ties must go to
    # the lower index whatever NumPy's partition algorithm picks. Classes number thousands.
    best = np.argsort(-scores, kind="stable")[:k]
    top = [
        {
            "index": int(i),
            "label": labels[i] if i < len(labels) else str(int(i)),
            "score": round(float(scores[i]), 6),
        }
        for i in best
        if threshold is None or scores[i] >= threshold
    ]
    if not top:
        return {"label": None, "score": None, "top_k": []}
    return {"label": top[0]["label"], "score": top[0]["score"], "top_k": top}


def raw(outputs: Sequence[Array], specs: Sequence[TensorSpec]) -> Result:
    """Every output tensor as it came out, with what it takes to dequantize it."""
    return {
        "outputs": [
            {
                "name": spec.name,
                "shape": list(value.shape),
                "dtype": value.dtype.name,
                "quantization": {"scale": spec.scale, "zero_point": spec.zero_point},
                "data": value.tolist(),
            }
            for value, spec in zip(outputs, specs, strict=False)
        ]
    }




# --------------------------------------------------------------------------- detection


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
    keep = [i for i in np.argsort(-scores, kind="stable")
            if np.isfinite(scores[i]) and scores[i] >= score_threshold]
    if max_detections is not None:
        keep = keep[:max_detections]
    kept = boxes[keep] if keep else np.zeros((0, 4))
    if geometry is not None:
        kept = geometry.to_frame(kept)
    kept = np.clip(np.nan_to_num(kept), 0.0, 1.0)
    found = []
    for row, i in zip(kept, keep, strict=True):
        if row[2] <= row[0] or row[3] <= row[1]:
            continue  # nothing of it is left in the frame (it lay in a letterbox bar)
        index = round(float(classes[i]))
        corners = (round(float(v), 5) for v in row)
        found.append({
            "index": index,
            "label": labels[index] if 0 <= index < len(labels) else str(index),
            "score": round(float(scores[i]), 6),
            "box": dict(zip(("ymin", "xmin", "ymax", "xmax"), corners, strict=True)),
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


# --------------------------------------------------------------------------- anomaly


@dataclass(frozen=True)
class AnomalyOptions:
    """How an anomaly score is read from a model and judged."""

    source: Literal["output", "class", "reconstruction"]
    threshold: float
    direction: Literal["above", "below"] = "above"
    hysteresis: float = 0.0
    class_index: int = 0
    max_topics: int = 1000

    @classmethod
    def from_config(cls, config: AnomalyConfig, labels: Sequence[str]) -> AnomalyOptions:
        index = 0
        if config.source == "class" and config.label is not None:
            if config.label in labels:
                index = list(labels).index(config.label)
            elif config.label.isdigit():
                index = int(config.label)
            else:
                raise ValueError(f"anomaly label {config.label!r} is not among the labels")
        return cls(config.source, config.threshold, config.direction, config.hysteresis,
                   index, config.max_topics)


def anomaly_score(
    outputs: Sequence[Array],
    specs: Sequence[TensorSpec],
    options: AnomalyOptions,
    model_input: Array | None = None,
    input_spec: TensorSpec | None = None,
) -> float:
    """The score of one result: the single output value, one class's probability, or the
    mean squared error between an autoencoder's output and its input (real values)."""
    values = dequantize(np.asarray(outputs[0]), specs[0]).reshape(-1)
    if options.source == "output":
        score = float(values[0])
    elif options.source == "class":
        score = float(values[options.class_index])
    else:
        if model_input is None or input_spec is None:
            raise ModelExecutionError("reconstruction error needs the model's input")
        original = dequantize(np.asarray(model_input), input_spec).reshape(-1)
        score = float(np.mean((values - original) ** 2))
    if not np.isfinite(score):
        raise ModelExecutionError("the model's anomaly score is not a finite number")
    return score


def check_anomaly_model(
    options: AnomalyOptions, specs: Sequence[TensorSpec], input_spec: TensorSpec | None
) -> None:
    """Refuse at start-up a model whose outputs cannot give the configured score."""
    size = math.prod(specs[0].shape)
    if options.source == "output" and size != 1:
        raise ValueError(f"anomaly source output needs a single-value output, not {size}")
    if options.source == "class" and not 0 <= options.class_index < size:
        raise ValueError(f"anomaly class {options.class_index} is not among {size} outputs")
    if options.source == "reconstruction" and (
        input_spec is None or math.prod(input_spec.shape) != size
    ):
        raise ValueError("anomaly source reconstruction needs an output the size of the input")


@dataclass
class _TopicState:
    anomalous: bool
    at: float


class AnomalyTracker:
    """Anomaly state per source topic: each score moves its topic's state, and a result
    says whether the state changed (the pipeline publishes only those).

    Every topic starts normal. With several workers, results can finish out of order; one
    older than the topic's newest (by receive time ``at``) is reported but moves nothing.
    Thread-safe and bounded: past ``max_topics``, the least recently heard topic goes.
    """

    def __init__(self, options: AnomalyOptions) -> None:
        self.options = options
        self._states: OrderedDict[str, _TopicState] = OrderedDict()
        self._lock = threading.Lock()

    def observe(self, topic: str, score: float, at: float) -> Result:
        with self._lock:
            state = self._states.get(topic)
            before = state.anomalous if state is not None else False
            if state is not None and at < state.at:
                return self._result(score, before, before, stale=True)
            now = self._judge(score, before)
            self._states[topic] = _TopicState(now, at)
            self._states.move_to_end(topic)
            if len(self._states) > self.options.max_topics:
                self._states.popitem(last=False)
            return self._result(score, before, now, stale=False)

    def _judge(self, score: float, anomalous: bool) -> bool:
        o = self.options
        # While anomalous, the way back to normal lies ``hysteresis`` past the threshold.
        margin = o.hysteresis if anomalous else 0.0
        if o.direction == "above":
            return score > o.threshold - margin
        return score < o.threshold + margin

    def _result(self, score: float, before: bool, now: bool, stale: bool) -> Result:
        result: Result = {
            "score": round(score, 6),
            "threshold": self.options.threshold,
            "state": "anomalous" if now else "normal",
            "changed": now != before,
        }
        if result["changed"]:
            result["previous"] = "anomalous" if before else "normal"
        if stale:
            result["stale"] = True
        return result


# --------------------------------------------------------------------------- binding


@dataclass(frozen=True)
class PostOptions:
    """A model's post-processing settings (the ``models.<name>`` keys that concern it)."""

    top_k: int = 3
    threshold: float | None = None
    score_threshold: float = 0.5
    max_detections: int | None = None
    anomaly: AnomalyOptions | None = None

    @classmethod
    def from_config(cls, config: ModelConfig, labels: Sequence[str]) -> PostOptions:
        anomaly = None
        if config.anomaly is not None:
            anomaly = AnomalyOptions.from_config(config.anomaly, labels)
        return cls(config.top_k, config.threshold, config.score_threshold,
                   config.max_detections, anomaly)


class PostProcessor(Protocol):
    """Output tensors -> result. ``geometry``: how the frame was fitted (detection);
    ``model_input``: the input tensor (anomaly by reconstruction error)."""

    def __call__(
        self, outputs: Sequence[Array], /, *,
        geometry: Geometry | None = None, model_input: Array | None = None,
    ) -> Result: ...


@dataclass(frozen=True)
class _Bound:
    kind: str
    specs: tuple[TensorSpec, ...]
    labels: tuple[str, ...]
    options: PostOptions
    input_spec: TensorSpec | None
    layout: DetectionLayout | None

    def __call__(
        self, outputs: Sequence[Array], /, *,
        geometry: Geometry | None = None, model_input: Array | None = None,
    ) -> Result:
        o = self.options
        if self.kind == "classification":
            return classification(outputs, self.specs, self.labels, o.top_k, o.threshold)
        if self.kind == "detection":
            return detection(outputs, self.specs, self.labels, o.score_threshold,
                             o.max_detections, geometry, self.layout)
        if self.kind == "anomaly" and o.anomaly is not None:
            score = anomaly_score(outputs, self.specs, o.anomaly, model_input, self.input_spec)
            return {"score": round(score, 6)}
        return raw(outputs, self.specs)


def postprocessor_for(
    kind: str,
    specs: Sequence[TensorSpec],
    labels: Sequence[str],
    top_k: int,
    *,
    options: PostOptions | None = None,
    input_spec: TensorSpec | None = None,
) -> PostProcessor:
    """The post-processing function a model is configured with. Raises ValueError when the
    model's outputs cannot serve ``kind`` (checked once, at start-up)."""
    options = options if options is not None else PostOptions(top_k=top_k)
    layout = DetectionLayout.of(specs) if kind == "detection" else None
    if kind == "anomaly":
        if options.anomaly is None:
            raise ValueError("postprocess anomaly needs an anomaly section")
        check_anomaly_model(options.anomaly, specs, input_spec)
    elif kind not in ("classification", "detection", "raw"):
        raise ValueError(f"unknown postprocess {kind!r}")
    return _Bound(kind, tuple(specs), tuple(labels), options, input_spec, layout)
