"""The settings of the decoders that need more than a threshold: YOLO heads, anchor-based
SSD heads, keypoints and segmentation (``models.<name>.yolo`` and so on)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edged.config.base import Section


class YoloConfig(Section):
    layout: Literal["auto", "v5", "v8", "end2end", "split", "pose"] = Field(
        "auto", description="auto: told from the output shapes; v5: [1, N, 5 + classes] with "
        "objectness; v8: [1, 4 + classes, N] either way round; end2end: [1, K, 6] (NMS in "
        "the model); split: class logits [1, N, classes] + box distribution [1, N, 64]; "
        "pose: [1, 5 + 3 x keypoints, N]"
    )
    boxes: Literal["auto", "normalized", "pixels"] = Field(
        "auto", description="box units: fractions of the input, or input pixels (auto: "
        "pixels when a coordinate is over 2)"
    )
    box_format: Literal["auto", "center", "corners"] = Field(
        "auto", description="centre x, y, width, height or x1, y1, x2, y2 (auto: corners "
        "for end2end, centre otherwise)"
    )
    iou_threshold: float = Field(0.45, gt=0, le=1, description="NMS: overlap that suppresses")
    class_agnostic: bool = Field(False, description="NMS across classes instead of per class")
    max_candidates: int = Field(
        300, ge=1, le=100_000, description="at most this many boxes, the best-scoring ones, "
        "enter NMS: it bounds the time of a frame where every box passes (NMS is quadratic; "
        "docs/benchmarks.md). Raise it for scenes with more objects"
    )
    strides: tuple[int, ...] = Field(
        (8, 16, 32), min_length=1, max_length=8,
        description="split: the heads' strides, finest first (anchors at cell centres)"
    )
    reg_max: int = Field(16, ge=1, le=64, description="split: bins per box side")
    keypoints: int = Field(17, ge=1, le=1000, description="pose: keypoints per box")


class AnchorsConfig(Section):
    strides: list[int] = Field(
        min_length=1, max_length=16, description="one per anchor grid, finest first "
        "(BlazeFace: [8, 16])"
    )
    anchors_per_cell: list[int] = Field(
        min_length=1, max_length=16, description="anchors at each cell of each grid "
        "(BlazeFace: [2, 6])"
    )
    offset: float = Field(0.5, ge=0, le=1, description="anchor centre within its cell")
    box_scale: float | None = Field(
        None, gt=0, description="regressors are divided by this (default: the input size)"
    )
    keypoints: int = Field(0, ge=0, le=100, description="keypoints regressed per anchor")
    score_clip: float = Field(100.0, gt=0, description="logits clipped to +-this first")
    iou_threshold: float = Field(0.3, gt=0, le=1, description="NMS: overlap that merges")
    nms: Literal["weighted", "plain"] = Field(
        "weighted", description="weighted: overlapping boxes are averaged by score "
        "(MediaPipe); plain: the best one is kept"
    )
    max_candidates: int = Field(
        300, ge=1, le=100_000, description="at most this many anchors, the best-scoring "
        "ones, enter NMS: it bounds the time of a frame where every anchor passes "
        "(docs/benchmarks.md)"
    )

    @model_validator(mode="after")
    def _one_count_per_grid(self) -> AnchorsConfig:
        if len(self.strides) != len(self.anchors_per_cell):
            raise ValueError("give anchors_per_cell for each of the strides")
        return self


class KeypointsConfig(Section):
    layout: Literal["auto", "single", "multi"] = Field(
        "auto", description="single: MoveNet [1, 1, K, 3]; multi: MoveNet [1, P, 56]"
    )
    min_score: float = Field(
        0.0, ge=0, le=1, description="keypoints scoring below it are reported as null"
    )


class SegmentationConfig(Section):
    threshold: float = Field(
        0.5, ge=0, le=1, description="single-channel masks: the score that counts as inside"
    )
    min_area: float = Field(
        0.0, ge=0, le=1, description="classes covering less of the frame are left out"
    )
    background: int | None = Field(
        0, description="class index not reported (null: report every class); "
        "single-channel masks have no background class"
    )
    mask: Literal["none", "png", "rle"] = Field(
        "none", description="also give the class-index mask of the frame: a grey PNG, or "
        "run lengths"
    )
    mask_topic: bool = Field(
        False, description="publish the mask on a topic of its own (the result's topic + "
        "/mask: a PNG file, or the run lengths as JSON) instead of inside the result"
    )
