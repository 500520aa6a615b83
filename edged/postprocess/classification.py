"""Classification: the top-k classes of a model's single output."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edged.errors import ModelExecutionError
from edged.postprocess import entity
from edged.postprocess.base import Array, Bound, Context, Kind, Result, dequantize, label_of
from edged.runtime.tensors import TensorSpec

SMALL = 32  # outputs this small are ordered and dequantized in plain Python: faster than
# NumPy's set-up


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
    values, spec = outputs[0].reshape(-1), specs[0]
    k = min(top_k, values.size)
    if values.size <= SMALL:  # a wake word's one score, a few classes: plain Python
        listed = values.tolist()
        best = sorted(range(len(listed)), key=listed.__getitem__, reverse=True)[:k]
        if spec.quantized:
            zero, scale = spec.zero_point, spec.scale
            scores = [(listed[i] - zero) * scale for i in best]
        else:
            scores = [float(listed[i]) for i in best]
    else:
        order = _best(values, spec, k)
        best, scores = order.tolist(), dequantize(values[order], spec).tolist()
    if not math.isfinite(sum(scores)):  # finite only when every score is
        raise ModelExecutionError("the model's output holds a score that is not a finite "
                                  "number (NaN or infinity)")
    top = [
        {"index": i, "label": label_of(labels, i), "score": round(s, 6)}
        for i, s in zip(best, scores, strict=True)
        if threshold is None or s >= threshold
    ]
    if not top:
        return {"label": None, "score": None, "top_k": []}
    return {"label": top[0]["label"], "score": top[0]["score"], "top_k": top}


def _best(values: Array, spec: TensorSpec, k: int) -> Array:
    """The indices of the ``k`` highest scores, best first, ties to the lower index (quantized
    scores tie often, and which one wins must not depend on a sorting algorithm). Quantized
    outputs are ordered on their integers, as the scale is positive: a stable sort of 8-bit
    keys is a radix sort, and only the k winners are dequantized."""
    if spec.quantized and values.dtype == np.uint8:
        keys = np.subtract(255, values, dtype=np.uint8)
    elif spec.quantized and values.dtype == np.int8:
        keys = np.subtract(127, values, dtype=np.int16).astype(np.uint8)
    else:
        keys = -values.astype(np.float64)
    order: Array = np.argsort(keys, kind="stable")[:k]
    return order


def check(specs: Sequence[TensorSpec], labels: Sequence[str]) -> str:
    """Why the model fits, or ValueError saying what was expected."""
    if len(specs) != 1:
        raise ValueError(f"classification needs one output tensor, the model has "
                         f"{len(specs)}; use postprocess: raw")
    classes = specs[0].shape[-1] if specs[0].shape else 1
    if labels and len(labels) != classes:
        raise ValueError(f"{len(labels)} labels for {classes} output classes")
    return f"one output of {classes} class scores"


def _bind(context: Context) -> Bound:
    specs, labels, o = context.specs, context.labels, context.options
    why = check(specs, labels)

    def process(outputs: Sequence[Array], /, **_: object) -> Result:
        return classification(outputs, specs, labels, o.top_k, o.threshold)

    return Bound(process, why)


DECODER = Kind("classification", "top-k classes of one score vector", _bind,
               entity=entity.LABEL)
