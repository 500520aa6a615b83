#!/usr/bin/env python3
"""Time each decoder per call on outputs of the sizes the field runs, and print the
figures (a Markdown table with --markdown).

    .venv/bin/python scripts/benchmarks/bench_postprocess.py [--repeat 200]

Outputs are synthetic but shaped like the real models' (COCO YOLO at 640 and 320 px,
BlazeFace, MoveNet, selfie and 21-class segmentation), with a few strong objects in
noise, so thresholds, NMS and the quantized gating do the work they do in the field.
MediaPipe's BlazeFace and selfie segmentation are also timed on their real outputs for
the test photograph when scripts/models/fetch_models.sh has cached them. One thread; medians
after warm-up; microseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edged.config import ModelConfig
from edged.image import Geometry
from edged.postprocess.base import PostProcessor
from edged.postprocess.options import PostOptions
from edged.postprocess.registry import postprocessor_for
from edged.runtime.tensors import TensorSpec

Array = np.ndarray[Any, Any]
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "third_party"
GEOMETRY = Geometry(480, 640, 0.125, 0.0, 0.75, 1.0)  # 640x480 letterboxed: boxes mapped


def spec(x: Array, scale: float = 0.0, zero: int = 0) -> TensorSpec:
    return TensorSpec("out", 0, tuple(x.shape), x.dtype, scale, zero)


def image_input(size: int) -> TensorSpec:
    return TensorSpec("in", 0, (1, size, size, 3), np.dtype(np.uint8), 1 / 255, 0)


def bind(kind: str, specs: list[TensorSpec], size: int, threshold: float = 0.25,
         **keys: Any) -> PostProcessor:
    config = ModelConfig(path=Path("m.tflite"), postprocess=kind, score_threshold=threshold,
                         **keys)
    return postprocessor_for(kind, specs, (), 5, options=PostOptions(
        top_k=5, score_threshold=threshold), input_spec=image_input(size), config=config)


def quantize(x: Array, scale: float, zero: int) -> Array:
    q: Array = np.clip(np.rint(x / scale) + zero, -128, 127).astype(np.int8)
    return q


def v8_output(n: int, classes: int, rng: np.random.Generator) -> Array:
    boxes = np.column_stack([rng.uniform(0.05, 0.95, (n, 2)), rng.uniform(0.02, 0.2, (n, 2))])
    scores = rng.uniform(0, 0.05, (n, classes))
    for _ in range(6):  # six objects, each seen by ten anchors
        rows = rng.choice(n, 10, replace=False)
        boxes[rows] = np.r_[rng.uniform(0.2, 0.8, 2), rng.uniform(0.1, 0.3, 2)] + \
            rng.normal(0, 0.01, (10, 4))
        scores[rows, rng.integers(classes)] = rng.uniform(0.5, 0.95, 10)
    return np.concatenate([boxes, scores], axis=1).T[None].astype(np.float32)


def cases(rng: np.random.Generator) -> list[tuple[str, PostProcessor, list[Array]]]:
    out: list[tuple[str, PostProcessor, list[Array]]] = []
    v8 = v8_output(8400, 80, rng)
    out.append(("yolo v8 [1, 84, 8400] float32", bind("yolo", [spec(v8)], 640), [v8]))
    q = quantize(v8, 1 / 255, -128)
    out.append(("yolo v8 [1, 84, 8400] int8", bind("yolo", [spec(q, 1 / 255, -128)], 640),
                [q]))
    v8_320 = quantize(v8_output(2100, 80, rng), 1 / 255, -128)
    out.append(("yolo v8 [1, 84, 2100] int8 (320 px)",
                bind("yolo", [spec(v8_320, 1 / 255, -128)], 320), [v8_320]))
    rows = v8_output(25200, 80, rng)[0].T
    v5 = np.concatenate([rows[:, :4], rows[:, 4:].max(1, keepdims=True), rows[:, 4:] * 0 + 0.9
                         * (rows[:, 4:] > 0.4)], axis=1)[None]
    v5q = quantize(v5, 1 / 255, -128)
    out.append(("yolo v5 [1, 25200, 85] int8", bind("yolo", [spec(v5q, 1 / 255, -128)], 640,
                                                    yolo={"layout": "v5"}), [v5q]))
    e2e = np.zeros((1, 300, 6), np.float32)
    e2e[0, :20] = np.column_stack([rng.uniform(0, 300, (20, 2)), rng.uniform(300, 640, (20, 2)),
                                   rng.uniform(0.1, 0.9, 20), rng.integers(0, 80, 20)])
    out.append(("yolo end2end [1, 300, 6] float32", bind("yolo", [spec(e2e)], 640), [e2e]))
    logits = quantize(rng.normal(-6, 1, (1, 2100, 80)), 0.1, 0)
    logits[0, rng.choice(2100, 30, replace=False), rng.integers(0, 80, 30)] = 20
    dist = quantize(rng.normal(0, 2, (1, 2100, 64)), 0.05, 0)
    out.append(("yolo split [1, 2100, 80] + [1, 2100, 64] int8",
                bind("yolo", [spec(logits, 0.1, 0), spec(dist, 0.05, 0)], 320),
                [logits, dist]))
    pose = np.concatenate([v8_output(8400, 1, rng), rng.uniform(0, 1, (1, 51, 8400)).astype(
        np.float32)], axis=1)
    out.append(("yolo pose [1, 56, 8400] float32", bind("yolo", [spec(pose)], 640), [pose]))
    reg = rng.normal(0, 5, (1, 896, 16)).astype(np.float32)
    cls = rng.normal(-8, 2, (1, 896, 1)).astype(np.float32)
    cls[0, 500:506] = 3.0
    out.append(("anchors BlazeFace [1, 896, 16] + [1, 896, 1], weighted NMS",
                bind("anchors", [spec(reg), spec(cls)], 128, 0.5, anchors={
                    "strides": [8, 16], "anchors_per_cell": [2, 6], "keypoints": 6}),
                [reg, cls]))
    single = rng.uniform(0, 1, (1, 1, 17, 3)).astype(np.float32)
    out.append(("keypoints MoveNet single [1, 1, 17, 3]",
                bind("keypoints", [spec(single)], 192, 0.2), [single]))
    multi = rng.uniform(0, 1, (1, 6, 56)).astype(np.float32)
    out.append(("keypoints MoveNet multi [1, 6, 56]",
                bind("keypoints", [spec(multi)], 256, 0.2), [multi]))
    mask = rng.uniform(0, 1, (1, 256, 256, 1)).astype(np.float32)
    out.append(("segmentation single-class [1, 256, 256, 1]",
                bind("segmentation", [spec(mask)], 256), [mask]))
    out.append(("segmentation single-class + RLE mask",
                bind("segmentation", [spec(mask)], 256, segmentation={"mask": "rle"}), [mask]))
    scores = rng.normal(0, 1, (1, 257, 257, 21)).astype(np.float32)
    out.append(("segmentation 21 classes [1, 257, 257, 21]",
                bind("segmentation", [spec(scores)], 257), [scores]))
    return out


def real_cases() -> list[tuple[str, PostProcessor, list[Array]]]:
    """The real models' outputs: MediaPipe's (when fetched) on the test photograph, and the
    bundled YOLO-layout models on a hold-out scene."""
    from edged.image import ImageOptions, decode_frame
    from edged.runtime import select_backend

    models = Path(__file__).resolve().parents[2] / "models"
    jobs: list[tuple[str, Path, dict[str, Any], str, dict[str, Any]]] = [
        ("anchors BlazeFace, real outputs (astronaut.png)",
         CACHE / "face_detection_short_range.tflite", {"mean": (0.5,), "std": (0.5,)},
         "anchors", {"anchors": {"strides": [8, 16], "anchors_per_cell": [2, 6],
                                 "keypoints": 6}}),
        ("segmentation selfie, real outputs (astronaut.png)",
         CACHE / "selfie_segmentation.tflite", {}, "segmentation", {}),
        ("yolo v8 shapes [1, 7, 64] int8, real outputs", models / "shapes_yolov8_int8.tflite",
         {}, "yolo", {}),
        ("yolo split shapes [1, 84, 3] + [1, 84, 64] int8, real outputs",
         models / "shapes_yolo_split_int8.tflite", {}, "yolo", {}),
    ]
    out = []
    for name, path, image_keys, kind, keys in jobs:
        if not path.exists():
            print(f"{name}: {path} is not there (scripts/models/fetch_models.sh); left out")
            continue
        interp = select_backend().interpreter_class(model_path=str(path))
        interp.allocate_tensors()
        inp = TensorSpec.from_detail(interp.get_input_details()[0])
        specs = [TensorSpec.from_detail(d) for d in interp.get_output_details()]
        if kind == "yolo":
            pixels = np.load(models / "shapes_holdout.npz")["images"][0][None]
        else:
            frame = decode_frame((CACHE / "astronaut.png").read_bytes(), "png",
                                 ImageOptions.for_input(inp.shape, **image_keys))
            pixels = frame.array[None].astype(inp.dtype)
        interp.set_tensor(inp.index, pixels)
        interp.invoke()
        outputs = [interp.get_tensor(s.index) for s in specs]
        config = ModelConfig(path=path, postprocess=kind, score_threshold=0.5, **keys)
        post = postprocessor_for(kind, specs, (), 3, options=PostOptions(score_threshold=0.5),
                                 input_spec=inp, config=config)
        out.append((name, post, outputs))
    return out


def time_one(call: Callable[[], Any], repeat: int) -> float:
    for _ in range(max(5, repeat // 10)):
        call()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for name, post, outputs in cases(rng) + real_cases():
        found = post(outputs, geometry=GEOMETRY)

        def call(p: PostProcessor = post, o: list[Array] = outputs) -> object:
            return p(o, geometry=GEOMETRY)

        us = time_one(call, args.repeat)
        rows.append((name, us, found.get("count")))
    if args.markdown:
        print("| decoder and output | median per call | results |")
        print("|---|---|---|")
        for name, us, count in rows:
            print(f"| {name} | {us:,.0f} µs | {count} |")
    else:
        for name, us, count in rows:
            print(f"{name:62s} {us:10,.1f} us   ({count} results)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
