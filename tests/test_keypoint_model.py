"""The bundled MoveNet-layout model (scripts/models/keypoint_model.py, 17 coloured dots) against
its scenes' ground truth: decoded by edged directly, and end to end through mosquitto as
letterboxed PNG frames, where the keypoints must come back in the frame's own fractions."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edged.config import ModelConfig
from edged.postprocess.options import PostOptions
from edged.postprocess.registry import postprocessor_for
from edged.runtime import select_backend
from edged.runtime.tensors import TensorSpec
from tests.support.broker import Broker
from tests.support.daemon import MODELS, Edged
from tests.support.probe import Probe
from tests.test_streams import edged_config, encode, start

Array = np.ndarray[Any, Any]
MANIFEST = json.loads((MODELS / "manifest.json").read_text())["models"]
FILE = "dots_keypoints_int8.tflite"
HOLD = np.load(MODELS / "dots_holdout.npz")
BAND = (8, 56)  # rows of the 64x64 scene sent as a landscape frame


def pck(results: list[dict[str, Any]], truth: Array) -> float:
    """Visible keypoints reported (score >= 0.5) within 0.05 of the truth, as the manifest
    counts them (distances in fractions of the frame the truth is given in)."""
    hits = seen = 0
    for result, t in zip(results, truth, strict=True):
        points = result["poses"][0]["keypoints"] if result["count"] else []
        for k, (y, x, visible) in enumerate(t):
            if visible < 0.5:
                continue
            seen += 1
            if k < len(points) and points[k]["y"] is not None:
                hits += np.hypot(points[k]["y"] - y, points[k]["x"] - x) <= 0.05
    return hits / max(seen, 1)


def test_dots_model_keypoints_match_the_truth() -> None:
    interp = select_backend().interpreter_class(model_path=str(MODELS / FILE))
    interp.allocate_tensors()
    inp = TensorSpec.from_detail(interp.get_input_details()[0])
    [out] = [TensorSpec.from_detail(d) for d in interp.get_output_details()]
    assert out.shape == (1, 1, 17, 3)
    config = ModelConfig(path=Path(FILE), postprocess="keypoints", score_threshold=0.0,
                         keypoints={"min_score": 0.5})
    post = postprocessor_for("keypoints", [out], (), 3, options=PostOptions(
        score_threshold=0.0), input_spec=inp, config=config)
    results = []
    for image in HOLD["images"]:
        interp.set_tensor(inp.index, image[None])
        interp.invoke()
        results.append(post([interp.get_tensor(out.index)]))
    score = pck(results, HOLD["keypoints"])
    print(f"\ndots keypoints decoded by edged: PCK@0.05 {score:.4f}; manifest "
          f"{MANIFEST['keypoints']['int8_accuracy']:.4f}")
    assert score >= MANIFEST["keypoints"]["int8_accuracy"] - 0.01


@pytest.mark.integration
def test_keypoints_of_letterboxed_frames_through_the_broker(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    top, bottom = BAND
    frames, truths = [], []
    for image, t in zip(HOLD["images"], HOLD["keypoints"], strict=True):
        band = image[top:bottom]
        frames.append(encode(np.repeat(np.repeat(band, 2, axis=0), 2, axis=1), "PNG"))
        y = (t[:, 0] * 64 - top) / (bottom - top)  # truth in the frame's fractions
        inside = (y > 0.02) & (y < 0.98)
        truths.append(np.stack([y, t[:, 1], t[:, 2] * inside], axis=1))
    models = {"dots": {"path": str(MODELS / FILE), "postprocess": "keypoints",
                       "score_threshold": 0.0, "workers": 2, "keypoints": {"min_score": 0.5}}}
    route = {"name": "dots", "subscribe": "cams/+/dots", "model": "dots",
             "input": {"format": "png", "resize": "letterbox", "pad_value": 60},
             "queue_size": 512, "deadline_ms": 30000}
    start(tmp_path, edged_config(broker.port, models, [route], device_id="dots-box"), probe,
          daemons)
    probe.subscribe("replies/dots")
    for i, png in enumerate(frames):
        probe.publish("cams/yard/dots", png, response_topic="replies/dots",
                      correlation_data=str(i).encode())
        if i % 50 == 49:
            time.sleep(0.05)
    replies = probe.collect(len(frames), 60, topic="replies/dots")
    assert len(replies) == len(frames)
    results: list[dict[str, Any]] = [{}] * len(frames)
    for reply in replies:
        body = reply.json()
        assert "error" not in body, body.get("error")
        results[int(reply.correlation_data or b"-1")] = body["result"]
    # Fractions of the 128x96 frame: y distances are 4/3 of the model's (48 of 64 rows).
    score = pck(results, np.array(truths))
    print(f"\ndots as letterboxed 128x96 PNG through mosquitto: PCK@0.05 {score:.4f}")
    # Had edged not undone the bars, every y would be off by up to 0.17 of the frame.
    assert score >= MANIFEST["keypoints"]["int8_accuracy"] - 0.1
