"""Image frames -> float model inputs (pure functions): decode, colour layout, resize,
normalise. Quantization to the model's input type is left to ``edged.preprocess``.

JPEG is decoded with simplejpeg (libjpeg-turbo), which measured fastest
(``scripts/benchmarks/bench_decode.py``) and can let libjpeg decode at 1/2, 1/4 or 1/8
scale when the model's input is much smaller than the frame. PNG, and JPEGs simplejpeg cannot handle
(CMYK, arithmetic coding), go through Pillow, which also does the resizing: its filters
antialias when they shrink, so fine detail does not alias into the model's input.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import struct
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from edged.config import InputConfig
from edged.errors import BadInputError

Array = np.ndarray[Any, Any]
ImageFormat = Literal["jpeg", "png", "image"]
IMAGE_FORMATS: tuple[ImageFormat, ...] = ("jpeg", "png", "image")
ResizeMode = Literal["stretch", "letterbox", "crop"]
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEFAULT_MAX_PIXELS = 40_000_000  # a 8K frame is 33 Mpx; anything larger is hostile here


@dataclass(frozen=True)
class ImageOptions:
    """How one route turns frames into its model's input."""

    height: int
    width: int
    channels: Literal[1, 3]
    resize: ResizeMode = "stretch"
    mean: tuple[float, ...] = (0.0,)
    """Subtracted from pixel/255, one value for all channels or one per channel."""
    std: tuple[float, ...] = (1.0,)
    max_pixels: int = DEFAULT_MAX_PIXELS
    pad_value: int = 0
    """letterbox: the grey level (0..255) of the bars."""
    as_is: bool = False
    """Hand over the fitted uint8 pixels without normalising: for a uint8 input whose
    quantization is exactly pixel/255 (and mean 0, std 1), where normalising and then
    quantizing would give back the same bytes after four passes over the frame."""

    def __post_init__(self) -> None:
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.channels):
                raise ValueError(f"{name} needs 1 or {self.channels} values, got {len(values)}")
        if any(s == 0 for s in self.std):
            raise ValueError("std values must not be 0")

    @classmethod
    def for_input(cls, shape: tuple[int, ...], **settings: Any) -> ImageOptions:
        """Options for a model input of ``shape`` (see :func:`input_layout`); ``settings``
        are the other fields, e.g. from a route's ``input`` section."""
        height, width, channels = input_layout(shape)
        return cls(height, width, channels, **settings)

    @classmethod
    def from_config(cls, config: InputConfig, shape: tuple[int, ...]) -> ImageOptions:
        """Options from a route's ``input`` section for a model input of ``shape``."""
        return cls.for_input(
            shape, resize=config.resize, mean=config.mean, std=config.std,
            max_pixels=config.max_pixels, pad_value=config.pad_value,
        )


@dataclass(frozen=True)
class Geometry:
    """Where the frame's content sits in the model input, in fractions of the input's
    height and width. stretch: (0, 0, 1, 1); letterbox: inside it, with bars around;
    crop: beyond it (negative ``top``/``left``, extents over 1)."""

    frame_height: int
    frame_width: int
    top: float = 0.0
    left: float = 0.0
    height: float = 1.0
    width: float = 1.0

    def to_frame(self, boxes: Array) -> Array:
        """[N, 4] boxes (ymin, xmin, ymax, xmax) in model-input fractions -> fractions of
        the original frame, clipped to it (a box over a letterbox bar ends at the edge)."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        y = (b[:, 0::2] - self.top) / self.height
        x = (b[:, 1::2] - self.left) / self.width
        out = np.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], axis=1)
        return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True)
class DecodedImage:
    """A model-ready float image [H, W, C] and how the frame was fitted into it."""

    array: Array
    geometry: Geometry


def input_layout(shape: tuple[int, ...]) -> tuple[int, int, Literal[1, 3]]:
    """(height, width, channels) of an image model input: NHWC with a batch of 1, HWC, or
    NHW (one channel). Raises ValueError for anything else (e.g. NCHW)."""
    dims = shape[1:] if len(shape) == 4 and shape[0] == 1 else shape
    if len(dims) == 3 and dims[0] == 1 and len(shape) == 3:
        dims = (*dims[1:], 1)  # [1, H, W]: a single-channel image without a channel axis
    if len(dims) == 3 and dims[2] in (1, 3) and dims[0] > 0 and dims[1] > 0:
        channels: Literal[1, 3] = 1 if dims[2] == 1 else 3
        return dims[0], dims[1], channels
    got = "x".join(str(d) for d in shape)
    raise ValueError(f"input [{got}] is not an image input (NHWC, 1 or 3 channels)")


def sniff(payload: bytes) -> Literal["jpeg", "png"] | None:
    """The image format the payload's magic bytes announce."""
    if payload.startswith(JPEG_MAGIC):
        return "jpeg"
    if payload.startswith(PNG_MAGIC):
        return "png"
    return None


def from_base64_json(payload: bytes, field: str) -> bytes:
    """The image bytes held as base64 under ``field`` of a JSON object (a ``data:`` URL is
    accepted too)."""
    try:
        value = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadInputError(f"not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(value, dict) or not isinstance(value.get(field), str):
        raise BadInputError(f"JSON payload must be an object with a base64 string in {field!r}")
    text: str = value[field]
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadInputError(f"{field!r} does not hold valid base64") from None


def decode_frame(payload: bytes, fmt: ImageFormat, options: ImageOptions) -> DecodedImage:
    """Decode, convert, fit and normalise one frame into the model's input."""
    kind = sniff(payload)
    if kind is None:
        raise BadInputError(f"payload is not a JPEG or PNG image (starts {payload[:8]!r})")
    if fmt != "image" and kind != fmt:
        raise BadInputError(f"payload is a {kind.upper()} image; this route takes {fmt.upper()}")
    decoded = _decode_jpeg(payload, options) if kind == "jpeg" else None
    pixels, frame_size = decoded if decoded is not None else _decode_pillow(payload, options)
    fitted, geometry = fit(pixels, options, frame_size)
    return DecodedImage(fitted if options.as_is else normalise(fitted, options), geometry)


def _check_pixels(height: int, width: int, options: ImageOptions) -> None:
    # Checked on the header, before a byte is decoded: a few hundred hostile bytes can
    # declare a frame whose pixels would take gigabytes.
    if height <= 0 or width <= 0:
        raise BadInputError(f"image declares an empty size {width}x{height}")
    if height * width > options.max_pixels:
        raise BadInputError(
            f"image is {width}x{height} = {height * width} pixels; the limit is "
            f"{options.max_pixels} (input.max_pixels)"
        )


def _decode_jpeg(payload: bytes, options: ImageOptions) -> tuple[Array, tuple[int, int]] | None:
    """simplejpeg's decode and the frame's (height, width), or None when it cannot handle
    this JPEG (Pillow tries next)."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(payload)
    except ValueError:
        return None
    _check_pixels(height, width, options)
    need_h, need_w = _scaled_size(height, width, options)
    try:
        # min_height/min_width: libjpeg may decode at 1/2, 1/4 or 1/8 scale as long as the
        # result stays at least as large as what the resize step needs.
        pixels = simplejpeg.decode_jpeg(
            payload, colorspace="GRAY" if options.channels == 1 else "RGB",
            min_height=need_h, min_width=need_w,
        )
    except ValueError:
        return None
    shape = (pixels.shape[0], pixels.shape[1], options.channels)
    return np.asarray(pixels).reshape(shape), (height, width)


def _decode_pillow(payload: bytes, options: ImageOptions) -> tuple[Array, tuple[int, int]]:
    if payload.startswith(PNG_MAGIC) and payload[12:16] == b"IHDR" and len(payload) >= 24:
        # Read the size from IHDR ourselves: Pillow's own bomb check is a process-wide
        # setting with a limit of its own.
        width, height = struct.unpack(">II", payload[16:24])
        _check_pixels(height, width, options)
    try:
        with Image.open(io.BytesIO(payload), formats=("JPEG", "PNG")) as im:
            _check_pixels(im.height, im.width, options)
            return _to_channels(im, options.channels), (im.height, im.width)
    except BadInputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
            SyntaxError) as exc:  # Pillow's plugins fail in all of these ways on bad data
        raise BadInputError(f"image cannot be decoded: {str(exc)[:200]}") from None


def _to_channels(im: Image.Image, channels: int) -> Array:
    """Pillow image -> uint8 [H, W, channels]. Alpha is dropped; 16-bit grey is scaled
    (Pillow's own conversion would clip it at 255)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = (np.asarray(im, dtype=np.uint32) // 257).clip(0, 255).astype(np.uint8)
        return grey[..., None] if channels == 1 else np.repeat(grey[..., None], 3, axis=2)
    target = "L" if channels == 1 else "RGB"
    if im.mode in ("P", "PA") and "transparency" in im.info:
        im = im.convert("RGBA")  # palette transparency must be resolved before dropping it
    array = np.asarray(im.convert(target))
    return array.reshape(array.shape[0], array.shape[1], channels)


def _scaled_size(height: int, width: int, options: ImageOptions) -> tuple[int, int]:
    """The size the frame is resized to before it is padded (letterbox) or cut (crop)."""
    if options.resize == "stretch":
        return options.height, options.width
    pick = min if options.resize == "letterbox" else max
    scale = pick(options.height / height, options.width / width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def fit(
    pixels: Array, options: ImageOptions, frame_size: tuple[int, int] | None = None
) -> tuple[Array, Geometry]:
    """Resize uint8 [h, w, c] to the model's height and width by ``options.resize``.

    ``frame_size`` is the (height, width) the frame was sent at, when libjpeg decoded it
    at a reduced scale: same proportions, so the fractions in the geometry hold for both.
    """
    h, w = pixels.shape[:2]
    fh, fw = frame_size or (h, w)
    th, tw = options.height, options.width
    sh, sw = _scaled_size(h, w, options)
    if options.resize == "stretch":
        return _resize(pixels, sh, sw), Geometry(fh, fw)
    top, left = (th - sh) // 2, (tw - sw) // 2
    geometry = Geometry(fh, fw, top / th, left / tw, sh / th, sw / tw)
    if options.resize == "letterbox":
        canvas = np.full((th, tw, pixels.shape[2]), options.pad_value, dtype=np.uint8)
        canvas[top : top + sh, left : left + sw] = _resize(pixels, sh, sw)
        return canvas, geometry
    # crop: only the part of the frame that is kept is resized. Scaled whole first, a
    # frame far from the model's aspect (a 1x4000 strip to 224x224) would be resized to
    # 224x896000 pixels on the way.
    ky, kx = h / sh, w / sw  # frame pixels per scaled pixel
    box = (-left * kx, -top * ky, (tw - left) * kx, (th - top) * ky)
    return _resize(pixels, th, tw, box), geometry


def _resize(pixels: Array, height: int, width: int,
            box: tuple[float, float, float, float] | None = None) -> Array:
    """Resize (the ``box`` of, left, top, right, bottom in frame pixels) to the size."""
    if box is None and pixels.shape[:2] == (height, width):
        return pixels
    channels = pixels.shape[2]
    im = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
    # reducing_gap: shrink by whole factors first (cheap box filter), then filter
    # properly: near Pillow's full-quality result at a fraction of its cost.
    out = np.asarray(im.resize((width, height), Image.Resampling.BILINEAR, box=box,
                               reducing_gap=3.0))
    return out.reshape(height, width, channels)


def normalise(pixels: Array, options: ImageOptions) -> Array:
    """uint8 -> float32 ``(pixel / 255 - mean) / std``, per channel."""
    mean = np.asarray(options.mean, dtype=np.float32)
    inv_std = 1.0 / np.asarray(options.std, dtype=np.float32)
    out = pixels.astype(np.float32)
    out *= np.float32(1.0 / 255.0)
    out -= mean
    out *= inv_std
    return out
