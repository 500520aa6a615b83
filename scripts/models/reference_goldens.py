"""Record what MediaPipe's own pipeline finds in the test image, as golden outputs for
edged's anchor-head and segmentation decoders (tests/data/mediapipe_goldens.json), and
what its face detection, palm detection (the hand tracking graph's palm_detections) and
selfie segmentation find in the frames with nothing in them (tests/support/frames.py:
blank, noise, a single pixel, the largest frame, strips), under ``hard_frames``.

MediaPipe 0.10.14 pins protobuf<5 and brings jax and OpenCV, so it runs in a throw-away
environment of its own, never edged's (development only):

    python3 -m venv /tmp/mp && /tmp/mp/bin/pip install mediapipe==0.10.14 pillow
    scripts/models/fetch_models.sh
    /tmp/mp/bin/python scripts/models/reference_goldens.py

The models are the ones scripts/models/fetch_models.sh unzips from the same wheel, and the legacy
solutions run them with MediaPipe's graphs (anchors, decoding, weighted NMS, letterbox
removal; segmentation resize), which edged reimplements: the reference is independent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import mediapipe as mp
import numpy as np
from mediapipe.python.solution_base import SolutionBase
from mediapipe.python.solutions import hands
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # tests.support.frames: NumPy and Pillow only

from tests.support.frames import hard_frames  # noqa: E402

CACHE = REPO / ".cache" / "third_party"
OUT = REPO / "tests" / "data" / "mediapipe_goldens.json"


def rle(mask: Any) -> dict[str, Any]:
    """Row-major run lengths of a boolean mask, starting with a run of False."""
    flat = np.asarray(mask, dtype=bool).ravel()
    edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0, *runs]
    return {"size": list(mask.shape), "counts": runs}


def faces(image: Any) -> list[dict[str, Any]]:
    with mp.solutions.face_detection.FaceDetection(model_selection=0,
                                                   min_detection_confidence=0.5) as fd:
        found = fd.process(image).detections or []
    out = []
    for det in found:
        box = det.location_data.relative_bounding_box
        out.append({
            "score": float(det.score[0]),
            "box": {"ymin": box.ymin, "xmin": box.xmin, "ymax": box.ymin + box.height,
                    "xmax": box.xmin + box.width},
            "keypoints": [{"y": k.y, "x": k.x} for k in det.location_data.relative_keypoints],
        })
    return out


def person_mask(image: Any) -> dict[str, Any]:
    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as ss:
        mask = ss.process(image).segmentation_mask > 0.5
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return {
        "threshold": 0.5,
        "area": float(mask.mean()),
        "box": {"ymin": ys.min() / h, "xmin": xs.min() / w, "ymax": (ys.max() + 1) / h,
                "xmax": (xs.max() + 1) / w},
        "mask_rle": rle(mask),
    }


class PalmDetections(SolutionBase):  # type: ignore[misc]
    """MediaPipe's hand tracking graph with the lite palm detector (model_complexity 0:
    palm_detection_lite.tflite), read at its palm_detections stream: the palm detector's
    own answer, before the landmark model."""

    def __init__(self) -> None:
        super().__init__(
            binary_graph_path=hands._BINARYPB_FILE_PATH,
            side_inputs={"model_complexity": 0, "num_hands": 2, "use_prev_landmarks": False},
            calculator_params={
                "palmdetectioncpu__TensorsToDetectionsCalculator.min_score_thresh": 0.5},
            outputs=["palm_detections"])

    def count(self, image: Any) -> int:
        found = super().process(input_data={"image": image}).palm_detections
        return len(found or [])


def hard(frames: dict[str, Any]) -> dict[str, Any]:
    """What MediaPipe finds in the frames with nothing a model expects: faces and palms
    (counts), and the selfie mask's area (threshold 0.5)."""
    out: dict[str, Any] = {}
    with mp.solutions.face_detection.FaceDetection(model_selection=0,
                                                   min_detection_confidence=0.5) as fd, \
            mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as ss, \
            PalmDetections() as palms:
        for name, image in frames.items():
            image = np.ascontiguousarray(image)
            out[name] = {
                "faces": len(fd.process(image).detections or []),
                "palms": palms.count(image),
                "person_area": float((ss.process(image).segmentation_mask > 0.5).mean()),
            }
    return out


def widened(image: Image.Image) -> Image.Image:
    """The photograph on a canvas 1.5 times as wide, grey on the right (the tests make
    the same one): MediaPipe letterboxes it for BlazeFace and removes the bars itself."""
    canvas = Image.new("RGB", (image.width * 3 // 2, image.height), (128, 128, 128))
    canvas.paste(image, (0, 0))
    return canvas


def main() -> int:
    photo = Image.open(CACHE / "astronaut.png").convert("RGB")
    image = np.asarray(photo)
    seen = hard(hard_frames())
    goldens = {
        "source": f"mediapipe {mp.__version__} legacy solutions on skimage astronaut.png",
        "image": "astronaut.png",
        "face_detection_short_range": faces(image),
        "face_detection_short_range_wide": faces(np.asarray(widened(photo))),
        "selfie_segmentation": person_mask(image),
        "hard_frames": seen,
    }
    OUT.write_text(json.dumps(goldens, separators=(",", ":")) + "\n")
    found, person = goldens["face_detection_short_range"], goldens["selfie_segmentation"]
    assert isinstance(found, list) and isinstance(person, dict)
    print(f"wrote {OUT}: {len(found)} face(s), person area {person['area']:.4f}")
    for name, found_there in seen.items():
        print(f"  {name}: {found_there}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
