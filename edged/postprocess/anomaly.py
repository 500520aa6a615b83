"""Anomaly: a score per result, turned into a state per source topic (the route keeps an
:class:`AnomalyTracker` and publishes only changes)."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edged.errors import ModelExecutionError
from edged.postprocess import entity
from edged.postprocess.base import Array, Bound, Context, Kind, Result, dequantize
from edged.postprocess.options import AnomalyOptions
from edged.runtime.tensors import TensorSpec

__all__ = ["AnomalyOptions", "AnomalyTracker", "anomaly_score", "check_anomaly_model"]


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

    Every topic starts normal; its first result says ``first``. With several workers,
    results can finish out of order; one older than the topic's newest (by receive time
    ``at``) is reported but moves nothing.
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
            result = self._result(score, before, now, stale=False)
            if state is None:  # published whether it changed or not: nobody knows it yet
                result["first"] = True
            return result

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


def _bind(context: Context) -> Bound:
    options, specs, input_spec = context.options.anomaly, context.specs, context.input_spec
    if options is None:
        raise ValueError("postprocess anomaly needs an anomaly section")
    check_anomaly_model(options, specs, input_spec)
    judged = options

    def process(outputs: Sequence[Array], /, *, model_input: Array | None = None,
                **_: object) -> Result:
        return {"score": round(anomaly_score(outputs, specs, judged, model_input,
                                             input_spec), 6)}

    return Bound(process, f"score from {options.source}, anomalous {options.direction} "
                 f"{options.threshold}")


DECODER = Kind("anomaly", "a score judged normal or anomalous per source topic", _bind,
               entity=entity.PROBLEM)
