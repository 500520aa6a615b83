"""edged.postprocess.keypoints: MoveNet single- and multi-pose layouts against
hand-computed golden outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edged.config import ModelConfig
from edged.image import Geometry
from edged.postprocess.base import PostProcessor
from edged.postprocess.names import COCO_KEYPOINTS
from edged.postprocess.options import PostOptions
from edged.postprocess.registry import postprocessor_for
from edged.runtime.tensors import TensorSpec

Array = np.ndarray[Any, Any]


def spec(shape: tuple[int, ...], dtype: Any = np.float32, scale: float = 0.0,
         zero_point: int = 0) -> TensorSpec:
    return TensorSpec("out", 0, shape, np.dtype(dtype), scale, zero_point)


def pose(specs: list[TensorSpec], threshold: float = 0.2, **keys: Any) -> PostProcessor:
    config = ModelConfig(path=Path("m.tflite"), postprocess="keypoints",
                         score_threshold=threshold, **keys)
    return postprocessor_for("keypoints", specs, (), 3, options=PostOptions(
        score_threshold=threshold), config=config)


def single() -> Array:
    out = np.zeros((1, 1, 17, 3), np.float32)
    out[0, 0, :, 0] = np.linspace(0.2, 0.8, 17)  # y
    out[0, 0, :, 1] = 0.5                        # x
    out[0, 0, :, 2] = 0.6
    out[0, 0, 9] = [0.4, 0.25, 0.1]              # left wrist, hardly seen
    return out


def test_single_pose_golden() -> None:
    result = pose([spec((1, 1, 17, 3))], keypoints={"min_score": 0.3})([single()])
    assert result["count"] == 1
    person = result["poses"][0]
    assert person["score"] == round((16 * 0.6 + 0.1) / 17, 6)  # the keypoints' mean
    assert [k["name"] for k in person["keypoints"]] == list(COCO_KEYPOINTS)
    assert person["keypoints"][0] == {"name": "nose", "y": 0.2, "x": 0.5, "score": 0.6}
    assert person["keypoints"][9] == {"name": "left_wrist", "y": None, "x": None,
                                      "score": 0.1}
    assert person["keypoints"][16] == {"name": "right_ankle", "y": 0.8, "x": 0.5,
                                       "score": 0.6}


def test_single_pose_in_a_letterboxed_frame() -> None:
    # A 640x480 frame letterboxed into the square input: content rows 0.125 .. 0.875.
    geometry = Geometry(480, 640, 0.125, 0.0, 0.75, 1.0)
    person = pose([spec((1, 1, 17, 3))])([single()], geometry=geometry)["poses"][0]
    assert person["keypoints"][0]["y"] == 0.1  # (0.2 - 0.125) / 0.75
    assert person["keypoints"][16]["y"] == 0.9  # (0.8 - 0.125) / 0.75
    assert person["keypoints"][9]["x"] == 0.25


def test_below_the_threshold_there_is_no_pose() -> None:
    quiet = single()
    quiet[..., 2] = 0.05
    assert pose([spec((1, 1, 17, 3))])([quiet]) == {"count": 0, "poses": []}


def test_multi_pose_golden() -> None:
    out = np.zeros((1, 6, 56), np.float32)
    out[0, 0, :51] = np.tile([0.5, 0.5, 0.9], 17)
    out[0, 0, 51:] = [0.1, 0.2, 0.9, 0.6, 0.8]    # ymin, xmin, ymax, xmax, score
    out[0, 3, :51] = np.tile([0.25, 0.75, 0.7], 17)
    out[0, 3, 51:] = [0.0, 0.6, 0.5, 1.2, 0.95]   # box past the right edge: clipped
    out[0, 5, 51:] = [0.0, 0.0, 1.0, 1.0, 0.1]    # below the threshold
    result = pose([spec((1, 6, 56))], threshold=0.3)([out])
    assert result["count"] == 2
    first, second = result["poses"]
    assert first["score"] == 0.95 and second["score"] == 0.8
    assert first["box"] == {"ymin": 0.0, "xmin": 0.6, "ymax": 0.5, "xmax": 1.0}
    assert second["box"] == {"ymin": 0.1, "xmin": 0.2, "ymax": 0.9, "xmax": 0.6}
    assert first["keypoints"][5] == {"name": "left_shoulder", "y": 0.25, "x": 0.75,
                                     "score": 0.7}


def test_quantized_single_pose_is_dequantized() -> None:
    q = np.full((1, 1, 17, 3), 128, np.uint8)  # (128 - 0) / 256 = 0.5
    result = pose([spec((1, 1, 17, 3), np.uint8, 1 / 256, 0)])([q])
    assert result["poses"][0]["keypoints"][3] == {"name": "left_ear", "y": 0.5, "x": 0.5,
                                                  "score": 0.5}


def test_keypoint_names_from_a_labels_file(tmp_path: Path) -> None:
    names = tmp_path / "parts.txt"
    names.write_text("\n".join(f"part{i}" for i in range(5)) + "\n")
    out = np.full((1, 1, 5, 3), 0.5, np.float32)
    result = pose([spec((1, 1, 5, 3))], keypoint_labels=names)([out])
    assert [k["name"] for k in result["poses"][0]["keypoints"]] == [
        "part0", "part1", "part2", "part3", "part4"]
    with pytest.raises(ValueError, match=r"5 keypoint labels .* for 17 keypoints"):
        pose([spec((1, 1, 17, 3))], keypoint_labels=names)


@pytest.mark.parametrize(
    ("shape", "keys", "message"),
    [
        ((1, 17, 3), {}, "MoveNet output \\[1, 1, K, 3\\] \\(single pose\\) or \\[1, P, 56\\]"),
        ((1, 6, 56), {"keypoints": {"layout": "single"}}, "\\[1, 1, K, 3\\] \\(y, x"),
        ((1, 6, 57), {}, "not \\[1, 6, 57\\]"),
    ],
)
def test_outputs_that_do_not_fit_are_refused(shape: tuple[int, ...], keys: dict[str, Any],
                                             message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pose([spec(shape)], **keys)
