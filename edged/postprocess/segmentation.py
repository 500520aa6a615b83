"""Segmentation: per-pixel class scores ``[1, H, W, C]`` (argmax), a single-class mask
``[1, H, W, 1]`` or ``[1, H, W]`` (a threshold), or a class map the model computed itself
(integers). Per class present: the fraction of the frame it covers and its bounding box,
in the frame as sent (a letterbox is cut off first); on request the mask itself."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from PIL import Image

from edged.config.postprocess import SegmentationConfig
from edged.errors import ModelExecutionError
from edged.image import Geometry
from edged.postprocess import entity
from edged.postprocess.base import (
    Array,
    Bound,
    Context,
    Kind,
    Result,
    box_dict,
    label_of,
    one_output,
    quantized_threshold,
    shape_text,
)

Mode = Literal["scores", "single", "classes"]
MAX_CLASS = 65_535  # a class map's values are class indices: 0 to this (a 16-bit PNG)


def mode_of(shape: tuple[int, ...], dtype: np.dtype[Any], quantized: bool) -> Mode:
    """How a segmentation output is read. Raises ValueError saying what was expected."""
    if len(shape) not in (3, 4) or shape[0] != 1 or min(shape[1:3]) < 1:
        raise ValueError(f"segmentation expects [1, H, W, classes], [1, H, W, 1] or "
                         f"[1, H, W], not {shape_text(shape)}")
    channels = shape[3] if len(shape) == 4 else 1
    if np.issubdtype(dtype, np.integer) and not quantized:
        if channels != 1:
            raise ValueError(f"an integer class map is [1, H, W] or [1, H, W, 1], not "
                             f"{shape_text(shape)}")
        return "classes"
    return "scores" if channels > 1 else "single"


def rle(classes: Array) -> dict[str, Any]:
    """Row-major runs of equal class index: ``values[i]`` repeated ``counts[i]`` times."""
    flat = classes.ravel()
    starts = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1])
    counts = np.diff(np.concatenate([starts, [flat.size]]))
    return {"format": "rle", "size": list(classes.shape), "values": flat[starts].tolist(),
            "counts": counts.tolist()}


def png(classes: Array) -> dict[str, Any]:
    """A grey PNG of the class indices: 8-bit, or 16-bit when an index is over 255."""
    out = io.BytesIO()
    if classes.size and int(classes.max()) > 255:
        Image.fromarray(classes.astype(np.uint16)).save(out, format="PNG")
    else:
        Image.fromarray(classes.astype(np.uint8)).save(out, format="PNG")
    return {"format": "png", "size": list(classes.shape),
            "data": base64.b64encode(out.getvalue()).decode("ascii")}


def visible(shape: tuple[int, int], geometry: Geometry | None) -> tuple[slice, slice]:
    """The rows and columns of the mask that show the frame (letterbox bars cut off)."""
    h, w = shape
    if geometry is None:
        return slice(0, h), slice(0, w)
    top, left = max(geometry.top, 0.0), max(geometry.left, 0.0)
    bottom = min(geometry.top + geometry.height, 1.0)
    right = min(geometry.left + geometry.width, 1.0)
    return (slice(round(top * h), max(round(bottom * h), round(top * h) + 1)),
            slice(round(left * w), max(round(right * w), round(left * w) + 1)))


class SegmentationDecoder:
    def __init__(self, context: Context) -> None:
        config = context.config
        self.config = config.segmentation if config is not None else SegmentationConfig()
        self.spec = one_output(context, "segmentation")
        self.mode = mode_of(self.spec.shape, self.spec.dtype, self.spec.quantized)
        self.labels = context.labels
        self.hw = (self.spec.shape[1], self.spec.shape[2])
        channels = self.spec.shape[3] if len(self.spec.shape) == 4 else 1
        if self.mode == "scores" and self.labels and len(self.labels) != channels:
            raise ValueError(f"{len(self.labels)} labels for {channels} classes of "
                             f"{shape_text(self.spec.shape)}")
        self.gate = quantized_threshold(self.config.threshold, self.spec)
        self.why = {"scores": f"per-pixel scores of {channels} classes",
                    "single": f"a single-class mask, inside from {self.config.threshold}",
                    "classes": "a class map computed by the model"}[self.mode] + \
            f" at {self.hw[0]}x{self.hw[1]} ({shape_text(self.spec.shape)})"

    def class_map(self, output: Array) -> Array:
        """[H, W] class index per pixel (single-channel: 1 inside, 0 outside)."""
        values = np.asarray(output).reshape(*self.hw, -1)
        if self.mode == "scores":  # argmax of raw values: dequantizing keeps the order
            out: Array = np.argmax(values, axis=2).astype(np.int64)
        elif self.mode == "single":
            out = (values[..., 0] >= self.gate).astype(np.int64)
        else:
            out = values[..., 0].astype(np.int64)
            low, high = int(out.min()), int(out.max())
            if low < 0 or high > MAX_CLASS:
                raise ModelExecutionError(
                    f"the model's class map holds {low if low < 0 else high}, which is no "
                    f"class index (0 to {MAX_CLASS})")
        return out

    def __call__(self, outputs: Sequence[Array], /, *, geometry: Geometry | None = None,
                 **_: Any) -> Result:
        rows, cols = visible(self.hw, geometry)
        classes = self.class_map(outputs[0])[rows, cols]
        counts = np.bincount(classes.ravel(), minlength=1)
        total = classes.size
        found: list[dict[str, Any]] = []
        for k in np.flatnonzero(counts):
            index = int(k) - 1 if self.mode == "single" else int(k)
            if self.mode == "single" and k == 0:
                continue
            if self.mode != "single" and index == self.config.background:
                continue
            area = counts[k] / total
            if area < self.config.min_area:
                continue
            found.append({"index": index, "label": label_of(self.labels, index),
                          "area": round(float(area), 6),
                          "box": box_dict(self._box(classes == k, rows, cols, geometry))})
        found.sort(key=lambda c: -float(c["area"]))
        result: Result = {"count": len(found), "classes": found}
        if self.config.mask == "rle":
            result["mask"] = rle(classes)
        elif self.config.mask == "png":
            result["mask"] = png(classes)
        return result

    def _box(self, inside: Array, rows: slice, cols: slice, geometry: Geometry | None
             ) -> Array:
        ys, xs = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        h, w = self.hw
        y0, y1 = (ys[0] + (rows.start or 0)) / h, (ys[-1] + 1 + (rows.start or 0)) / h
        x0, x1 = (xs[0] + (cols.start or 0)) / w, (xs[-1] + 1 + (cols.start or 0)) / w
        box: Array = np.array([[y0, x0, y1, x1]], dtype=np.float64)
        framed: Array = geometry.to_frame(box) if geometry is not None else box
        row: Array = framed[0]
        return row


def _bind(context: Context) -> Bound:
    decoder = SegmentationDecoder(context)
    return Bound(decoder, decoder.why)


DECODER = Kind("segmentation", "per-class area and box of a segmentation mask", _bind,
               uses_frame=True, entity=entity.AREAS)
