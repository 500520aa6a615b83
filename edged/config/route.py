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
_PCM_KEYS = ("sample_rate", "channels", "dtype")


class InputConfig(Section):
    format: Literal["raw", "npy", "json", "jpeg", "png", "image", "pcm"] = Field(
        "raw", description="image: JPEG or PNG, told apart by their first bytes; pcm: "
        "audio samples (or a WAV file), any number per message"
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
    sample_rate: int = Field(16000, ge=1000, le=384_000, description="pcm: samples a second")
    channels: int = Field(1, ge=1, le=32, description="pcm: interleaved channels")
    dtype: Literal["int16", "float32"] = Field(
        "int16", description="pcm: little-endian 16-bit integers, or 32-bit floats"
    )

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
        stray = [k for k in _PCM_KEYS if k in self.model_fields_set]
        if stray and self.format != "pcm":
            verb = "applies" if len(stray) == 1 else "apply"
            raise ValueError(f"{', '.join(stray)} {verb} only to the format pcm, "
                             f"not {self.format!r}")
        return self


class WindowConfig(Section):
    size: int | None = Field(
        None, ge=1, le=10_000_000, description="readings (pcm: samples) in one model input"
    )
    hop: int | None = Field(
        None, ge=1, description="readings between windows: size (default) tumbles, less slides"
    )
    size_ms: float | None = Field(
        None, gt=0, le=600_000, description="pcm: the window's length in ms instead of size"
    )
    hop_ms: float | None = Field(None, gt=0, le=600_000, description="pcm: hop in ms")
    fill: float | None = Field(
        None, description="the window starts full of this value, so the first input comes "
        "after hop samples (openWakeWord's buffers do this); unset: after size"
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
        if (self.size is None) == (self.size_ms is None):
            raise ValueError("set size (readings) or size_ms (pcm), exactly one of them")
        if self.hop is not None and self.hop_ms is not None:
            raise ValueError("set hop or hop_ms, not both")
        if self.size is not None and self.hop is not None and self.hop > self.size:
            raise ValueError(f"hop {self.hop} is over size {self.size}: readings would be lost")
        return self

    def in_samples(self, sample_rate: float) -> tuple[int, int]:
        """(size, hop) in readings, the ms settings turned into samples at ``sample_rate``."""
        size = self.size if self.size is not None else round((self.size_ms or 0) *
                                                               sample_rate / 1000)
        hop = self.hop if self.hop is not None else (
            round(self.hop_ms * sample_rate / 1000) if self.hop_ms is not None else size)
        return size, hop


class StageWindow(Section):
    size: int = Field(ge=1, le=100_000, description="rows of the previous stage's output in "
                      "one input of this stage")
    hop: int | None = Field(None, ge=1, description="new rows between runs; default size")
    fill: float | None = Field(
        None, description="the window starts full of this value (first run after hop rows)"
    )

    @model_validator(mode="after")
    def _hop_fits(self) -> StageWindow:
        if self.hop is not None and self.hop > self.size:
            raise ValueError(f"hop {self.hop} is over size {self.size}: rows would be lost")
        return self


class ChainLink(Section):
    """A chained model with its own window over the rows the previous stage outputs."""

    model: str = Field(description="the name of a model under `models`")
    window: StageWindow | None = Field(
        None, description="run each time hop new rows complete a window of size rows, per "
        "source topic; unset: run once on each output of the previous stage"
    )
    scale: float = Field(1.0, description="the previous stage's values times scale ...")
    offset: float = Field(0.0, description="... plus offset, before this stage takes them")


class RouteConfig(Section):
    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="the route's name in results, stats "
        "and {route} in topics: letters, digits, _ . -"
    )
    subscribe: str = Field(description="MQTT filter; wildcards and $share/GROUP/ allowed")
    model: str = Field(description="the name of a model under `models`")
    chain: tuple[str | ChainLink, ...] = Field(
        (), max_length=8, description="models run after `model`, each fed the previous one's "
        "output (e.g. a feature extractor, then a classifier); one deadline for the whole "
        "chain. An entry is a model name, or {model, window, scale, offset}"
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

    @property
    def chain_models(self) -> tuple[str, ...]:
        """The names of the chained models, in order."""
        return tuple(c if isinstance(c, str) else c.model for c in self.chain)

    @property
    def chain_links(self) -> tuple[ChainLink, ...]:
        """Every chain entry as a link (a bare name: no window, no scaling)."""
        return tuple(ChainLink(model=c) if isinstance(c, str) else c for c in self.chain)

    @property
    def streaming(self) -> bool:
        """Whether a chain link keeps a window: its stages keep state per source topic."""
        return any(link.window is not None for link in self.chain_links)

    @model_validator(mode="after")
    def _audio_needs_a_window(self) -> RouteConfig:
        w = self.window
        if self.input.format == "pcm" and w is None:
            raise ValueError("input format pcm needs a window: its size is the model's input")
        if w is not None and self.input.format != "pcm" and (
                w.size_ms is not None or w.hop_ms is not None or w.fill is not None):
            raise ValueError("size_ms, hop_ms and fill apply only to input format pcm")
        if w is not None and w.fields is not None and self.input.format == "pcm":
            raise ValueError("window.fields applies to JSON readings, not pcm")
        if w is not None:
            size, hop = w.in_samples(self.input.sample_rate)
            if size < 1 or hop < 1 or hop > size:
                raise ValueError(f"window of {size} samples with hop {hop}: need 1 <= hop "
                                 "<= size")
        return self

    @field_validator("subscribe")
    @classmethod
    def _valid_filter(cls, value: str) -> str:
        return topics.validate_filter(value)

    @field_validator("publish")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        return topics.validate_template(value)
