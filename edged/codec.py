"""Payload bytes -> arrays (pure functions). Every payload is hostile until decoded."""

from __future__ import annotations

import functools
import io
import json
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from edged import image
from edged.errors import BadInputError

Array = np.ndarray[Any, Any]
MAX_JSON_DEPTH = 16
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def decode_raw(payload: bytes, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Array:
    """Bytes of exactly one tensor of ``shape`` and ``dtype`` (native byte order).

    The array is a read-only view of ``payload``: no copy.
    """
    expected = math.prod(shape) * dtype.itemsize
    if len(payload) != expected:
        dims = "x".join(str(d) for d in shape)
        raise BadInputError(
            f"raw payload is {len(payload)} bytes; the model's input {dtype.name}[{dims}] "
            f"needs exactly {expected}{_looks_like(payload)}"
        )
    return np.frombuffer(payload, dtype=dtype).reshape(shape)


def _looks_like(payload: bytes) -> str:
    """A hint for a payload that is not raw tensor bytes but a format edged decodes: the
    route's input (raw when it has no `input:`) is then what to change."""
    if payload.startswith(image.JPEG_MAGIC):
        found, fix = "a JPEG image", "input: {format: image} (or jpeg)"
    elif payload.startswith(image.PNG_MAGIC):
        found, fix = "a PNG image", "input: {format: image} (or png)"
    elif payload.startswith(np.lib.format.MAGIC_PREFIX):
        found, fix = "a .npy array", "input: {format: npy}"
    elif payload.lstrip()[:1] in (b"{", b"["):
        found, fix = "JSON", "input: {format: json}"
    else:
        return ""
    return f"; the payload looks like {found}: set the route's {fix}"


def decode_npy(payload: bytes) -> Array:
    """NumPy's .npy format, never with pickled objects."""
    if payload[:4] in _ZIP_MAGIC:
        # np.load would open it as an .npz archive; a broken one raises zipfile.BadZipFile.
        raise BadInputError("npy payload must hold one array (.npz archives are refused)")
    # A hostile header can make NumPy warn (e.g. "created on Python 2"); the sender gets
    # an error or a result, the daemon's log gets no warning per message.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _load_npy(payload)


def _load_npy(payload: bytes) -> Array:
    if payload.startswith(np.lib.format.MAGIC_PREFIX):
        _check_npy_header(payload)
    try:
        array = np.load(io.BytesIO(payload), allow_pickle=False)
    except ValueError as exc:
        text = str(exc)
        if "pickle" in text.lower():
            raise BadInputError("npy payload holds Python objects, which are refused") from None
        raise BadInputError(f"not a valid .npy payload: {text}") from None
    except (OSError, EOFError) as exc:
        raise BadInputError(f"not a valid .npy payload: {exc}") from None
    if not isinstance(array, np.ndarray):
        raise BadInputError("npy payload must hold one array (.npz archives are refused)")
    if array.dtype.kind not in "biuf":
        raise BadInputError(f"npy dtype {array.dtype} is not numeric")
    return array


def _check_npy_header(payload: bytes) -> None:
    """Refuse a header that declares more data than the payload holds before np.load
    allocates room for all of it: 100 hostile bytes must not cost gigabytes."""
    stream = io.BytesIO(payload)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"format version {version} is not supported")
    except Exception as exc:  # NumPy's header parser fails in many ways on hostile input
        raise BadInputError(f"not a valid .npy payload: {str(exc)[:200]}") from None
    if dtype.hasobject:
        raise BadInputError("npy payload holds Python objects, which are refused")
    if any(d < 0 for d in shape):
        raise BadInputError(f"not a valid .npy payload: negative dimension in {shape}")
    declared = math.prod(shape) * dtype.itemsize
    held = len(payload) - stream.tell()
    if declared > held:
        raise BadInputError(
            f"not a valid .npy payload: its header declares {declared} bytes of data, "
            f"the payload holds {held}"
        )


def _refuse_constant(name: str) -> float:
    raise BadInputError(f"JSON number {name} is refused: send finite numbers")


def decode_json(payload: bytes, field: str) -> Array:
    """A list or nested list of numbers, or an object holding one under ``field``."""
    try:
        value = json.loads(payload, parse_constant=_refuse_constant)
    except BadInputError:
        raise
    except RecursionError:
        raise BadInputError("JSON payload is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInputError(f"not valid JSON: {exc}") from None
    if isinstance(value, dict):
        if field not in value:
            keys = ", ".join(sorted(map(str, value))[:8])
            raise BadInputError(f"JSON object has no field {field!r} (keys: {keys})")
        value = value[field]
    if not isinstance(value, list):
        raise BadInputError("JSON payload must be a list of numbers or an object holding one")
    _check_numbers(value, 1)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, OverflowError) as exc:
        raise BadInputError(f"JSON array is not rectangular: {exc}") from None
    if not np.all(np.isfinite(array)):
        raise BadInputError("JSON array holds numbers too large to represent")
    return array


def _check_numbers(value: list[Any], depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise BadInputError(f"JSON array is nested deeper than {MAX_JSON_DEPTH} levels")
    for item in value:
        if isinstance(item, list):
            _check_numbers(item, depth + 1)
        elif isinstance(item, bool) or not isinstance(item, (int, float)):
            raise BadInputError(f"JSON array holds a non-number: {str(item)[:40]!r}")
        elif isinstance(item, float) and not math.isfinite(item):
            raise BadInputError("JSON array holds a non-finite number")


def decoder_for(
    fmt: str,
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    field: str,
    *,
    image_options: image.ImageOptions | None = None,
    base64_field: str | None = None,
) -> Callable[[bytes], Array]:
    """The decode function of one route's input format.

    Image formats (jpeg, png, image) give a float [H, W, C] already fitted to the model's
    input ``shape``; ``image_options`` defaults to a plain stretch to [0, 1]. Raises
    ValueError for an unknown format or an input that is not an image.
    """
    if fmt == "raw":
        return functools.partial(decode_raw, shape=shape, dtype=dtype)  # C: no extra frame
    if fmt == "npy":
        return decode_npy
    if fmt == "json":
        return lambda payload: decode_json(payload, field)
    if fmt in image.IMAGE_FORMATS:
        options = image_options or image.ImageOptions.for_input(shape)
        frames = frame_decoder_for(fmt, options, base64_field)
        return lambda payload: frames(payload).array
    raise ValueError(f"unknown input format {fmt!r}")


def frame_decoder_for(
    fmt: str, options: image.ImageOptions, base64_field: str | None = None
) -> Callable[[bytes], image.DecodedImage]:
    """Like :func:`decoder_for` for image formats, keeping how the frame was fitted into
    the input (detection needs it to map boxes back onto the frame)."""
    if fmt not in image.IMAGE_FORMATS:
        raise ValueError(f"{fmt!r} is not an image format")
    kind: image.ImageFormat = "jpeg" if fmt == "jpeg" else "png" if fmt == "png" else "image"
    if base64_field is None:
        return lambda payload: image.decode_frame(payload, kind, options)
    field = base64_field
    return lambda payload: image.decode_frame(
        image.from_base64_json(payload, field), kind, options
    )
