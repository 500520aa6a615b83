"""What every decoder shares: the interface a decoder module offers, the context it binds
to, and small helpers (dequantizing, labels, boxes in the frame)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edged.image import Geometry
from edged.postprocess.entity import EntityView
from edged.postprocess.options import PostOptions
from edged.runtime.tensors import TensorSpec

if TYPE_CHECKING:
    from edged.config import ModelConfig

Array = np.ndarray[Any, Any]
Result = dict[str, Any]


class PostProcessor(Protocol):
    """Output tensors -> result. ``geometry``: how an image frame was fitted into the input
    (boxes, keypoints and masks are reported in the frame as sent); ``model_input``: the
    input tensor (anomaly by reconstruction error)."""

    def __call__(
        self, outputs: Sequence[Array], /, *,
        geometry: Geometry | None = None, model_input: Array | None = None,
    ) -> Result: ...


@dataclass(frozen=True)
class Context:
    """What a decoder binds to: the model's output specs, labels, its config section and
    input spec (image decoders read the input size from it)."""

    specs: tuple[TensorSpec, ...]
    labels: tuple[str, ...] = ()
    options: PostOptions = field(default_factory=PostOptions)
    config: ModelConfig | None = None
    input_spec: TensorSpec | None = None

    def input_hw(self) -> tuple[int, int]:
        """(height, width) of an NHWC image input; (1, 1) when there is none."""
        shape = self.input_spec.shape if self.input_spec is not None else ()
        if len(shape) == 4:
            return int(shape[1]), int(shape[2])
        if len(shape) == 3:
            return int(shape[0]), int(shape[1])
        return 1, 1


@dataclass(frozen=True)
class Bound:
    """A decoder bound to one model: the function, and why it fits (``edged check``)."""

    process: PostProcessor
    why: str
    extra: dict[str, Any] = field(default_factory=dict)


class Decoder(Protocol):
    """What a decoder module exposes as ``DECODER``.

    ``bind`` checks the model's outputs (raising ValueError that says what was expected),
    reads the decoder's settings and returns the bound function. ``entity`` is how its
    results appear in Home Assistant (None: no single value to show). ``uses_frame``: the
    route keeps how an image was fitted, so results can be mapped back onto the frame."""

    name: str
    summary: str
    uses_frame: bool
    entity: EntityView | None

    def bind(self, context: Context) -> Bound: ...


@dataclass(frozen=True)
class Kind:
    """A decoder's description and its bind function (the usual way to make ``DECODER``)."""

    name: str
    summary: str
    binder: Any
    uses_frame: bool = False
    entity: EntityView | None = None

    def bind(self, context: Context) -> Bound:
        bound: Bound = self.binder(context)
        return bound


def one_output(context: Context, name: str) -> TensorSpec:
    """The spec of a decoder's single output; ValueError when the model has more or none."""
    if len(context.specs) != 1:
        raise ValueError(f"{name} expects one output tensor, the model has "
                         f"{len(context.specs)}")
    return context.specs[0]


def dequantize(values: Array, spec: TensorSpec) -> Array:
    """q -> real = (q - zero_point) * scale; float tensors pass through."""
    if not spec.quantized:
        return values.astype(np.float64)
    return (values.astype(np.float64) - spec.zero_point) * spec.scale


def quantized_threshold(real: float, spec: TensorSpec) -> float:
    """The raw value that dequantizes to ``real``: scores compare while still quantized."""
    if not spec.quantized:
        return real
    return real / spec.scale + spec.zero_point


def label_of(labels: Sequence[str], index: int) -> str:
    return labels[index] if 0 <= index < len(labels) else str(index)


def sigmoid(x: Array) -> Array:
    out: Array = 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warnings for large |x|
    return out


def shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def to_frame_points(points: Array, geometry: Geometry | None) -> Array:
    """[..., 2] (y, x) in model-input fractions -> fractions of the frame as sent."""
    if geometry is None:
        return points
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 0] = (out[..., 0] - geometry.top) / geometry.height
    out[..., 1] = (out[..., 1] - geometry.left) / geometry.width
    return out


def box_dict(row: Sequence[float] | Array) -> dict[str, float]:
    return dict(zip(("ymin", "xmin", "ymax", "xmax"), (round(float(v), 5) for v in row),
                    strict=True))
