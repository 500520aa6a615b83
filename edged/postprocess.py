"""Output tensors -> results people can use (pure functions, and one small class that
remembers each topic's anomaly state)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from edged.errors import ModelExecutionError
from edged.image import Geometry
from edged.runtime.model import TensorSpec

if TYPE_CHECKING:
    from edged.config import AnomalyConfig, ModelConfig

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


