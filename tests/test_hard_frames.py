"""Frames with nothing in them are the common case (issue 20). Every bundled model and
every third-party model the tests use, served by one real edged through a real mosquitto,
answers black, white, grey and noise frames, a single pixel, the largest frame its
route's ``max_pixels`` allows (12 megapixels; and the default, 40, on one model) and
strips far from its aspect, with a result of its
documented shape: never an error, and never ``internal_error``. A frame one row over the
limit is ``bad_input``. The models without image input (vibration, and openWakeWord's
melspectrogram, embedding and classifiers) get their own extremes: silence, full scale,
noise; and inputs on which openWakeWord's melspectrogram and timer models give NaN, which
are a ``model_error`` that says so (they were an ``internal_error``: JSON refused them).

Where a model has an independent reference, the answers match it: MediaPipe's own
pipelines (BlazeFace, the palm detector, selfie segmentation; recorded in
tests/data/mediapipe_goldens.json by scripts/models/reference_goldens.py from the same pixels)
find nothing in any of these frames, and neither may edged; edgefirst-decoder decodes the
bundled v8-layout YOLO's outputs for each frame, and edged's count is its count.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edged.config import InputConfig
from edged.image import ImageOptions, decode_frame
from edged.runtime import select_backend
from edged.runtime.tensors import TensorSpec
from tests.support.broker import Broker
from tests.support.daemon import MODELS, REPO, Edged
from tests.support.frames import LARGEST, hard_frames, png
from tests.support.probe import Probe
from tests.test_streams import edged_config, start

pytestmark = pytest.mark.integration

CACHE = REPO / ".cache" / "third_party"
WAKE = REPO / ".cache" / "models" / "openwakeword"
DATA = Path(__file__).parent / "data"
REFERENCE = json.loads((DATA / "mediapipe_goldens.json").read_text())["hard_frames"]
MAX_PIXELS = LARGEST[0] * LARGEST[1]
DEFAULT_MAX_PIXELS = int(InputConfig.model_fields["max_pixels"].default)

BOXES = {"count", "detections"}
RESULT_KEYS = {  # the documented shape of each decoder's result (README)
    "classification": {"label", "score", "top_k"},
    "detection": BOXES, "yolo": BOXES, "anchors": BOXES,
    "keypoints": {"count", "poses"},
    "segmentation": {"count", "classes", "mask"},
    "raw": {"outputs"},
}


def models() -> dict[str, Any]:
    def bundled(file: str, postprocess: str, labels: str | None = None,
                **keys: Any) -> dict[str, Any]:
        entry = {"path": str(MODELS / file), "postprocess": postprocess, **keys}
        if labels:
            entry["labels"] = str(MODELS / labels)
        return entry

    return {
        "digits": bundled("digits_int8.tflite", "classification", "digits.labels"),
        "features": bundled("digits_features_int8.tflite", "raw"),
        "chained_features": bundled("digits_features_int8.tflite", "raw"),
        "head": bundled("digits_head_int8.tflite", "classification", "digits.labels"),
        "mobilenet": bundled("mobilenet_v2_1.0_224_quant.tflite", "classification"),
        "shapes": bundled("shapes_detect_int8.tflite", "detection", "shapes.labels"),
        "yolo": bundled("shapes_yolov8_int8.tflite", "yolo", "shapes.labels",
                        yolo={"iou_threshold": 0.5}),
        "yolo_split": bundled("shapes_yolo_split_int8.tflite", "yolo", "shapes.labels"),
        "dots": bundled("dots_keypoints_int8.tflite", "keypoints",
                        keypoints={"min_score": 0.3}),
        "vibration": bundled("vibration_int8.tflite", "anomaly", "vibration.labels",
                             anomaly={"source": "class", "label": "normal", "threshold": 0.5,
                                      "direction": "below"}),
        "faces": {"path": str(CACHE / "face_detection_short_range.tflite"),
                  "postprocess": "anchors", "keypoint_labels": str(DATA / "blazeface.keypoints"),
                  "anchors": {"strides": [8, 16], "anchors_per_cell": [2, 6], "keypoints": 6}},
        "palms": {"path": str(CACHE / "palm_detection_lite.tflite"), "postprocess": "anchors",
                  "anchors": {"strides": [8, 16], "anchors_per_cell": [2, 6], "keypoints": 7}},
        "people": {"path": str(CACHE / "selfie_segmentation.tflite"),
                   "postprocess": "segmentation", "labels": str(DATA / "person.labels"),
                   "segmentation": {"mask": "rle"}},
        "people_png": {"path": str(CACHE / "selfie_segmentation.tflite"),
                       "postprocess": "segmentation", "segmentation": {"mask": "png"}},
        "jarvis": {"path": str(WAKE / "hey_jarvis_v0.1.tflite"), "postprocess": "phrase"},
        "timer": {"path": str(WAKE / "timer_v0.1.tflite"), "postprocess": "classification"},
        "mel": {"path": str(WAKE / "melspectrogram.tflite"), "input_shape": [1, 1760],
                "postprocess": "raw"},
        "embedding": {"path": str(WAKE / "embedding_model.tflite"), "postprocess": "raw"},
    }


# Image routes: (route and model, resize, extra input keys). Every resize mode is taken by
# some model, so letterbox bars, crops and stretches of the strips are all on the way.
IMAGE_ROUTES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("digits", "digits", "stretch", {}),
    ("chain", "chained_features", "crop", {}),
    ("features", "features", "letterbox", {}),
    ("mobilenet", "mobilenet", "crop", {"mean": [0.5], "std": [0.5]}),
    ("shapes", "shapes", "letterbox", {}),
    ("yolo", "yolo", "letterbox", {"pad_value": 128}),
    ("yolo_split", "yolo_split", "stretch", {}),
    ("dots", "dots", "crop", {}),
    ("faces", "faces", "letterbox", {"mean": [0.5], "std": [0.5]}),
    ("palms", "palms", "letterbox", {}),
    ("people", "people", "letterbox", {}),
    ("people_png", "people_png", "crop", {}),
]


def routes() -> list[dict[str, Any]]:
    out = []
    for name, model, resize, keys in IMAGE_ROUTES:
        route: dict[str, Any] = {
            "name": name, "subscribe": f"hard/{name}", "model": model,
            "input": {"format": "image", "resize": resize, "max_pixels": MAX_PIXELS, **keys},
            "deadline_ms": 120_000, "queue_size": 64}
        if name == "chain":
            route["chain"] = ["head"]
        out.append(route)
    # The largest frame edged takes by default, on one model (it is 40 megapixels: a few
    # seconds to encode here and to decode in edged).
    out.append({"name": "faces_default", "subscribe": "hard/faces_default", "model": "faces",
                "input": {"format": "image", "resize": "letterbox", "mean": [0.5],
                          "std": [0.5]}, "deadline_ms": 120_000})
    for name in RAW_ROUTES:
        out.append({"name": name, "subscribe": f"hard/{name}", "model": name,
                    "input": {"format": "raw"}, "deadline_ms": 120_000})
    return out


RAW_ROUTES = ("vibration", "jarvis", "timer", "mel", "embedding")
GONE_WRONG = "NaN out"  # inputs on which the model's outputs are NaN


def postprocess_of(route: str) -> str:
    model = next(m for n, m, _, _ in IMAGE_ROUTES if n == route)
    return "classification" if route == "chain" else str(models()[model]["postprocess"])


def raw_inputs() -> dict[str, list[tuple[str, bytes]]]:
    """The non-image models' extremes: zeros, the dtype's lowest and highest, noise."""
    rng = np.random.default_rng(21)
    vib = [("zeros", np.zeros((128, 3), np.int8)), ("lowest", np.full((128, 3), -128, np.int8)),
           ("highest", np.full((128, 3), 127, np.int8)),
           ("noise", rng.integers(-128, 128, (128, 3), dtype=np.int8))]
    jarvis = [("zeros", np.zeros((16, 96), np.float32)),
              ("large", np.full((16, 96), 1e30, np.float32)),
              ("negative", np.full((16, 96), -1e30, np.float32)),
              ("noise", rng.normal(0, 10, (16, 96)).astype(np.float32))]
    timer = [("zeros", np.zeros((34, 96), np.float32)),
             ("large", np.full((34, 96), 1e30, np.float32)),
             ("noise", rng.normal(0, 10, (34, 96)).astype(np.float32))]
    mel = [("silence", np.zeros(1760, np.float32)),  # int16 sample values, as float32
           ("full scale", np.full(1760, 32767.0, np.float32)),
           ("clipped square", np.where(np.arange(1760) % 40 < 20, 32767.0, -32768.0)
            .astype(np.float32)),
           ("noise", rng.uniform(-32768, 32767, 1760).astype(np.float32))]
    embedding = [("zeros", np.zeros((76, 32), np.float32)),
                 ("large", np.full((76, 32), 1e3, np.float32)),
                 ("noise", rng.normal(0, 10, (76, 32)).astype(np.float32))]
    # Finite inputs whose outputs are NaN: what a model gone wrong gives (model_error).
    timer.append((GONE_WRONG, np.full((34, 96), 3.4e38, np.float32)))
    mel.append((GONE_WRONG, np.full(1760, 1e20, np.float32)))
    inputs: dict[str, list[tuple[str, np.ndarray[Any, Any]]]] = {
        "vibration": vib, "jarvis": jarvis, "timer": timer, "mel": mel, "embedding": embedding}
    return {route: [(n, a.tobytes()) for n, a in arrays] for route, arrays in inputs.items()}


def edgefirst_count(pixels: np.ndarray[Any, Any]) -> int:
    """edgefirst-decoder's detections in the bundled v8-layout YOLO's outputs for a frame
    as the yolo route fits it (letterbox, grey bars), at the route's thresholds."""
    import edgefirst.decoder as ef
    import edgefirst.tensor as ef_tensor

    interp = select_backend().interpreter_class(
        model_path=str(MODELS / "shapes_yolov8_int8.tflite"))
    interp.allocate_tensors()
    inp = TensorSpec.from_detail(interp.get_input_details()[0])
    [out] = [TensorSpec.from_detail(d) for d in interp.get_output_details()]
    config = InputConfig(format="image", resize="letterbox", pad_value=128,
                         max_pixels=MAX_PIXELS)
    frame = decode_frame(png(pixels), "image", ImageOptions.from_config(config, inp.shape))
    tensor = np.clip(np.rint(frame.array / inp.scale + inp.zero_point), 0, 255)
    interp.set_tensor(inp.index, tensor.astype(inp.dtype)[None])
    interp.invoke()
    raw = interp.get_tensor(out.index)
    decoder = ef.Decoder.new_from_outputs(
        [ef.Output.detection(shape=list(out.shape)).with_quantization(
            scale=out.scale, zero_point=out.zero_point)],
        score_threshold=0.5, iou_threshold=0.5)
    t = ef_tensor.Tensor(list(raw.shape), dtype="int8")
    t.from_numpy(raw)
    _, scores, _, _ = decoder.decode([t])
    return len(scores)


def check_result(route: str, frame: str, result: dict[str, Any]) -> None:
    kind = postprocess_of(route)
    keys = RESULT_KEYS[kind] - ({"mask"} if kind != "segmentation" else set())
    assert set(result) == keys, (route, frame, result)
    if "count" in keys:
        listed = result["detections" if "detections" in keys else
                        "poses" if "poses" in keys else "classes"]
        assert result["count"] == len(listed), (route, frame, result)
        for entry in listed:
            box = entry.get("box")
            if box is not None:
                assert all(0.0 <= v <= 1.0 for v in box.values()), (route, frame, entry)
    if kind == "segmentation":
        mask = result["mask"]
        if mask["format"] == "rle":
            assert sum(mask["counts"]) == mask["size"][0] * mask["size"][1]
        else:
            assert mask["format"] == "png" and mask["data"]


def summary(value: dict[str, Any]) -> str:
    """One answer in a few words, for the test's log."""
    if "reason" in value:
        return str(value["reason"])
    if "count" in value:
        return f"count {value['count']}"
    if "top_k" in value:
        return f"label {value['label']}"
    if "outputs" in value:
        return f"{len(value['outputs'])} output(s)"
    return ", ".join(f"{k} {v}" for k, v in value.items() if k in ("score", "state"))


def test_every_model_answers_every_hard_frame(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    start(tmp_path, edged_config(broker.port, models(), routes(), device_id="hard-box"),
          probe, daemons)
    probe.subscribe("replies/hard")
    frames = {name: png(pixels) for name, pixels in hard_frames().items()}
    over = png(np.full((LARGEST[0] + 1, LARGEST[1], 3), 128, np.uint8))
    sent: dict[bytes, tuple[str, str]] = {}

    def send(route: str, tag: str, payload: bytes) -> None:
        key = f"{route}|{tag}".encode()
        sent[key] = (route, tag)
        probe.publish(f"hard/{route}", payload, response_topic="replies/hard",
                      correlation_data=key)

    for name, _, _, _ in IMAGE_ROUTES:
        for tag, payload in frames.items():
            send(name, tag, payload)
        send(name, "over the limit", over)
        time.sleep(0.05)  # the largest frames are decoded one by one: do not flood the queues
    for route, inputs in raw_inputs().items():
        for tag, payload in inputs:
            send(route, tag, payload)
    width = 8000
    send("faces_default", "default largest",
         png(np.full((DEFAULT_MAX_PIXELS // width, width, 3), 128, np.uint8)))
    replies = probe.collect(len(sent), 600, topic="replies/hard")
    answers: dict[tuple[str, str], dict[str, Any]] = {}
    for reply in replies:
        if reply.correlation_data in sent:
            answers[sent[reply.correlation_data]] = reply.json()
    missing = sorted(set(sent.values()) - set(answers))
    assert not missing, f"no answer for {missing}"

    errors = {k: b["error"] for k, b in answers.items() if "error" in b}
    internal = {k: e for k, e in errors.items() if e["reason"] == "internal_error"}
    assert not internal, internal
    over_limit = {k: e for k, e in errors.items() if k[1] == "over the limit"}
    assert len(over_limit) == len(IMAGE_ROUTES), errors
    for error in over_limit.values():
        assert error["reason"] == "bad_input" and "input.max_pixels" in error["message"]
    # A model whose outputs are NaN: a model_error that says so (JSON cannot carry them).
    gone_wrong = {k: e for k, e in errors.items() if k[1] == GONE_WRONG}
    assert set(gone_wrong) == {("timer", GONE_WRONG), ("mel", GONE_WRONG)}, errors
    assert gone_wrong[("timer", GONE_WRONG)] == {
        "reason": "model_error", "message": "the model's output holds a score that is not a "
        "finite number (NaN or infinity)"}
    assert gone_wrong[("mel", GONE_WRONG)] == {
        "reason": "model_error",
        "message": "output 'PartitionedCall:0' holds NaN or infinity, which JSON cannot "
        "carry"}
    unexpected = {k: e for k, e in errors.items() if k[1] not in ("over the limit", GONE_WRONG)}
    assert not unexpected, unexpected  # every other frame has an answer, not an error

    for (route, frame), body in answers.items():
        if route in RAW_ROUTES or frame == "over the limit":
            continue
        if route == "faces_default":
            continue  # checked below
        check_result(route, frame, body["result"])
    for (route, frame), body in answers.items():
        if frame in ("over the limit", GONE_WRONG):
            continue
        result = body["result"]
        if route == "vibration":
            assert result["state"] in ("normal", "anomalous")
        if route == "jarvis":
            assert 0.0 <= result["score"] <= 1.0, body
        if route == "timer":
            assert set(result) == RESULT_KEYS["classification"]
        if route in ("mel", "embedding"):
            assert set(result) == RESULT_KEYS["raw"] and len(result["outputs"]) == 1
    # 8000x5000 grey, the default max_pixels exactly: as the grey frames, no face.
    assert answers[("faces_default", "default largest")]["result"] == {
        "count": 0, "detections": []}

    for route in [r for r, _, _, _ in IMAGE_ROUTES] + list(raw_inputs()):
        seen = {f: b["result"] if "result" in b else b["error"]
                for (r, f), b in answers.items() if r == route}
        print(f"\n{route}: " + "; ".join(
            f"{f}: {summary(v)}" for f, v in seen.items()))

    # The references: MediaPipe finds no face, no palm and no person in any of them.
    for frame in frames:
        seen = REFERENCE[frame]
        assert answers[("faces", frame)]["result"]["count"] == seen["faces"], frame
        assert answers[("palms", frame)]["result"]["count"] == seen["palms"], frame
        for route in ("people", "people_png"):
            classes = answers[(route, frame)]["result"]["classes"]
            area = sum(c["area"] for c in classes)
            assert abs(area - seen["person_area"]) < 0.02, (route, frame, classes)
            if seen["person_area"] == 0.0:
                assert classes == [], (route, frame)
        ours = answers[("yolo", frame)]["result"]["count"]
        assert ours == edgefirst_count(hard_frames()[frame]), frame
