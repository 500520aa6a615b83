"""Every registered decoder is total (issue 20): for any output its layouts admit, of the
shapes and dtypes real models have, it gives a result of its documented shape, finite and
in range, or refuses with a MessageError (model_error) that says why; nothing else.

Each decoder has a builder here (``BUILDERS``) that turns drawn parameters into a bound
decoder and its outputs. The values come from fill patterns that reach the cases the issue
lists: no candidate above the threshold, every candidate above it (896 anchors, 8400 YOLO
boxes), degenerate boxes, quantized extremes (-128 and 127, 0 and 255), one class and
many, keypoints all below their score, empty and full masks, and NaN or infinity from a
float model. ``test_every_registered_decoder_has_a_builder`` fails for a decoder in
:data:`edged.postprocess.registry.DECODERS` that has none: a new decoder is not
registered without these tests.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.config import ModelConfig
from edged.errors import MessageError
from edged.image import Geometry
from edged.postprocess.base import PostProcessor
from edged.postprocess.options import AnomalyOptions, PostOptions
from edged.postprocess.registry import DECODERS, postprocessor_for
from edged.runtime.tensors import TensorSpec

Array = np.ndarray[Any, Any]

# How an output is filled. Quantized: "low"/"high" are the dtype's extremes (-128/127,
# 0/255); float: large negative/positive values. "nan" is a float model gone wrong.
PATTERNS = ("low", "high", "zero", "noise", "sparse", "nan")
DTYPES = ("float32", "int8", "uint8")
GEOMETRIES: tuple[Geometry | None, ...] = (
    None,
    Geometry(480, 640, 0.125, 0.0, 0.75, 1.0),      # 640x480 letterboxed into a square
    Geometry(640, 480, 0.0, -0.1667, 1.0, 1.3333),  # 480x640 cropped to a square
    Geometry(1, 4000, 0.49988, 0.0, 0.00025, 1.0),  # a 4000x1 strip letterboxed
)


@dataclass
class Case:
    """A bound decoder, the outputs to give it, and what its result must satisfy."""

    post: PostProcessor
    outputs: list[Array]
    check: Callable[[dict[str, Any], Case], None]
    geometry: Geometry | None = None
    model_input: Array | None = None
    threshold: float = 0.0
    limit: int | None = None  # max_detections / top_k
    keys: dict[str, Any] = field(default_factory=dict)

    @property
    def finite(self) -> bool:
        return all(o.dtype.kind not in "fc" or bool(np.isfinite(o).all())
                   for o in self.outputs)


# -- filling outputs ------------------------------------------------------------------------


def quantization(dtype: str, rng: np.random.Generator) -> tuple[float, int]:
    if dtype == "float32":
        return 0.0, 0
    scale = float(rng.choice([1 / 255, 0.00390625, 0.1, 1.0]))
    if dtype == "int8":
        return scale, int(rng.choice([-128, 0, 127]))
    return scale, int(rng.choice([0, 128, 255]))


def fill(shape: tuple[int, ...], dtype: str, pattern: str, rng: np.random.Generator,
         low: float = -1e4, high: float = 1e4) -> Array:
    """An array of ``shape`` and ``dtype`` filled by ``pattern`` (see PATTERNS); float
    extremes are ``low`` and ``high``."""
    if math.prod(shape) == 0:
        return np.zeros(shape, dtype)
    if dtype == "float32":
        lo, hi = low, high
        if pattern == "low":
            return np.full(shape, lo, np.float32)
        if pattern == "high":
            return np.full(shape, hi, np.float32)
        if pattern == "zero":
            return np.zeros(shape, np.float32)
        out = rng.uniform(lo, hi, shape).astype(np.float32)
        if pattern == "sparse":
            out = np.full(shape, lo, np.float32)
            flat = out.reshape(-1)
            picks = rng.choice(flat.size, min(flat.size, 5), replace=False)
            flat[picks] = rng.uniform(lo, hi, len(picks))
        if pattern == "nan":
            flat = out.reshape(-1)
            picks = rng.choice(flat.size, max(1, flat.size // 7), replace=False)
            flat[picks] = rng.choice([np.nan, np.inf, -np.inf], len(picks))
        return out
    info = np.iinfo(np.dtype(dtype))
    if pattern in ("low", "nan"):
        return np.full(shape, info.min, dtype)
    if pattern == "high":
        return np.full(shape, info.max, dtype)
    if pattern == "zero":
        return np.zeros(shape, dtype)
    if pattern == "sparse":
        out = np.full(shape, info.min, dtype)
        flat = out.reshape(-1)
        picks = rng.choice(flat.size, min(flat.size, 5), replace=False)
        flat[picks] = info.max
        return out
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


def spec_of(name: str, index: int, array: Array, scale: float = 0.0, zero: int = 0
            ) -> TensorSpec:
    return TensorSpec(name, index, tuple(array.shape), array.dtype, scale, zero)


def image_input(height: int, width: int | None = None) -> TensorSpec:
    return TensorSpec("in", 0, (1, height, width or height, 3), np.dtype(np.uint8), 1 / 255, 0)


def bind(kind: str, specs: list[TensorSpec], *, input_spec: TensorSpec | None = None,
         labels: tuple[str, ...] = (), threshold: float = 0.5, top_k: int = 3,
         max_detections: int | None = None, class_threshold: float | None = None,
         anomaly_options: AnomalyOptions | None = None, **keys: Any) -> PostProcessor:
    config = ModelConfig(path=Path("m.tflite"), postprocess=kind, score_threshold=threshold,
                         max_detections=max_detections, top_k=top_k, **keys)
    options = PostOptions(top_k=top_k, threshold=class_threshold, score_threshold=threshold,
                          max_detections=max_detections, anomaly=anomaly_options)
    return postprocessor_for(kind, specs, labels, top_k, options=options,
                             input_spec=input_spec, config=config)


# -- what results must be -------------------------------------------------------------------


def in_unit(value: Any) -> bool:
    return isinstance(value, float) and 0.0 <= value <= 1.0


def check_box(box: dict[str, Any], strict: bool = True) -> None:
    assert set(box) == {"ymin", "xmin", "ymax", "xmax"}, box
    assert all(in_unit(v) for v in box.values()), box
    if strict:
        assert box["ymin"] < box["ymax"] and box["xmin"] < box["xmax"], box
    else:
        assert box["ymin"] <= box["ymax"] and box["xmin"] <= box["xmax"], box


def check_keypoints(points: list[dict[str, Any]], count: int) -> None:
    assert len(points) == count
    for p in points:
        assert isinstance(p["name"], str)
        assert (p["y"] is None) == (p["x"] is None), p
        assert p["y"] is None or (in_unit(p["y"]) and in_unit(p["x"])), p
        if "score" in p:
            assert p["score"] is None or math.isfinite(p["score"]), p


def check_detections(result: dict[str, Any], case: Case) -> None:
    assert set(result) == {"count", "detections"}, result
    found = result["detections"]
    assert result["count"] == len(found)
    if case.limit is not None:
        assert len(found) <= case.limit
    scores = [d["score"] for d in found]
    for det in found:
        assert {"index", "label", "score", "box"} <= set(det) <= {
            "index", "label", "score", "box", "keypoints"}, det
        assert isinstance(det["index"], int) and isinstance(det["label"], str)
        assert math.isfinite(det["score"]) and det["score"] >= case.threshold - 1e-6, det
        check_box(det["box"])
        if "keypoints" in det:
            check_keypoints(det["keypoints"], case.keys["keypoints"])
    if case.keys.get("sorted", True):
        assert scores == sorted(scores, reverse=True), scores


def check_poses(result: dict[str, Any], case: Case) -> None:
    assert set(result) == {"count", "poses"}, result
    poses = result["poses"]
    assert result["count"] == len(poses)
    if case.limit is not None:
        assert len(poses) <= case.limit
    for pose in poses:
        assert math.isfinite(pose["score"]) and pose["score"] >= case.threshold - 1e-6
        if "box" in pose:
            check_box(pose["box"], strict=False)
        check_keypoints(pose["keypoints"], case.keys["keypoints"])
        if case.keys.get("all_hidden"):
            assert all(p["y"] is None for p in pose["keypoints"]), pose


def check_classification(result: dict[str, Any], case: Case) -> None:
    assert set(result) == {"label", "score", "top_k"}, result
    top = result["top_k"]
    assert case.limit is not None and len(top) <= case.limit
    if not top:
        assert result["label"] is None and result["score"] is None
        return
    assert result["label"] == top[0]["label"] and result["score"] == top[0]["score"]
    for entry in top:
        assert set(entry) == {"index", "label", "score"}
        assert 0 <= entry["index"] < case.keys["classes"]
        assert math.isfinite(entry["score"])
    scores = [e["score"] for e in top]
    assert scores == sorted(scores, reverse=True)


def check_score(result: dict[str, Any], case: Case) -> None:
    assert set(result) == {"score"}, result
    assert math.isfinite(result["score"])


def check_segmentation(result: dict[str, Any], case: Case) -> None:
    mask = case.keys["mask"]
    assert set(result) == ({"count", "classes"} | ({"mask"} if mask != "none" else set()))
    assert result["count"] == len(result["classes"])
    total = 0.0
    for entry in result["classes"]:
        assert set(entry) == {"index", "label", "area", "box"}
        assert isinstance(entry["index"], int) and entry["index"] >= 0
        assert 0.0 < entry["area"] <= 1.0
        total += entry["area"]
        check_box(entry["box"], strict=False)
    assert total <= 1.0 + 1e-5
    if case.keys.get("full") is not None:  # one class everywhere: all of the frame or nothing
        assert result["count"] == case.keys["full"]
        if case.keys["full"]:
            assert result["classes"][0]["area"] == 1.0
    if mask == "rle":
        rle = result["mask"]
        assert sum(rle["counts"]) == rle["size"][0] * rle["size"][1]
        assert len(rle["counts"]) == len(rle["values"])
    elif mask == "png":
        assert result["mask"]["format"] == "png" and result["mask"]["data"]


def check_raw(result: dict[str, Any], case: Case) -> None:
    assert set(result) == {"outputs"}
    assert len(result["outputs"]) == len(case.outputs)
    for entry, output in zip(result["outputs"], case.outputs, strict=True):
        assert entry["shape"] == list(output.shape)
        assert np.asarray(entry["data"]).size == output.size


# -- the decoders ---------------------------------------------------------------------------


def classification_case(p: dict[str, Any], rng: np.random.Generator) -> Case:
    classes, dtype = p["classes"], p["dtype"]
    scale, zero = quantization(dtype, rng)
    out = fill((1, classes), dtype, p["pattern"], rng)
    labels = tuple(f"c{i}" for i in range(classes)) if p["labels"] else ()
    threshold = p["class_threshold"]
    post = bind("classification", [spec_of("s", 0, out, scale, zero)], labels=labels,
                top_k=p["top_k"], class_threshold=threshold)
    return Case(post, [out], check_classification, limit=p["top_k"],
                keys={"classes": classes})


def detection_case(p: dict[str, Any], rng: np.random.Generator) -> Case:
    n, pattern = p["rows"], p["pattern"]
    boxes = fill((1, n, 4), "float32", pattern, rng, -0.5, 1.5)
    if p["degenerate"]:  # zero and negative sizes, and boxes wholly outside the frame
        boxes[0, ::3, 2:] = boxes[0, ::3, :2]
        boxes[0, 1::3, 2:] = boxes[0, 1::3, :2] - 0.1
        boxes[0, 2::3] += 3.0
    classes = fill((1, n), "float32", pattern, rng, 0, 90).round()
    scores = fill((1, n), "float32", pattern, rng, 0, 1)
    count = np.array([p["count"] if p["count"] is not None else n], np.float32)
    outputs = [boxes, classes, scores, count]
    names = ["boxes", "classes", "scores", "count"] if p["named"] else ["a", "b", "c", "d"]
    order = p["order"]
    outputs = [outputs[i] for i in order]
    specs = [spec_of(names[i], k, outputs[k]) for k, i in enumerate(order)]
    post = bind("detection", specs, threshold=p["threshold"],
                max_detections=p["max_detections"])
    return Case(post, outputs, check_detections, p["geometry"], threshold=p["threshold"],
                limit=p["max_detections"])


def anomaly_case(p: dict[str, Any], rng: np.random.Generator) -> Case:
    dtype, source = p["dtype"], p["source"]
    scale, zero = quantization(dtype, rng)
    size = {"output": 1, "class": 4, "reconstruction": 24}[source]
    out = fill((1, size), dtype, p["pattern"], rng)
    input_spec = TensorSpec("in", 0, (1, size), np.dtype(np.int8), 0.05, 0)
    model_input = fill((1, size), "int8", "noise", rng)
    options = AnomalyOptions(source, 0.5, class_index=2 if source == "class" else 0)
    post = bind("anomaly", [spec_of("s", 0, out, scale, zero)], input_spec=input_spec,
                anomaly_options=options,
                anomaly={"source": source, "threshold": 0.5,
                         **({"label": "2"} if source == "class" else {})})
    return Case(post, [out], check_score, model_input=model_input)


def raw_case(p: dict[str, Any], rng: np.random.Generator) -> Case:
    outputs, specs = [], []
    for k, (shape, dtype) in enumerate(p["tensors"]):
        scale, zero = quantization(dtype, rng)
        out = fill(shape, dtype, p["pattern"], rng)
        outputs.append(out)
        specs.append(spec_of(f"o{k}", k, out, scale, zero))
    return Case(bind("raw", specs), outputs, check_raw)


def yolo_case(p: dict[str, Any], rng: np.random.Generator) -> Case:
    layout, dtype, pattern, n = p["layout"], p["dtype"], p["pattern"], p["boxes"]
    classes = p["classes"]
    scale, zero = quantization(dtype, rng)
    size, keys, extra = 640, {}, {}
    low, high = (-1e4, 1e4) if pattern != "noise" else (-2.0, 2.0)
    if layout == "split":
        size = {84: 64, 2100: 320, 8400: 640}[n]
        logits = fill((1, n, classes), dtype, pattern, rng, low, high)
        dist = fill((1, n, 64), dtype, p["box_pattern"], rng, low, high)
        s2, z2 = quantization(dtype, rng)
        specs = [spec_of("scores", 0, logits, scale, zero), spec_of("boxes", 1, dist, s2, z2)]
        outputs = [logits, dist]
    elif layout == "end2end":
        out = fill((1, n, 6), dtype, pattern, rng, -2.0, 700.0)
        if p["degenerate"]:
            out[0, ::2, 2:4] = out[0, ::2, 0:2]
        specs, outputs = [spec_of("out", 0, out, scale, zero)], [out]
    else:
        features = {"v8": 4 + classes, "v5": 5 + classes, "pose": 5 + 3 * 17}[layout]
        n = n if n > features else 2100  # the orientation is told by boxes outnumbering features
        shape = (1, n, features) if layout == "v5" or p["features_last"] else (1, features, n)
        out = fill(shape, dtype, pattern, rng, low, high)
        if p["degenerate"] and dtype == "float32":  # zero, negative and off-frame boxes
            rows = out[0] if shape[1] == n else out[0].T
            rows[::3, 2:4] = 0.0
            rows[1::3, 2:4] = -0.2
            rows[2::3, 0:2] = 5.0
        specs, outputs = [spec_of("out", 0, out, scale, zero)], [out]
        keys["keypoints"] = 17
    if layout != "split":
        extra["layout"] = layout
    if layout == "pose":
        classes = 1
    post = bind("yolo", specs, input_spec=image_input(size), threshold=p["threshold"],
                max_detections=p["max_detections"],
                labels=tuple(f"c{i}" for i in range(classes))
                if layout in ("v8", "v5", "split") else (),
                yolo={**extra, "max_candidates": p["max_candidates"],
                      "class_agnostic": p["agnostic"]})
    return Case(post, outputs, check_detections, p["geometry"], threshold=p["threshold"],
                limit=p["max_detections"], keys=keys)


ANCHOR_HEADS = {  # input size, strides, anchors per cell, keypoints
    "tiny": (16, [8, 16], [1, 1], 1),
    "blazeface": (128, [8, 16], [2, 6], 6),
    "palm": (192, [8, 16], [2, 6], 7),
    "no keypoints": (32, [8, 16], [2, 2], 0),
}


def anchors_case(p: dict[str, Any], rng: np.random.Generator) -> Case:
    size, strides, per_cell, keypoints = ANCHOR_HEADS[p["head"]]
    n = sum(math.ceil(size / s) ** 2 * c for s, c in zip(strides, per_cell, strict=True))
    dtype = p["dtype"]
    scale, zero = quantization(dtype, rng)
    s2, z2 = quantization(dtype, rng)
    reg = fill((1, n, 4 + 2 * keypoints), dtype, p["box_pattern"], rng, -300.0, 300.0)
    scores = fill((1, n, p["classes"]), dtype, p["pattern"], rng, -300.0, 300.0)
    specs = [spec_of("regressors", 0, reg, s2, z2), spec_of("classificators", 1, scores,
                                                            scale, zero)]
    post = bind("anchors", specs, input_spec=image_input(size), threshold=p["threshold"],
                max_detections=p["max_detections"],
                anchors={"strides": strides, "anchors_per_cell": per_cell,
                         "keypoints": keypoints, "nms": p["nms"],
                         "max_candidates": p["max_candidates"]})
    # Weighted NMS keeps each cluster's best score but averages its box: still best first.
    return Case(post, [reg, scores], check_detections, p["geometry"], threshold=p["threshold"],
                limit=p["max_detections"], keys={"keypoints": keypoints})


def keypoints_case(p: dict[str, Any], rng: np.random.Generator) -> Case:
    dtype, pattern = p["dtype"], p["pattern"]
    scale, zero = quantization(dtype, rng)
    if p["layout"] == "single":
        shape: tuple[int, ...] = (1, 1, p["keypoints"], 3)
        count = p["keypoints"]
    else:
        shape, count = (1, p["poses"], 56), 17
    out = fill(shape, dtype, pattern, rng, -2.0, 2.0)
    min_score = p["min_score"]
    all_hidden = False
    if p["hidden"] and dtype == "float32":  # every keypoint below min_score, poses kept
        points = out[..., :51].reshape(*out.shape[:-1], -1, 3) if p["layout"] == "multi" \
            else out
        points[..., 2] = min_score / 2
        all_hidden = True
    post = bind("keypoints", [spec_of("out", 0, out, scale, zero)],
                input_spec=image_input(192), threshold=p["threshold"],
                max_detections=p["max_detections"], keypoints={"min_score": min_score})
    return Case(post, [out], check_poses, p["geometry"], threshold=p["threshold"],
                limit=p["max_detections"], keys={"keypoints": count,
                                                 "all_hidden": all_hidden and min_score > 0})


def segmentation_case(p: dict[str, Any], rng: np.random.Generator) -> Case:
    h, w, mode, dtype = p["height"], p["width"], p["mode"], p["dtype"]
    keys: dict[str, Any] = {"mask": p["mask"]}
    scale, zero = quantization(dtype, rng)
    if mode == "classes":
        scale, zero = 0.0, 0
        dtype = p["map_dtype"]
        out = fill((1, h, w), dtype, p["pattern"], rng)
        if p["fill"] is not None:
            out[:] = p["fill"]
            keys["full"] = 0 if p["fill"] == p["background"] else 1
    else:
        channels = p["classes"] if mode == "scores" else 1
        out = fill((1, h, w, channels), dtype, p["pattern"], rng, -5.0, 5.0)
        if mode == "single" and p["pattern"] in ("low", "high", "zero"):
            value = float(out.reshape(-1)[0])  # an empty or a full mask
            real = (value - zero) * scale if scale else value
            keys["full"] = int(real >= 0.5)
    post = bind("segmentation", [spec_of("mask", 0, out, scale, zero)],
                input_spec=image_input(h, w),
                segmentation={"mask": p["mask"], "min_area": p["min_area"],
                              "background": p["background"]})
    if p["min_area"] > 0 or p["geometry"] is not None:
        keys.pop("full", None)
    return Case(post, [out], check_segmentation, p["geometry"], keys=keys)


def phrase_case(p: dict[str, Any], rng: np.random.Generator) -> Case:
    dtype = p["dtype"]
    scale, zero = quantization(dtype, rng)
    out = fill((1, 1), dtype, p["pattern"], rng)
    return Case(bind("phrase", [spec_of("score", 0, out, scale, zero)]), [out], check_score)


# -- the parameters each builder takes, as strategies ----------------------------------------


def common() -> dict[str, st.SearchStrategy[Any]]:
    return {"pattern": st.sampled_from(PATTERNS), "dtype": st.sampled_from(DTYPES),
            "geometry": st.sampled_from(GEOMETRIES), "seed": st.integers(0, 2**32 - 1)}


def thresholds() -> dict[str, st.SearchStrategy[Any]]:
    return {"threshold": st.sampled_from([0.0, 0.25, 0.5, 0.99, 1.0]),
            "max_detections": st.sampled_from([None, 1, 10])}


Builder = tuple[Callable[[dict[str, Any], np.random.Generator], Case],
                dict[str, st.SearchStrategy[Any]]]

BUILDERS: dict[str, Builder] = {
    "classification": (classification_case, {
        "classes": st.sampled_from([1, 2, 10, 33, 1001]), "top_k": st.sampled_from([1, 3, 1000]),
        "labels": st.booleans(), "class_threshold": st.sampled_from([None, 0.0, 0.5])}),
    "detection": (detection_case, {
        "rows": st.sampled_from([1, 10, 100]), "degenerate": st.booleans(),
        "count": st.sampled_from([None, 0, 3, 1000, -1, float("nan"), float("inf")]),
        "named": st.booleans(), "order": st.permutations(range(4)), **thresholds()}),
    "anomaly": (anomaly_case, {"source": st.sampled_from(["output", "class",
                                                          "reconstruction"])}),
    "raw": (raw_case, {"tensors": st.lists(st.tuples(
        st.sampled_from([(1,), (1, 1), (1, 10), (2, 3, 4), (1, 0)]), st.sampled_from(DTYPES)),
        min_size=1, max_size=3)}),
    "yolo": (yolo_case, {
        "layout": st.sampled_from(["v8", "v5", "end2end", "split", "pose"]),
        "boxes": st.sampled_from([84, 2100, 8400]), "classes": st.sampled_from([1, 3, 80]),
        "features_last": st.booleans(), "box_pattern": st.sampled_from(PATTERNS),
        "degenerate": st.booleans(), "agnostic": st.booleans(),
        "max_candidates": st.sampled_from([1, 300, 10_000]), **thresholds()}),
    "anchors": (anchors_case, {
        "head": st.sampled_from(sorted(ANCHOR_HEADS)), "classes": st.sampled_from([1, 2]),
        "box_pattern": st.sampled_from(PATTERNS), "nms": st.sampled_from(["weighted", "plain"]),
        "max_candidates": st.sampled_from([1, 300, 10_000]), **thresholds()}),
    "keypoints": (keypoints_case, {
        "layout": st.sampled_from(["single", "multi"]), "keypoints": st.sampled_from([1, 17]),
        "poses": st.sampled_from([1, 6]), "min_score": st.sampled_from([0.0, 0.3, 1.0]),
        "hidden": st.booleans(), **thresholds()}),
    "segmentation": (segmentation_case, {
        "height": st.sampled_from([1, 17, 256]), "width": st.sampled_from([1, 31, 256]),
        "mode": st.sampled_from(["scores", "single", "classes"]),
        "classes": st.sampled_from([2, 21]), "map_dtype": st.sampled_from(["uint8", "int32"]),
        "fill": st.sampled_from([None, 0, 1, 255]),
        "mask": st.sampled_from(["none", "rle", "png"]),
        "min_area": st.sampled_from([0.0, 0.01]), "background": st.sampled_from([0, None])}),
    "phrase": (phrase_case, {}),
}


def build(name: str, params: dict[str, Any]) -> Case:
    builder, _ = BUILDERS[name]
    rng = np.random.default_rng(params["seed"])
    case = builder(params, rng)
    case.geometry = params.get("geometry")
    return case


def decode(case: Case) -> dict[str, Any] | None:
    """The decoder's result, checked; None when it refused the outputs with a reason."""
    try:
        result = case.post(case.outputs, geometry=case.geometry, model_input=case.model_input)
    except MessageError as exc:
        # Only a model gone wrong may be refused, and the reason says what it gave.
        assert exc.reason == "model_error" and str(exc), exc
        return None
    json.dumps(result, allow_nan=False)  # what edged publishes: finite numbers only
    case.check(result, case)
    return result


def test_every_registered_decoder_has_a_builder() -> None:
    missing = sorted(set(DECODERS) - set(BUILDERS))
    assert not missing, (f"decoders without property tests: {missing}; add a builder to "
                         "BUILDERS in tests/test_decoder_properties.py")
    assert set(BUILDERS) <= set(DECODERS), sorted(set(BUILDERS) - set(DECODERS))


@pytest.mark.parametrize("name", list(DECODERS))
@settings(max_examples=60)
@given(data=st.data())
def test_every_decoder_is_total(name: str, data: st.DataObject) -> None:
    assert name in BUILDERS, f"postprocess {name!r} has no builder in BUILDERS"
    _, strategies = BUILDERS[name]
    params = data.draw(st.fixed_dictionaries({**common(), **strategies}), label="params")
    case = build(name, params)
    result = decode(case)
    if result is None:  # refused: only for NaN or infinity, or values that are no class
        assert not case.finite or (name == "segmentation" and params["mode"] == "classes")
