#!/usr/bin/env python3
"""Time each decoder per call on outputs of the sizes the field runs, in three cases:
an empty frame (nothing passes the threshold: the common case), a typical one (a few
strong objects in noise) and the worst (every box, anchor or pixel class passes), and
print the figures (a Markdown table with --markdown).

    .venv/bin/python scripts/benchmarks/bench_postprocess.py [--repeat 200] [--only WORD]

Outputs are synthetic but shaped like the real models' (COCO YOLO at 640 and 320 px,
BlazeFace and the palm detector, MoveNet, selfie and 21-class segmentation), so
thresholds, candidate caps, NMS and the quantized gating do the work they do in the
field. MediaPipe's BlazeFace and selfie segmentation are also timed on their real
outputs for the test photograph when scripts/models/fetch_models.sh has cached them. One
thread; medians after warm-up, in microseconds: the thread's CPU time per call (steady
on a machine shared with other work) and the wall time.
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


Case = tuple[str, str, PostProcessor, list[Array]]  # decoder and output, case, call


def cases(rng: np.random.Generator) -> list[Case]:
    """Typical frames: a few strong objects in noise."""
    out: list[Case] = []
    v8 = v8_output(8400, 80, rng)
    out.append(("yolo v8 [1, 84, 8400] float32", "typical", bind("yolo", [spec(v8)], 640),
                [v8]))
    q = quantize(v8, 1 / 255, -128)
    out.append(("yolo v8 [1, 84, 8400] int8", "typical",
                bind("yolo", [spec(q, 1 / 255, -128)], 640), [q]))
    v8_320 = quantize(v8_output(2100, 80, rng), 1 / 255, -128)
    out.append(("yolo v8 [1, 84, 2100] int8 (320 px)", "typical",
                bind("yolo", [spec(v8_320, 1 / 255, -128)], 320), [v8_320]))
    rows = v8_output(25200, 80, rng)[0].T
    v5 = np.concatenate([rows[:, :4], rows[:, 4:].max(1, keepdims=True), rows[:, 4:] * 0 + 0.9
                         * (rows[:, 4:] > 0.4)], axis=1)[None]
    v5q = quantize(v5, 1 / 255, -128)
    out.append(("yolo v5 [1, 25200, 85] int8", "typical",
                bind("yolo", [spec(v5q, 1 / 255, -128)], 640, yolo={"layout": "v5"}), [v5q]))
    e2e = np.zeros((1, 300, 6), np.float32)
    e2e[0, :20] = np.column_stack([rng.uniform(0, 300, (20, 2)), rng.uniform(300, 640, (20, 2)),
                                   rng.uniform(0.1, 0.9, 20), rng.integers(0, 80, 20)])
    out.append(("yolo end2end [1, 300, 6] float32", "typical", bind("yolo", [spec(e2e)], 640),
                [e2e]))
    logits = quantize(rng.normal(-6, 1, (1, 2100, 80)), 0.1, 0)
    logits[0, rng.choice(2100, 30, replace=False), rng.integers(0, 80, 30)] = 20
    dist = quantize(rng.normal(0, 2, (1, 2100, 64)), 0.05, 0)
    out.append(("yolo split [1, 2100, 80] + [1, 2100, 64] int8", "typical",
                bind("yolo", [spec(logits, 0.1, 0), spec(dist, 0.05, 0)], 320),
                [logits, dist]))
    pose = np.concatenate([v8_output(8400, 1, rng), rng.uniform(0, 1, (1, 51, 8400)).astype(
        np.float32)], axis=1)
    out.append(("yolo pose [1, 56, 8400] float32", "typical", bind("yolo", [spec(pose)], 640),
                [pose]))
    reg = rng.normal(0, 5, (1, 896, 16)).astype(np.float32)
    cls = rng.normal(-8, 2, (1, 896, 1)).astype(np.float32)
    cls[0, 500:506] = 3.0
    out.append((BLAZEFACE, "typical", blazeface(), [reg, cls]))
    reg = rng.normal(0, 5, (1, 2016, 18)).astype(np.float32)
    cls = rng.normal(-8, 2, (1, 2016, 1)).astype(np.float32)
    cls[0, 1500:1506] = 3.0
    out.append((PALM, "typical", palm(), [reg, cls]))
    single = rng.uniform(0, 1, (1, 1, 17, 3)).astype(np.float32)
    out.append(("keypoints MoveNet single [1, 1, 17, 3]", "typical",
                bind("keypoints", [spec(single)], 192, 0.2), [single]))
    multi = rng.uniform(0, 1, (1, 6, 56)).astype(np.float32)
    multi[0, 2:, -1] = 0.05  # two people
    out.append(("keypoints MoveNet multi [1, 6, 56]", "typical",
                bind("keypoints", [spec(multi)], 256, 0.2), [multi]))
    mask = np.zeros((1, 256, 256, 1), np.float32)
    mask[0, 60:200, 80:180] = 0.9  # a person
    out.append(("segmentation single-class [1, 256, 256, 1]", "typical",
                bind("segmentation", [spec(mask)], 256), [mask]))
    out.append(("segmentation single-class + RLE mask", "typical",
                bind("segmentation", [spec(mask)], 256, segmentation={"mask": "rle"}), [mask]))
    scores = rng.normal(0, 1, (1, 257, 257, 21)).astype(np.float32)
    scores[..., 0] += 3  # mostly background
    out.append(("segmentation 21 classes [1, 257, 257, 21]", "typical",
                bind("segmentation", [spec(scores)], 257), [scores]))
    out.extend(small_cases(rng))
    return out


BLAZEFACE = "anchors BlazeFace [1, 896, 16] + [1, 896, 1], weighted NMS"
PALM = "anchors palm [1, 2016, 18] + [1, 2016, 1], weighted NMS"


def blazeface(**keys: Any) -> PostProcessor:
    reg, cls = np.zeros((1, 896, 16), np.float32), np.zeros((1, 896, 1), np.float32)
    return bind("anchors", [spec(reg), spec(cls)], 128, 0.5, anchors={
        "strides": [8, 16], "anchors_per_cell": [2, 6], "keypoints": 6, **keys})


def palm(**keys: Any) -> PostProcessor:
    reg, cls = np.zeros((1, 2016, 18), np.float32), np.zeros((1, 2016, 1), np.float32)
    return bind("anchors", [spec(reg), spec(cls)], 192, 0.5, anchors={
        "strides": [8, 16], "anchors_per_cell": [2, 6], "keypoints": 7, **keys})


def small_cases(rng: np.random.Generator) -> list[Case]:
    """The decoders whose cost does not depend on what the frame holds much."""
    out: list[Case] = []
    boxes = rng.uniform(0, 1, (1, 100, 4)).astype(np.float32)
    boxes[..., 2:] = boxes[..., :2] + 0.1
    classes = rng.integers(0, 90, (1, 100)).astype(np.float32)
    scores = np.sort(rng.uniform(0, 1, (1, 100)).astype(np.float32))[:, ::-1].copy()
    count = np.array([100], np.float32)
    specs = [TensorSpec(n, i, tuple(x.shape), x.dtype, 0.0, 0) for i, (n, x) in enumerate(
        zip(("boxes", "classes", "scores", "count"), (boxes, classes, scores, count),
            strict=True))]
    out.append(("detection [1, 100, 4] x 4 outputs", "typical",
                bind("detection", specs, 300), [boxes, classes, scores, count]))
    probs = quantize(rng.uniform(0, 0.2, (1, 1001)), 1 / 256, -128)
    out.append(("classification [1, 1001] int8, top 5", "typical",
                bind("classification", [spec(probs, 1 / 256, -128)], 224), [probs]))
    one = np.array([[0.7]], np.float32)
    out.append(("phrase [1, 1] float32", "typical", bind("phrase", [spec(one)], 16), [one]))
    return out


def worst_cases(rng: np.random.Generator) -> list[Case]:
    """Every candidate passes: the frames whose cost the candidate caps bound. Boxes are
    small and apart, so NMS suppresses little and every cluster is its own."""
    out: list[Case] = []

    def v8_all(n: int, classes: int) -> Array:
        boxes = np.column_stack([rng.uniform(0.05, 0.95, (n, 2)), np.full((n, 2), 0.004)])
        return np.concatenate([boxes, rng.uniform(0.6, 0.99, (n, classes))],
                              axis=1).T[None].astype(np.float32)

    v8 = v8_all(8400, 80)
    out.append(("yolo v8 [1, 84, 8400] float32", "worst", bind("yolo", [spec(v8)], 640), [v8]))
    q = quantize(v8, 1 / 255, -128)
    out.append(("yolo v8 [1, 84, 8400] int8", "worst",
                bind("yolo", [spec(q, 1 / 255, -128)], 640), [q]))
    q320 = quantize(v8_all(2100, 80), 1 / 255, -128)
    out.append(("yolo v8 [1, 84, 2100] int8 (320 px)", "worst",
                bind("yolo", [spec(q320, 1 / 255, -128)], 320), [q320]))
    rows = v8_all(25200, 80)[0].T
    v5 = quantize(np.concatenate([rows[:, :4], np.full((25200, 1), 0.95), rows[:, 4:]],
                                 axis=1)[None], 1 / 255, -128)
    out.append(("yolo v5 [1, 25200, 85] int8", "worst",
                bind("yolo", [spec(v5, 1 / 255, -128)], 640, yolo={"layout": "v5"}), [v5]))
    e2e = np.column_stack([rng.uniform(0, 600, (300, 2)), np.zeros((300, 2)),
                           np.full(300, 0.9), rng.integers(0, 80, 300)]).astype(np.float32)
    e2e[:, 2:4] = e2e[:, :2] + 20
    out.append(("yolo end2end [1, 300, 6] float32", "worst", bind("yolo", [spec(e2e[None])],
                                                                 640), [e2e[None]]))
    logits = np.full((1, 2100, 80), 100, np.int8)
    dist = quantize(rng.normal(0, 2, (1, 2100, 64)), 0.05, 0)
    out.append(("yolo split [1, 2100, 80] + [1, 2100, 64] int8", "worst",
                bind("yolo", [spec(logits, 0.1, 0), spec(dist, 0.05, 0)], 320),
                [logits, dist]))
    pose = np.concatenate([v8_all(8400, 1), rng.uniform(0, 1, (1, 51, 8400)).astype(
        np.float32)], axis=1)
    out.append(("yolo pose [1, 56, 8400] float32", "worst", bind("yolo", [spec(pose)], 640),
                [pose]))
    for name, make, n, k in ((BLAZEFACE, blazeface, 896, 16), (PALM, palm, 2016, 18)):
        reg = rng.normal(0, 1, (1, n, k)).astype(np.float32)
        reg[..., 2:4] = 1.0  # boxes of a pixel: apart from each other
        cls = np.full((1, n, 1), 5.0, np.float32)
        out.append((name, "worst", make(), [reg, cls]))
        out.append((name.replace("weighted", "plain"), "worst", make(nms="plain"), [reg, cls]))
    multi = rng.uniform(0.5, 1, (1, 6, 56)).astype(np.float32)
    out.append(("keypoints MoveNet multi [1, 6, 56]", "worst",
                bind("keypoints", [spec(multi)], 256, 0.2), [multi]))
    full = np.ones((1, 256, 256, 1), np.float32)
    out.append(("segmentation single-class [1, 256, 256, 1]", "worst",
                bind("segmentation", [spec(full)], 256), [full]))
    noise = rng.uniform(0, 1, (1, 256, 256, 1)).astype(np.float32)
    out.append(("segmentation single-class + RLE mask", "worst",
                bind("segmentation", [spec(noise)], 256, segmentation={"mask": "rle"}), [noise]))
    scores = rng.normal(0, 1, (1, 257, 257, 21)).astype(np.float32)  # every class somewhere
    out.append(("segmentation 21 classes [1, 257, 257, 21]", "worst",
                bind("segmentation", [spec(scores)], 257), [scores]))
    return out


def empty_cases(typical: list[Case]) -> list[Case]:
    """The typical frames' decoders on outputs where nothing passes (the common frame):
    every score at its lowest."""
    out: list[Case] = []
    for name, _, post, outputs in typical:
        if name.startswith(("phrase", "classification", "keypoints MoveNet single")):
            continue  # one score, or top-k: nothing to be empty
        low = [lowest(name, k, o) for k, o in enumerate(outputs)]
        out.append((name, "empty", post, low))
    return out


def lowest(name: str, index: int, output: Array) -> Array:
    """``output`` with its scores at their lowest and its other values as they were."""
    low = output.copy()
    floor = np.iinfo(output.dtype).min if output.dtype.kind == "i" else \
        (-20.0 if name.startswith(("anchors", "yolo split")) else 0.0)
    if name.startswith("yolo v8") or name.startswith("yolo pose"):
        low[0, 4:] = floor
    elif name.startswith("yolo v5"):
        low[0, :, 4:] = floor
    elif name.startswith("yolo end2end"):
        low[0, :, 4] = floor
    elif name.startswith("yolo split") or name.startswith("anchors"):
        if index == 0 if name.startswith("yolo split") else index == 1:
            low[:] = floor
    elif name.startswith("keypoints"):
        low[..., 2::3] = floor
        low[..., -1] = floor
    elif name.startswith("segmentation"):
        low[:] = -10.0 if output.shape[-1] > 1 else 0.0
        if output.shape[-1] > 1:
            low[..., 0] = 10.0  # all background
    elif name.startswith("detection") and index == 3:
        low[:] = 0
    return low


def real_cases() -> list[Case]:
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
        out.append((name, "real", post, outputs))
    return out


def time_one(call: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median CPU time of this thread and median wall time per call, in microseconds."""
    for _ in range(max(5, repeat // 10)):
        call()
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        call()
        wall.append(time.perf_counter_ns() - w0)
        cpu.append(time.thread_time_ns() - c0)
    return statistics.median(cpu) / 1000.0, statistics.median(wall) / 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--only", default="", help="only the rows whose name holds this")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    typical = cases(rng)
    every = typical + empty_cases(typical) + worst_cases(rng) + real_cases()
    order = {"empty": 0, "typical": 1, "worst": 2, "real": 3}
    every.sort(key=lambda c: (c[0].split(" [")[0].split(",")[0], c[0], order[c[1]]))
    rows = []
    for name, case, post, outputs in every:
        if args.only not in name:
            continue
        found = post(outputs, geometry=GEOMETRY)

        def call(p: PostProcessor = post, o: list[Array] = outputs) -> object:
            return p(o, geometry=GEOMETRY)

        cpu, wall = time_one(call, args.repeat)
        count = found.get("count", len(found.get("top_k", ())) if "top_k" in found else "-")
        rows.append((name, case, cpu, wall, count))
        if not args.markdown:
            print(f"{name:62s} {case:8s} {cpu:10,.1f} us cpu {wall:10,.1f} us wall   "
                  f"({count} results)", flush=True)
    if args.markdown:
        print("| decoder and output | frame | CPU per call | wall per call | results |")
        print("|---|---|---|---|---|")
        for name, case, cpu, wall, count in rows:
            print(f"| {name} | {case} | {cpu:,.0f} µs | {wall:,.0f} µs | {count} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
