"""Frigate's zmq detector protocol, without sockets or clocks (pure).

The contract is Frigate's plugin, frigate/detectors/plugins/zmq_ipc.py: a REQ socket sends

- ``[{"model_request": true, "model_name": N}]`` once at start, and wants one JSON frame
  with ``model_available`` and ``model_loaded`` both true (anything else, and the detector
  answers zeros until Frigate restarts; "available but not loaded" is one such answer);
- ``[{"model_data": true, "model_name": N}, <file>]`` when the model was not available,
  and wants ``{"model_saved": true, "model_loaded": true}``;
- ``[{"shape": [...], "dtype": D, "model_type": T}, <tensor, C order>]`` per frame, and
  reads back either one frame of exactly 480 bytes (float32 [20, 6]) or a header and the
  bytes. Rows are ``[class_id, score, y_min, x_min, y_max, x_max]``, best first; Frigate
  stops at the first row under its threshold and never validates a 480-byte frame.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edged.runtime.tensors import TensorSpec

ROWS = 20
ZEROS = bytes(ROWS * 6 * 4)
"""The reply that tells Frigate "nothing found": its own error value."""
MAX_HEADER_BYTES = 4096
MAX_DIMS = 6
DTYPES: dict[str, np.dtype[Any]] = {"uint8": np.dtype(np.uint8), "int8": np.dtype(np.int8),
          "float32": np.dtype(np.float32)}
"""What Frigate sends: uint8 by default, float32 with input_dtype float or float_denorm;
int8 for models that take it."""
MODEL_TYPES = ("ssd", "yologeneric", "yolonas", "yolox", "rfdetr", "dfine")
DECODERS_FOR: dict[str, tuple[str, ...]] = {
    "ssd": ("detection", "anchors"),
    "yologeneric": ("yolo",),
    "yolonas": ("yolo",),
    "yolox": ("yolo",),
    "rfdetr": (),
    "dfine": (),
}
"""Which of edged's box decoders can serve each of Frigate's model types. RF-DETR and
D-FINE heads (class logits and boxes as separate tensors, no NMS) have no decoder here."""


@dataclass(slots=True)
class ModelRequest:
    name: str


@dataclass(slots=True)
class ModelData:
    name: str
    data: bytes


@dataclass(slots=True)
class Detect:
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    model_type: str | None
    tensor: bytes


@dataclass(slots=True)
class Malformed:
    """A request that cannot be read: answered with zeros (``reason`` is the counter)."""

    reason: str
    text: str


Request = ModelRequest | ModelData | Detect | Malformed


def parse(frames: Sequence[bytes]) -> Request:
    """One request's frames (after the ROUTER envelope) -> what it asks."""
    if not frames or len(frames) > 2:
        return Malformed("bad_header", f"{len(frames)} frames; a request has 1 or 2")
    head = frames[0]
    if len(head) > MAX_HEADER_BYTES:
        return Malformed("bad_header", f"header of {len(head)} bytes (at most "
                         f"{MAX_HEADER_BYTES})")
    try:
        header = json.loads(head)
    except (ValueError, UnicodeDecodeError):
        return Malformed("bad_header", "header is not JSON")
    if not isinstance(header, dict):
        return Malformed("bad_header", "header is not a JSON object")
    if header.get("model_request") is True:
        name = header.get("model_name")
        if not isinstance(name, str) or not name:
            return Malformed("bad_header", "model_request without a model_name")
        return ModelRequest(name)
    if header.get("model_data") is True:
        name = header.get("model_name")
        if not isinstance(name, str) or not name or len(frames) != 2:
            return Malformed("bad_header", "model_data needs a model_name and the file")
        return ModelData(name, frames[1])
    return _detect(header, frames)


def _detect(header: dict[str, Any], frames: Sequence[bytes]) -> Request:
    shape, dtype_name = header.get("shape"), header.get("dtype")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= MAX_DIMS
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 1 << 16
                       for d in shape)):
        return Malformed("bad_header", f"shape {str(shape)[:60]} is not a list of sizes")
    dtype = DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        return Malformed("bad_dtype", f"dtype {str(dtype_name)[:20]!r}: send one of "
                         f"{', '.join(DTYPES)}")
    model_type = header.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        return Malformed("bad_header", "model_type is not text")
    if len(frames) != 2:
        return Malformed("bad_header", "a detection request is a header and a tensor")
    tensor = frames[1]
    expected = math.prod(shape) * dtype.itemsize
    if len(tensor) != expected:
        return Malformed("bad_length", f"tensor of {len(tensor)} bytes; "
                         f"{dtype.name}{shape} needs {expected}")
    return Detect(tuple(shape), dtype, model_type, tensor)


@dataclass(frozen=True, slots=True)
class Fit:
    """How a request's tensor becomes the model's input bytes."""

    nchw: bool
    """Sent channels first ([1, 3, H, W]): transposed to the model's [1, H, W, 3]."""
    quantize: bool
    """Sent as float32 real values to a quantized model: quantized with its parameters."""

    @property
    def as_is(self) -> bool:
        return not (self.nchw or self.quantize)


def fit(shape: Sequence[int], dtype: np.dtype[Any], spec: TensorSpec) -> Fit | str:
    """Whether a tensor of ``shape`` and ``dtype`` fits the model's input ``spec``: how,
    or what does not fit, in words Frigate's config speaks."""
    want = tuple(spec.shape)
    got = tuple(shape)
    nchw = False
    if got != want:
        if len(want) == 4 and len(got) == 4 and got == (want[0], want[3], want[1], want[2]):
            nchw = True
        else:
            hw = (f"model width: {want[2]}, height: {want[1]}" if len(want) == 4 else
                  f"an input of {list(want)}")
            return (f"Frigate sends {list(got)}; the model takes {list(want)} "
                    f"(set Frigate's {hw}, input_tensor nhwc or nchw)")
    if dtype == spec.dtype:
        return Fit(nchw, False)
    if dtype == np.float32 and spec.quantized:
        return Fit(nchw, True)
    frigate = {"uint8": "int", "float32": "float", "int8": "int"}.get(spec.dtype.name)
    hint = (f"set Frigate's input_dtype: {frigate}" if frigate else
            f"the model takes {spec.dtype.name}, which Frigate does not send")
    return f"Frigate sends {dtype.name}; the model takes {spec.dtype.name} ({hint})"


def model_input(request: Detect, how: Fit, spec: TensorSpec) -> bytes:
    """The request's tensor as the model's input bytes."""
    if how.as_is:
        return request.tensor
    array = np.frombuffer(request.tensor, dtype=request.dtype).reshape(request.shape)
    if how.nchw:
        array = array.transpose(0, 2, 3, 1)
    if how.quantize:
        info = np.iinfo(spec.dtype)
        real = array.astype(np.float32)
        if not np.all(np.isfinite(real)):
            real = np.nan_to_num(real, nan=0.0, posinf=0.0, neginf=0.0)
        q = np.rint(real / spec.scale + spec.zero_point)
        array = np.clip(q, info.min, info.max).astype(spec.dtype)
    return np.ascontiguousarray(array).tobytes()


def rows(result: Mapping[str, Any], ids: Mapping[int, int], threshold: float) -> bytes:
    """A decoder's result -> the 480-byte reply: at most 20 rows scoring at least
    ``threshold``, best first, each class with an id in Frigate's labelmap (others are
    left out: an id Frigate lacks would raise there)."""
    out = np.zeros((ROWS, 6), dtype=np.float32)
    found = sorted(result.get("detections") or (), key=lambda d: -float(d["score"]))
    n = 0
    for det in found:
        score = float(det["score"])
        if score < threshold or not math.isfinite(score):
            break
        frigate_id = ids.get(int(det["index"]))
        if frigate_id is None:
            continue
        box = det["box"]
        out[n] = (frigate_id, score, box["ymin"], box["xmin"], box["ymax"], box["xmax"])
        n += 1
        if n == ROWS:
            break
    return out.tobytes()


def handshake(available: bool) -> bytes:
    return json.dumps({"model_available": available, "model_loaded": available}).encode()


def saved(ok: bool) -> bytes:
    return json.dumps({"model_saved": ok, "model_loaded": ok}).encode()
