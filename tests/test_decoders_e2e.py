"""The new decoders end to end: the real daemon, a real mosquitto, real third-party models
(MediaPipe's, unzipped from its wheel by scripts/models/fetch_models.sh) and a real photograph,
checked against what MediaPipe's own pipeline found in it (tests/data/mediapipe_goldens.json),
and ``edged check`` saying which decoder a model got and why, or refusing it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from tests.support.broker import Broker
from tests.support.daemon import REPO, Edged
from tests.support.probe import Probe
from tests.test_streams import edged_config, start

pytestmark = pytest.mark.integration

CACHE = REPO / ".cache" / "third_party"
DATA = Path(__file__).parent / "data"
GOLDENS = json.loads((DATA / "mediapipe_goldens.json").read_text())


def models() -> dict[str, Any]:
    return {
        "faces": {"path": str(CACHE / "face_detection_short_range.tflite"),
                  "postprocess": "anchors", "score_threshold": 0.5,
                  "keypoint_labels": str(DATA / "blazeface.keypoints"),
                  "anchors": {"strides": [8, 16], "anchors_per_cell": [2, 6],
                              "keypoints": 6, "nms": "weighted", "iou_threshold": 0.3}},
        "people": {"path": str(CACHE / "selfie_segmentation.tflite"),
                   "postprocess": "segmentation",
                   "segmentation": {"threshold": 0.5, "mask": "rle"}},
    }


def routes() -> list[dict[str, Any]]:
    return [
        {"name": "faces", "subscribe": "cams/+/faces", "model": "faces",
         "input": {"format": "image", "resize": "letterbox", "mean": [0.5], "std": [0.5]},
         "deadline_ms": 5000},
        {"name": "people", "subscribe": "cams/+/people", "model": "people",
         "input": {"format": "image", "resize": "letterbox"}, "deadline_ms": 5000},
    ]


def widened(png: bytes) -> bytes:
    """The photograph on a canvas 1.5 times as wide (grey on the right): letterboxed into
    the square input, so edged must undo the bars to give the same fractions of it."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    canvas = Image.new("RGB", (image.width * 3 // 2, image.height), (128, 128, 128))
    canvas.paste(image, (0, 0))
    out = io.BytesIO()
    # lossless: what MediaPipe saw (scripts/models/reference_goldens.py)
    canvas.save(out, format="PNG")
    return out.getvalue()


def ask(probe: Probe, topic: str, payload: bytes, tag: str) -> dict[str, Any]:
    probe.subscribe(f"replies/{tag}")
    probe.publish(topic, payload, response_topic=f"replies/{tag}", correlation_data=b"1")
    [reply] = probe.collect(1, 30, topic=f"replies/{tag}")
    body = reply.json()
    assert "error" not in body, body
    result: dict[str, Any] = body["result"]
    return result


def test_blazeface_and_selfie_segmentation_through_the_broker(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    start(tmp_path, edged_config(broker.port, models(), routes()), probe, daemons)
    png = (CACHE / "astronaut.png").read_bytes()
    for tag, payload, x_scale in (("square", png, 1.0), ("wide", widened(png), 2 / 3)):
        # MediaPipe letterboxed the wide frame itself and took its bars off again.
        face = GOLDENS["face_detection_short_range" + ("_wide" if tag == "wide" else "")][0]
        result = ask(probe, "cams/door/faces", payload, f"faces-{tag}")
        assert result["count"] == 1, result
        det = result["detections"][0]
        assert abs(det["score"] - face["score"]) < 0.05, (tag, det["score"], face["score"])
        # Letterboxed, the face is 16 px tall to the model and the two resizers (MediaPipe's
        # without antialiasing, edged's with) move its box by up to 0.022 of the frame
        # (measured); a letterbox undone wrongly would be off by 0.17.
        tolerance = 0.02 if tag == "square" else 0.03
        for k, v in face["box"].items():
            assert abs(det["box"][k] - v) < tolerance, (tag, det["box"], face["box"])
        nose = det["keypoints"][2]
        assert nose["name"] == "nose_tip"
        assert abs(nose["x"] - face["keypoints"][2]["x"]) < tolerance
        assert abs(nose["y"] - face["keypoints"][2]["y"]) < tolerance

        people = ask(probe, "cams/door/people", payload, f"people-{tag}")
        golden = GOLDENS["selfie_segmentation"]
        person = people["classes"][0]
        assert abs(person["area"] - golden["area"] * x_scale) < 0.015, (tag, person)
        assert abs(person["box"]["ymin"] - golden["box"]["ymin"]) < 0.02
        # The person reaches the photograph's right edge; in the wide frame that edge is at
        # 2/3, and the grey beyond it is no person (the model trails off 0.03 before it).
        assert x_scale - 0.04 < person["box"]["xmax"] <= x_scale + 0.01, (tag, person)
        mask = people["mask"]
        assert sum(mask["counts"]) == mask["size"][0] * mask["size"][1]
        # The mask covers the frame only: the letterbox bars are cut off.
        assert mask["size"][1] == 256 and abs(mask["size"][0] / 256 - x_scale) < 0.01


def check(tmp_path: Path, data: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump(data))
    return subprocess.run([sys.executable, "-m", "edged", "check", "--config", str(config)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_check_shows_the_decoder_and_why(tmp_path: Path) -> None:
    done = check(tmp_path, edged_config(1883, models(), routes()))
    assert done.returncode == 0, done.stderr
    assert ("decoder anchors: anchor head: 896 anchors from strides [8, 16], regressors "
            "[1, 896, 16], scores [1, 896, 1], weighted NMS") in done.stdout
    assert "decoder segmentation: a single-class mask, inside from 0.5 at 256x256" in done.stdout


def test_check_refuses_outputs_that_do_not_fit(tmp_path: Path) -> None:
    wrong = models()
    wrong["people"]["postprocess"] = "yolo"
    done = check(tmp_path, edged_config(1883, wrong, routes()))
    assert done.returncode == 66  # EX_NOINPUT: a model that does not fit its decoder
    assert ("model 'people': postprocess yolo: a YOLO head is one [1, N, F] or [1, F, N] "
            "tensor, not [1, 256, 256, 1]") in done.stderr
    wrong = models()
    wrong["faces"]["anchors"]["anchors_per_cell"] = [2, 2]
    done = check(tmp_path, edged_config(1883, wrong, routes()))
    assert done.returncode == 66
    assert "give 640 anchors; expected regressors [1, 640, 16]" in done.stderr


def test_check_lists_the_decoders_for_an_unknown_name(tmp_path: Path) -> None:
    wrong = models()
    wrong["faces"]["postprocess"] = "blazeface"
    done = check(tmp_path, edged_config(1883, wrong, routes()))
    assert done.returncode == 78
    assert ("unknown postprocess 'blazeface'; use one of classification, detection, anomaly, "
            "raw, yolo, anchors, keypoints, segmentation") in done.stderr

