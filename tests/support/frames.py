"""The frames that have nothing in them, or nothing a model expects (issue 20): blank
ones, noise, a single pixel, the largest frame a route's ``max_pixels`` allows, and
strips far from any model's aspect. The end-to-end test sends them through mosquitto;
scripts/models/reference_goldens.py records what MediaPipe's own pipelines find in the same
pixels (tests/data/mediapipe_goldens.json, ``hard_frames``). Only NumPy and Pillow here:
the reference script imports this module from a MediaPipe environment of its own."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

Array = np.ndarray[Any, Any]

# The largest frame's size: the routes of the test set ``max_pixels`` to exactly this
# (a 12-megapixel camera, 4000x3000).
LARGEST = (3000, 4000)


def hard_frames() -> dict[str, Array]:
    """uint8 RGB [H, W, 3] frames by name, the same pixels on every call."""
    rng = np.random.default_rng(20)
    return {
        "black": np.zeros((480, 640, 3), np.uint8),
        "white": np.full((480, 640, 3), 255, np.uint8),
        "grey": np.full((480, 640, 3), 128, np.uint8),
        "noise": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        "one pixel": np.full((1, 1, 3), 200, np.uint8),
        "largest": np.full((*LARGEST, 3), 128, np.uint8),
        "wide strip": rng.integers(0, 256, (2, 4000, 3), dtype=np.uint8),
        "tall strip": rng.integers(0, 256, (4000, 2, 3), dtype=np.uint8),
    }


def png(pixels: Array) -> bytes:
    """Lossless, so the model sees what the reference saw."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()
