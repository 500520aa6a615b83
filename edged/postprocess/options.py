"""The settings of the original decoders (classification, detection, anomaly), bound from
a model's config once: the ``models.<name>`` keys that concern them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from edged.config import AnomalyConfig, ModelConfig


@dataclass(frozen=True)
class AnomalyOptions:
    """How an anomaly score is read from a model and judged."""

    source: Literal["output", "class", "reconstruction"]
    threshold: float
    direction: Literal["above", "below"] = "above"
    hysteresis: float = 0.0
    class_index: int = 0
    max_topics: int = 1000

    @classmethod
    def from_config(cls, config: AnomalyConfig, labels: Sequence[str]) -> AnomalyOptions:
        index = 0
        if config.source == "class" and config.label is not None:
            if config.label in labels:
                index = list(labels).index(config.label)
            elif config.label.isdigit():
                index = int(config.label)
            else:
                raise ValueError(f"anomaly label {config.label!r} is not among the labels")
        return cls(config.source, config.threshold, config.direction, config.hysteresis,
                   index, config.max_topics)


@dataclass(frozen=True)
class PostOptions:
    """A model's post-processing settings (the ``models.<name>`` keys that concern it)."""

    top_k: int = 3
    threshold: float | None = None
    score_threshold: float = 0.5
    max_detections: int | None = None
    anomaly: AnomalyOptions | None = None

    @classmethod
    def from_config(cls, config: ModelConfig, labels: Sequence[str]) -> PostOptions:
        anomaly = None
        if config.anomaly is not None:
            anomaly = AnomalyOptions.from_config(config.anomaly, labels)
        return cls(config.top_k, config.threshold, config.score_threshold,
                   config.max_detections, anomaly)
