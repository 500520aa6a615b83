"""Golden image payloads for the image tests, made with Pillow.

The committed files under ``tests/data/images/`` were written by
``python -m tests.support.images tests/data/images``; the tests also build fresh payloads
with these functions, so the files stay reproducible.
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

Array = np.ndarray[Any, Any]

# Four solid quadrants: top-left red, top-right green, bottom-left blue, bottom-right white.
QUADRANT_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255))


def quadrants(height: int = 48, width: int = 64) -> Array:
    """uint8 [height, width, 3] with the four ``QUADRANT_COLOURS``."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    h, w = height // 2, width // 2
    img[:h, :w], img[:h, w:], img[h:, :w], img[h:, w:] = QUADRANT_COLOURS
    return img


def encode(pixels: Array, fmt: str, **params: Any) -> bytes:
    """Encode an array with Pillow (``fmt`` "JPEG" or "PNG")."""
    out = io.BytesIO()
    mode = "L" if pixels.ndim == 2 else None
    Image.fromarray(pixels, mode=mode).save(out, format=fmt, **params)
    return out.getvalue()


def grey16_png(height: int = 8, width: int = 8) -> tuple[bytes, Array]:
    """A 16-bit greyscale PNG and its 16-bit pixels (a ramp from 0 to 65535)."""
    values = np.linspace(0, 65535, height * width).astype(np.uint16).reshape(height, width)
    out = io.BytesIO()
    Image.fromarray(values).save(out, format="PNG")
    return out.getvalue(), values


def palette_png_with_transparency() -> bytes:
    """A 4x4 palette PNG whose index 0 is transparent black, index 1 opaque yellow."""
    im = Image.new("P", (4, 4), 1)
    im.putpalette([0, 0, 0, 255, 255, 0] + [0] * 762)
    im.putpixel((0, 0), 0)
    out = io.BytesIO()
    im.save(out, format="PNG", transparency=0)
    return out.getvalue()


def cmyk_jpeg() -> bytes:
    """A CMYK JPEG (printers make them; libjpeg-turbo's RGB output path refuses them)."""
    out = io.BytesIO()
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(out, format="JPEG", quality=95)
    return out.getvalue()


def png_bomb(width: int = 10_000, height: int = 5_000) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (one IDAT row)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00" * 3 * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(
        b"IEND", b""
    )


def jpeg_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A small real JPEG whose frame header is rewritten to declare a huge size."""
    data = bytearray(encode(quadrants(16, 16), "JPEG", quality=90))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


FILES = {
    "quadrants.png": lambda: encode(quadrants(), "PNG"),
    "quadrants.jpg": lambda: encode(quadrants(), "JPEG", quality=95, subsampling=0),
    "grey16.png": lambda: grey16_png()[0],
    "cmyk.jpg": cmyk_jpeg,
    "bomb.png": png_bomb,
}


def main(out_dir: str) -> None:
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in FILES.items():
        (folder / name).write_bytes(make())


if __name__ == "__main__":
    main(sys.argv[1])
