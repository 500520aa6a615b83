"""Keypoint names: from a labels file, or COCO's 17 (MoveNet, YOLO-pose) by default."""

from __future__ import annotations

from pathlib import Path

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)


def keypoint_names(path: Path | None, count: int) -> tuple[str, ...]:
    """One name per line of ``path``; without one, COCO's names when there are 17, else
    the keypoints' numbers. Raises ValueError when the file's count is not ``count``."""
    if path is None:
        return COCO_KEYPOINTS if count == len(COCO_KEYPOINTS) else tuple(
            str(i) for i in range(count))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read keypoint labels {path}: {exc.strerror or exc}") from exc
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != count:
        raise ValueError(f"{len(names)} keypoint labels in {path} for {count} keypoints")
    return names
