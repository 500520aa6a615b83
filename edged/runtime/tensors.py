"""What a model says about its input and output tensors, in edged's own terms."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """What a model says about one of its input or output tensors."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> str:
        shape = "x".join(str(d) for d in self.shape)
        quant = f" scale={self.scale:.6g} zero_point={self.zero_point}" if self.quantized else ""
        return f"{self.name} {self.dtype.name}[{shape}]{quant}"

    @classmethod
    def from_detail(cls, detail: dict[str, Any]) -> TensorSpec:
        scale, zero_point = detail.get("quantization", (0.0, 0))
        return cls(
            name=str(detail["name"]),
            index=int(detail["index"]),
            shape=tuple(int(d) for d in detail["shape"]),
            dtype=np.dtype(detail["dtype"]),
            scale=float(scale),
            zero_point=int(zero_point),
        )


def specs_of(interpreter: Any) -> tuple[list[TensorSpec], tuple[TensorSpec, ...]]:
    """The input and output specs of an interpreter."""
    inputs = [TensorSpec.from_detail(d) for d in interpreter.get_input_details()]
    outputs = tuple(TensorSpec.from_detail(d) for d in interpreter.get_output_details())
    return inputs, outputs


def mismatch(a: TensorSpec, b: TensorSpec) -> str | None:
    """Why ``b`` cannot stand in for ``a`` (indices and names may differ), or None."""
    for what, x, y in (("shape", a.shape, b.shape), ("dtype", a.dtype, b.dtype),
                       ("scale", a.scale, b.scale), ("zero point", a.zero_point, b.zero_point)):
        if x != y:
            return f"{what} {y} instead of {x}"
    return None
