"""Classification: the top-k classes of a model's single output."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edged.postprocess.base import Array, Bound, Context, Kind, Result, dequantize, label_of
from edged.runtime.tensors import TensorSpec


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
        {"index": int(i), "label": label_of(labels, int(i)), "score": round(float(scores[i]), 6)}
        for i in best
        if threshold is None or scores[i] >= threshold
    ]
    if not top:
        return {"label": None, "score": None, "top_k": []}
    return {"label": top[0]["label"], "score": top[0]["score"], "top_k": top}


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
               state_template="{{ value_json.result.label }}")
