"""One route: what it subscribes to, how payloads become inputs, where results go."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from edged import topics
from edged.config.base import Section

IMAGE_FORMATS = ("jpeg", "png", "image")
_IMAGE_KEYS = ("base64_field", "resize", "mean", "std", "max_pixels", "pad_value")


class InputConfig(Section):
    format: Literal["raw", "npy", "json", "jpeg", "png", "image"] = Field(
        "raw", description="image: JPEG or PNG, told apart by their first bytes"
    )
    field: str = Field("data", description="json: the key holding the array in an object")
    max_payload_bytes: int = Field(
        16 * 1024 * 1024, ge=1, description="larger payloads are refused as bad_input"
    )
    base64_field: str | None = Field(
        None, min_length=1, description="jpeg/png/image: the payload is a JSON object "
        "holding the image as base64 (or a data: URL) under this key"
    )
    resize: Literal["stretch", "letterbox", "crop"] = Field(
        "stretch", description="fit frames to the model: stretch, letterbox (keep the "
        "aspect, pad), or crop (keep the aspect, cut the centre)"
    )
    mean: tuple[float, ...] = Field(
        (0.0,), min_length=1, max_length=3,
        description="model input = (pixel/255 - mean) / std; one value or one per channel",
    )
    std: tuple[float, ...] = Field(
        (1.0,), min_length=1, max_length=3,
        description="see mean; one positive value or one per channel",
    )
    max_pixels: int = Field(
        40_000_000, ge=1, le=1_000_000_000,
        description="frames declaring more pixels are refused before decoding",
    )
    pad_value: int = Field(0, ge=0, le=255, description="letterbox: grey level of the bars")

    @field_validator("std")
    @classmethod
    def _std_not_zero(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(v <= 0 for v in value):
            raise ValueError("std values must be positive")
        return value

    @model_validator(mode="after")
    def _image_keys_need_an_image(self) -> InputConfig:
        stray = [k for k in _IMAGE_KEYS if k in self.model_fields_set]
        if stray and self.format not in IMAGE_FORMATS:
            verb = "applies" if len(stray) == 1 else "apply"
            raise ValueError(f"{', '.join(stray)} {verb} only to the formats jpeg, png and "
                             f"image, not {self.format!r}")
        return self


class WindowConfig(Section):
    size: int = Field(ge=1, le=1_000_000, description="readings in one model input")
    hop: int | None = Field(
        None, ge=1, description="readings between windows: size (default) tumbles, less slides"
    )
    fields: tuple[str, ...] | None = Field(
        None, min_length=1, max_length=1024,
        description="keys taken from each JSON reading, in column order; unset: each "
        "message holds an array of readings (bare, or under input.field)",
    )
    max_gap_ms: float | None = Field(
        None, gt=0, description="a reading arriving later than this after the previous one "
        "starts the window afresh; unset: never"
    )
    max_topics: int = Field(
        1000, ge=1, le=1_000_000, description="source topics windowed at once; the one "
        "heard from least recently is forgotten"
    )

    @model_validator(mode="after")
    def _hop_fits(self) -> WindowConfig:
        if self.hop is not None and self.hop > self.size:
            raise ValueError(f"hop {self.hop} is over size {self.size}: readings would be lost")
        return self


class RouteConfig(Section):
    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="the route's name in results, stats "
        "and {route} in topics: letters, digits, _ . -"
    )
    subscribe: str = Field(description="MQTT filter; wildcards and $share/GROUP/ allowed")
    model: str = Field(description="the name of a model under `models`")
    chain: tuple[str, ...] = Field(
        (), max_length=8, description="models run after `model`, each fed the previous one's "
        "output (e.g. a feature extractor, then a classifier); one deadline for the whole chain"
    )
    input: InputConfig = Field(InputConfig(), description="how payloads become model inputs")
    publish: str = Field(
        "{prefix}/{device_id}/predictions/{route}", description="topic template of results: "
        "{prefix}, {device_id}, {route}, {model}, {topic}, {topic[N]}"
    )
    publish_qos: int = Field(
        1, ge=0, le=2, description="QoS of results on `publish` (replies use the request's)"
    )
    queue: Literal["fifo", "latest", "edf"] = Field(
        "fifo", description="fifo: drop the oldest when full; latest: newest per source topic; "
        "edf: earliest deadline first"
    )
    queue_size: int = Field(32, ge=1, le=100_000, description="messages waiting for a worker")
    priority: int = Field(0, ge=-100, le=100, description="higher goes first on a shared model")
    allow_deadline_override: bool = Field(
        False, description="let a message's own deadline be later than the route's"
    )
    on_late: Literal["drop", "publish"] = Field(
        "drop", description="a result ready after its deadline: drop it, or publish it flagged"
    )
    reply_margin_ms: float | None = Field(
        None, ge=0, le=10_000, description="time kept in hand for an answer to get through "
        "the broker to its sender; unset: measured, as the slowest recent round trip of "
        "edged's own probes through the broker"
    )
    queue_target_ms: float | None = Field(
        None, gt=0, le=24 * 3600 * 1000, description="the wait in the queue that, once "
        "exceeded for a whole deadline (a standing queue, not a burst), refuses new messages "
        "(queue_full), so answers stay fresh under overload instead of all hugging the "
        "deadline; unset: half the message's deadline"
    )
    publish_answered: bool = Field(
        False, description="also publish the results of requests answered on their "
        "Response Topic to the route's topic (for a dashboard that watches every result); "
        "off: the requester alone gets them, and messages without a Response Topic go to "
        "the route's topic"
    )
    deadline_ms: int = Field(
        1000, gt=0, le=24 * 3600 * 1000, description="ms from receipt within which a result "
        "must be ready; a message may shorten it"
    )
    window: WindowConfig | None = Field(
        None, description="build each model input from a stream of readings per topic"
    )

    @field_validator("subscribe")
    @classmethod
    def _valid_filter(cls, value: str) -> str:
        return topics.validate_filter(value)

    @field_validator("publish")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        return topics.validate_template(value)
