"""One model: its file, workers, post-processing and accelerator."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from edged.config.base import Section
from edged.config.postprocess import (
    AnchorsConfig,
    KeypointsConfig,
    SegmentationConfig,
    YoloConfig,
)
from edged.postprocess.registry import DECODERS  # a leaf module: no import cycle


class AnomalyConfig(Section):
    source: Literal["output", "class", "reconstruction"] = Field(
        "output", description="output: the model's single output value; class: the "
        "probability of `label`; reconstruction: mean squared error of output vs. input"
    )
    label: str | None = Field(None, min_length=1, description="class: the label (or index)")
    threshold: float = Field(description="the score that separates normal from anomalous")
    direction: Literal["above", "below"] = Field(
        "above", description="anomalous when the score is above (or below) the threshold"
    )
    hysteresis: float = Field(
        0.0, ge=0, description="back to normal only once the score is this far past the "
        "threshold on the normal side, so a noisy score does not flap"
    )
    max_topics: int = Field(1000, ge=1, le=1_000_000, description="source topics tracked")

    @model_validator(mode="after")
    def _label_for_class(self) -> AnomalyConfig:
        if (self.source == "class") != (self.label is not None):
            raise ValueError("source class needs a label, and only it takes one")
        return self


class PhraseConfig(Section):
    """When a one-phrase detector (a wake word) has heard its phrase."""

    threshold: float = Field(0.5, description="the score at or above which it is heard")
    hysteresis: float = Field(
        0.0, ge=0, description="heard again only after the score fell this far below the "
        "threshold, so one utterance scored above it for several frames is one event"
    )
    refractory_ms: float = Field(
        0.0, ge=0, le=3_600_000, description="after an event, no other on the same topic "
        "for this long"
    )
    label: str | None = Field(None, min_length=1, description="the phrase's name in events; "
                              "default: the model's name")
    max_topics: int = Field(1000, ge=1, le=1_000_000, description="source topics tracked")


class ModelConfig(Section):
    path: Path = Field(description=".tflite file; relative paths resolve from the config's folder")
    labels: Path | None = Field(None, description="text file with one label per line")
    workers: int = Field(1, ge=1, le=32, description="interpreters, one per worker thread")
    num_threads: int = Field(1, ge=1, le=64, description="CPU threads per interpreter")
    postprocess: str = Field(
        "classification", description="the decoder that turns outputs into results (phrase: "
        "a one-phrase detector's score, published as an event when it crosses "
        "phrase.threshold)", json_schema_extra={"enum": list(DECODERS)},
    )
    input_shape: tuple[int, ...] | None = Field(
        None, min_length=1, max_length=8, description="resize a model with a dynamic input "
        "(shape signature -1) to this shape before allocating it"
    )
    top_k: int = Field(3, ge=1, le=1000, description="labels reported by classification")
    threshold: float | None = Field(
        None, description="classification: classes scoring below it are not reported; when "
        "none reaches it the label is null"
    )
    score_threshold: float = Field(
        0.5, ge=0, le=1, description="detection, yolo, anchors, keypoints: boxes (poses) "
        "scoring below it are left out"
    )
    max_detections: int | None = Field(
        None, ge=1, le=10_000, description="detection, yolo, anchors, keypoints: report at "
        "most this many, best first"
    )
    anomaly: AnomalyConfig | None = Field(
        None, description="anomaly: how the score is read and when it is anomalous"
    )
    phrase: PhraseConfig | None = Field(
        None, description="phrase: threshold, hysteresis and refractory time of the events"
    )
    keypoint_labels: Path | None = Field(
        None, description="yolo pose, anchors, keypoints: one keypoint name per line "
        "(default: COCO's 17 names for 17 keypoints, else their numbers)"
    )
    yolo: YoloConfig = Field(
        YoloConfig(), description="yolo: layout, box units and NMS"
    )
    anchors: AnchorsConfig | None = Field(
        None, description="anchors: the anchor grids of an SSD head without its post-process op"
    )
    keypoints: KeypointsConfig = Field(
        KeypointsConfig(), description="keypoints: pose layouts and names"
    )
    segmentation: SegmentationConfig = Field(
        SegmentationConfig(), description="segmentation: thresholds and mask"
    )
    delegate: Literal["auto", "cpu", "edgetpu", "gpu", "external"] = Field(
        "auto", description="auto: the Edge TPU for a model compiled for it, else the CPU "
        "(XNNPACK with num_threads); edgetpu, gpu, external: that delegate library"
    )
    device: str = Field(
        "", max_length=16, description="edgetpu: usb, usb:N, pci, pci:N, or empty for any"
    )
    devices: list[str] = Field(
        default_factory=list, max_length=32,
        description="edgetpu: one device per worker (e.g. [usb:0, usb:1]); replaces device",
    )
    library: str | None = Field(
        None, min_length=1, max_length=4096,
        description="delegate shared library, a path or a name the loader finds (edgetpu: "
        "libedgetpu.so.1; gpu: libtensorflowlite_gpu_delegate.so; external: required)",
    )
    options: dict[str, str] = Field(
        default_factory=dict, max_length=64,
        description="key/value strings passed to the delegate's create function",
        # Numbers and booleans are accepted and passed on as text (_options_as_text).
        json_schema_extra={"additionalProperties": {"type": ["string", "number", "boolean"]}},
    )
    fallback_model: Path | None = Field(
        None, description="CPU variant of the same model, served when the accelerator is "
        "missing or fails; default: the same model on the CPU, unless compiled for the TPU",
    )
    fallback: bool = Field(
        True, description="serve from the CPU while the accelerator is missing or failing; "
        "false: such messages get model_error"
    )
    inline: bool | None = Field(
        None, description="run on the MQTT thread as each message is read, with no hand-over "
        "to a worker thread (one interpreter; `workers` does not apply): for models of well "
        "under a millisecond. Unset: inline when the model runs in-process on the CPU and "
        "its invoke takes under 0.3 ms"
    )
    isolation: Literal["thread", "process"] = Field(
        "thread", description="process: run each accelerator interpreter in a child process "
        "that edged restarts when it crashes or hangs"
    )
    invoke_timeout_ms: int | None = Field(
        None, gt=0, le=600_000, description="watchdog: an accelerator invoke longer than this "
        "is a failure (process isolation: the child is killed); off if unset"
    )
    retry_min_s: float = Field(
        5.0, gt=0, le=3600, description="first wait before retrying a failed accelerator"
    )
    retry_max_s: float = Field(
        300.0, gt=0, le=86_400, description="the retry wait doubles up to this"
    )

    @field_validator("postprocess")
    @classmethod
    def _known_decoder(cls, value: str) -> str:
        if value not in DECODERS:
            raise ValueError(f"unknown postprocess {value!r}; use one of {', '.join(DECODERS)}")
        return value

    @field_validator("options", mode="before")
    @classmethod
    def _options_as_text(cls, value: Any) -> Any:
        # YAML reads `num_threads: 4` as an integer; delegates take every value as text.
        if isinstance(value, dict):
            return {k: str(v).lower() if isinstance(v, bool) else
                    str(v) if isinstance(v, (int, float)) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _delegate_is_consistent(self) -> ModelConfig:
        from edged.runtime.edgetpu import valid_device  # runtime imports config: import late

        for dev in [self.device, *self.devices]:
            if not valid_device(dev):
                raise ValueError(f"device {dev!r}: use usb, usb:N, pci, pci:N or ''")
        tpu_only = [k for k in ("device", "devices") if getattr(self, k)]
        if tpu_only and self.delegate not in ("auto", "edgetpu"):
            raise ValueError(f"{tpu_only[0]} applies to the Edge TPU, not delegate "
                             f"{self.delegate!r}")
        if self.device and self.devices:
            raise ValueError("set device or devices, not both")
        if self.devices and len(self.devices) != self.workers:
            raise ValueError(f"devices lists {len(self.devices)} device(s) for "
                             f"{self.workers} worker(s); set workers: {len(self.devices)}")
        if self.delegate == "external" and self.library is None:
            raise ValueError("delegate external needs library: the delegate's .so path")
        if self.delegate == "cpu" and (self.library or self.options or self.fallback_model):
            raise ValueError("delegate cpu takes no library, options or fallback_model")
        if "device" in self.options and (self.device or self.devices):
            raise ValueError("give the Edge TPU device once: device/devices or options.device")
        if self.phrase is not None and self.postprocess != "phrase":
            raise ValueError("a phrase section applies only to postprocess phrase")
        if self.input_shape is not None and any(d < 1 for d in self.input_shape):
            raise ValueError(f"input_shape {list(self.input_shape)} needs positive sizes")
        if self.retry_min_s > self.retry_max_s:
            raise ValueError("retry_min_s is over retry_max_s")
        return self
