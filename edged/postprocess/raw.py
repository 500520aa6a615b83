"""Raw: every output tensor as it came out, for decoding elsewhere."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edged.errors import ModelExecutionError
from edged.postprocess.base import Array, Bound, Context, Kind, Result
from edged.runtime.tensors import TensorSpec


def raw(outputs: Sequence[Array], specs: Sequence[TensorSpec]) -> Result:
    """Every output tensor as it came out, with what it takes to dequantize it. JSON has no
    NaN nor infinity: an output holding one is a ModelExecutionError that names it."""
    for value, spec in zip(outputs, specs, strict=False):
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            raise ModelExecutionError(f"output {spec.name!r} holds NaN or infinity, which "
                                      "JSON cannot carry")
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


def _bind(context: Context) -> Bound:
    specs = context.specs

    def process(outputs: Sequence[Array], /, **_: object) -> Result:
        return raw(outputs, specs)

    return Bound(process, f"{len(specs)} output tensor(s) passed on as they are")


DECODER = Kind("raw", "the output tensors as they are", _bind)
