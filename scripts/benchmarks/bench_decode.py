#!/usr/bin/env python3
"""Measure JPEG decoders the way edged uses them, and print the figures.

    python scripts/benchmarks/bench_decode.py [--repeat 200]

For each decoder that imports (Pillow, simplejpeg, PyTurboJPEG, OpenCV headless) and each
frame size, it times two things on the same synthetic camera-like JPEG (quality 90,
4:2:0): a full decode to an RGB uint8 array, and decode + resize to a 224x224 model input
(the path a classifier route takes). Pillow and simplejpeg can also let libjpeg skip work
by decoding at 1/2, 1/4 or 1/8 scale ("draft" / ``min_height``), which is timed too.

Figures are medians over ``--repeat`` runs after warm-up, in milliseconds, one thread.
Decoders that are not installed are listed as such; nothing is downloaded.

Measured on the development box (x86_64, 2 cores, Python 3.11, Pillow 13.0,
simplejpeg 1.9, opencv-python-headless 5.0; ms for 640x480 / 224x224 / 1280x720):

    pillow      decode 1.03 / 0.22 / 2.90   draft+resize 1.16 / 0.22 / 2.82   gray 0.71
    simplejpeg  decode 0.79 / 0.11 / 2.31   draft+resize 1.07 / 0.16 / 2.67   gray 0.62
    opencv      decode 0.87 / 0.17 / 2.47   area+resize  1.66 / 0.17 / 4.50   gray 0.63
    pyturbojpeg 2.x: not usable, it needs libjpeg-turbo >= 3.0 and Debian ships 2.1.5

edged decodes JPEG with simplejpeg (fastest decode, a small wheel that bundles
libjpeg-turbo 3, wheels for NumPy 1 and 2) and resizes with Pillow (needed for PNG
anyway). OpenCV's plain INTER_LINEAR resize is quicker only because it does not
antialias; its antialiased INTER_AREA is slower than Pillow, and it installs ~150 MB
against simplejpeg's 1 MB.
"""

from __future__ import annotations

import argparse
import functools
import io
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

Array = np.ndarray[Any, Any]
SIZES = ((640, 480), (224, 224), (1280, 720))
TARGET = (224, 224)


def synthetic_frame(width: int, height: int, seed: int = 0) -> Array:
    """A camera-like RGB frame: smooth gradients, a few shapes and sensor noise.

    Pure noise would be unrealistically hard to compress and slow to decode.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([x / width * 200, y / height * 200, (x + y) / (width + height) * 255], -1)
    for _ in range(12):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.03, 0.15) * min(width, height)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        img[mask] = rng.uniform(0, 255, size=3)
    img += rng.normal(0, 6, size=img.shape)
    frame: Array = np.clip(img, 0, 255).astype(np.uint8)
    return frame


def encode_jpeg(rgb: Array) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=90, subsampling="4:2:0")
    return out.getvalue()


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    for _ in range(max(5, repeat // 10)):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def pillow_decoders() -> dict[str, Callable[[bytes], Array]]:
    def decode(data: bytes) -> Array:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))

    def decode_resize(data: bytes) -> Array:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB").resize(TARGET, Image.Resampling.BILINEAR))

    def draft_resize(data: bytes) -> Array:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", TARGET)  # libjpeg DCT scaling: decode at 1/2, 1/4 or 1/8
            return np.asarray(im.convert("RGB").resize(TARGET, Image.Resampling.BILINEAR))

    def gray(data: bytes) -> Array:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("L", im.size)  # libjpeg skips the chroma planes
            return np.asarray(im.convert("L"))

    return {"decode": decode, "decode+resize": decode_resize, "draft+resize": draft_resize,
            "gray": gray}


def simplejpeg_decoders() -> dict[str, Callable[[bytes], Array]]:
    import simplejpeg

    def resize(rgb: Array) -> Array:
        return np.asarray(Image.fromarray(rgb).resize(TARGET, Image.Resampling.BILINEAR))

    def decode(data: bytes) -> Array:
        return np.asarray(simplejpeg.decode_jpeg(data, colorspace="RGB"))

    def scaled(data: bytes) -> Array:
        rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=TARGET[1],
                                     min_width=TARGET[0])
        return resize(np.asarray(rgb))

    def gray(data: bytes) -> Array:
        return np.asarray(simplejpeg.decode_jpeg(data, colorspace="GRAY"))

    return {"decode": decode, "decode+resize": lambda d: resize(decode(d)),
            "draft+resize": scaled, "gray": gray}


def turbojpeg_decoders() -> dict[str, Callable[[bytes], Array]]:
    from turbojpeg import TJPF_RGB, TurboJPEG

    jpeg = TurboJPEG()

    def decode(data: bytes) -> Array:
        return np.asarray(jpeg.decode(data, pixel_format=TJPF_RGB))

    def resize(rgb: Array) -> Array:
        return np.asarray(Image.fromarray(rgb).resize(TARGET, Image.Resampling.BILINEAR))

    return {"decode": decode, "decode+resize": lambda d: resize(decode(d))}


def opencv_decoders() -> dict[str, Callable[[bytes], Array]]:
    import cv2

    cv2.setNumThreads(1)

    def decode(data: bytes) -> Array:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def decode_resize(data: bytes) -> Array:
        return np.asarray(cv2.resize(decode(data), TARGET, interpolation=cv2.INTER_LINEAR))

    def area_resize(data: bytes) -> Array:  # antialiased, comparable to Pillow's filters
        return np.asarray(cv2.resize(decode(data), TARGET, interpolation=cv2.INTER_AREA))

    def gray(data: bytes) -> Array:
        return np.asarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE))

    return {"decode": decode, "decode+resize": decode_resize, "area+resize": area_resize,
            "gray": gray}


CANDIDATES: dict[str, Callable[[], dict[str, Callable[[bytes], Array]]]] = {
    "pillow": pillow_decoders,
    "simplejpeg": simplejpeg_decoders,
    "pyturbojpeg": turbojpeg_decoders,
    "opencv-headless": opencv_decoders,
}


def main() -> None:
    parser = argparse.ArgumentParser(description="time JPEG decoders")
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    frames = {size: encode_jpeg(synthetic_frame(*size)) for size in SIZES}
    print("median ms per frame (lower is better); JPEG quality 90, 4:2:0")
    print(f"{'decoder':16} {'step':14} " + " ".join(f"{w}x{h:<8}" for w, h in SIZES))
    for name, make in CANDIDATES.items():
        try:
            steps = make()
        except Exception as exc:  # an absent decoder is a finding, not a failure
            print(f"{name:16} not available: {type(exc).__name__}: {exc}")
            continue
        for step, fn in steps.items():
            cells = [f"{median_ms(functools.partial(fn, d), args.repeat):<12.3f}"
                     for d in frames.values()]
            print(f"{name:16} {step:14} " + " ".join(cells))
    sizes = ", ".join(f"{w}x{h}: {len(d) / 1024:.1f} KiB" for (w, h), d in frames.items())
    print(f"JPEG sizes: {sizes}")


if __name__ == "__main__":
    main()
