"""Arrays -> input tensors (pure functions): fit the shape, quantize real values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edged.errors import BadInputError
from edged.runtime.model import TensorSpec

Array = np.ndarray[Any, Any]


def fit_shape(array: Array, spec: TensorSpec) -> Array:
    """Accept the input's exact shape, the shape without its batch dimension of 1, or a flat
    array of the right number of elements (what microcontrollers find easiest to send)."""
    shape = spec.shape
    if array.shape == shape:
        return array
    if shape and shape[0] == 1 and array.shape == shape[1:]:
        return array.reshape(shape)
    if array.ndim == 1 and array.size == math.prod(shape):
        return array.reshape(shape)
    got = "x".join(str(d) for d in array.shape) or "scalar"
    want = "x".join(str(d) for d in shape)
    raise BadInputError(f"input of shape [{got}] does not fit the model's input [{want}]")


def to_input_tensor(array: Array, spec: TensorSpec) -> Array:
    """Shape-fit ``array`` and bring it to the input's dtype.

    Floats are real values: quantized with the model's own scale and zero point when the
    input is quantized. Integers of the input's own dtype are taken as already quantized.
    """
    array = fit_shape(array, spec)
    if array.dtype == spec.dtype:
        if array.dtype.kind == "f" and not _finite(array):
            raise BadInputError("input holds NaN or infinite values")
        return array
    if array.dtype.kind == "f":
        if not _finite(array):
            raise BadInputError("input holds NaN or infinite values")
        if spec.quantized:
            return quantize(array, spec)
        # A finite float64 can still overflow to inf in the model's narrower float.
        with np.errstate(over="ignore"):
            cast: Array = array.astype(spec.dtype)
        if not np.all(np.isfinite(cast)):
            raise BadInputError(f"input holds values too large for the model's {spec.dtype.name}")
        return cast
    if array.dtype.kind in "iub" and spec.dtype.kind == "f":
        return array.astype(spec.dtype)
    raise BadInputError(
        f"input dtype {array.dtype.name} does not match the model's input {spec.dtype.name}: "
        f"send {spec.dtype.name} (already quantized) or floats (real values)"
    )


def _finite(array: Array) -> bool:
    """Whether every value is finite: their sum is, unless one is not (or large values
    overflow, which the full check then sorts out). One pass in the array's own dtype, no
    array of booleans, for the common case."""
    # np.add.reduce is what ndarray.sum calls, through a Python function of NumPy's
    return math.isfinite(np.add.reduce(array, axis=None)) or bool(np.isfinite(array).all())


def quantize(array: Array, spec: TensorSpec) -> Array:
    """real -> q = round(real / scale) + zero_point, saturated to the dtype's range."""
    info = np.iinfo(spec.dtype)
    q = np.rint(np.asarray(array, dtype=np.float32) / np.float32(spec.scale))
    q += spec.zero_point
    np.clip(q, info.min, info.max, out=q)
    quantized: Array = q.astype(spec.dtype)
    return quantized
