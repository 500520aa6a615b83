"""A route bound to its loaded model: how its payloads become input tensors and how output
tensors become the result it publishes. Per-topic state (sensor windows, anomaly state)
lives here, one set per route."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edged import codec, image, postprocess, preprocess, topics, window
from edged.config import RouteConfig
from edged.errors import ConfigError
from edged.image import DecodedImage, Geometry
from edged.postprocess import AnomalyTracker, PostProcessor
from edged.runtime import LoadedModel
from edged.types import Inbound
from edged.window import Window, Windowers

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Route:
    config: RouteConfig
    model: LoadedModel
    decode: Callable[[bytes], Array]
    frames: Callable[[bytes], DecodedImage] | None
    postprocess: PostProcessor
    anomaly: AnomalyTracker | None = None
    windowers: Windowers | None = None

    @classmethod
    def bind(cls, config: RouteConfig, model: LoadedModel) -> Route:
        """Raises ConfigError when the route's input or output handling cannot serve the
        model (checked at start-up and by ``edged check``, never on a message)."""
        try:
            return cls._bind(config, model)
        except ValueError as exc:
            raise ConfigError(f"route {config.name!r}", [str(exc)]) from None

    @classmethod
    def _bind(cls, config: RouteConfig, model: LoadedModel) -> Route:
        inp, spec, mc = config.input, model.input, model.config
        options = None
        if inp.format in image.IMAGE_FORMATS:
            options = image.ImageOptions.from_config(inp, spec.shape)
        decode = codec.decoder_for(inp.format, spec.shape, spec.dtype, inp.field,
                                   image_options=options, base64_field=inp.base64_field)
        frames = None
        if options is not None and mc.postprocess == "detection":
            frames = codec.frame_decoder_for(inp.format, options, inp.base64_field)
        post_options = postprocess.PostOptions.from_config(mc, model.labels)
        post = postprocess.postprocessor_for(mc.postprocess, model.outputs, model.labels,
                                             mc.top_k, options=post_options, input_spec=spec)
        anomaly = AnomalyTracker(post_options.anomaly) if post_options.anomaly else None
        return cls(config, model, decode, frames, post, anomaly, _windowers(config, model))

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def margin_s(self) -> float:
        return self.config.reply_margin_ms / 1000.0

    def matches(self, topic: str) -> bool:
        return topics.matches(self.config.subscribe, topic)

    def windows(self, message: Inbound) -> list[Window]:
        """Feed a message's readings to its topic's window. Raises BadInputError."""
        assert self.windowers is not None and self.config.window is not None
        rows = window.parse_readings(message.payload, self.config.window.fields,
                                     self.config.input.field)
        return self.windowers.push(message.topic, rows, message.received_mono)

    def prepare(self, payload: bytes, array: Array | None) -> tuple[Array, Geometry | None]:
        """Payload (or a window's readings) -> the input tensor, and how an image was fitted
        into it. Raises BadInputError."""
        if array is not None:
            return preprocess.to_input_tensor(array, self.model.input), None
        if self.frames is not None:
            decoded = self.frames(payload)
            return preprocess.to_input_tensor(decoded.array, self.model.input), decoded.geometry
        return preprocess.to_input_tensor(self.decode(payload), self.model.input), None

    def finish(self, outputs: Sequence[Array], tensor: Array, geometry: Geometry | None,
               message: Inbound) -> tuple[dict[str, Any], bool]:
        """The result, and whether it goes to the route's topic (a requester with a
        Response Topic is always answered)."""
        result = self.postprocess(outputs, geometry=geometry, model_input=tensor)
        if self.anomaly is not None:
            result = self.anomaly.observe(message.topic, result["score"], message.received_mono)
            return result, bool(result["changed"])
        if self.model.config.postprocess == "classification" and result.get("label") is None:
            return result, False  # nothing reached the threshold
        return result, True


def _windowers(config: RouteConfig, model: LoadedModel) -> Windowers | None:
    w = config.window
    if w is None:
        return None
    if config.input.format != "json":
        raise ValueError("a window takes JSON readings: set input.format to json")
    if config.subscribe.startswith(topics.SHARE_PREFIX):
        raise ValueError(
            "a window needs every reading of a topic, but a shared subscription "
            "($share/...) splits them across boxes: subscribe without $share")
    shape = model.input.shape
    steps, columns = (shape[-2], shape[-1]) if len(shape) >= 2 else (shape[-1], 1)
    if w.size != steps:
        raise ValueError(f"window size {w.size} does not match the model's time axis "
                         f"({steps} in input shape {list(shape)})")
    if w.fields is not None and len(w.fields) != columns:
        raise ValueError(f"window takes {len(w.fields)} fields; the model's input has "
                         f"{columns} channels")
    return Windowers(w.size, w.hop or w.size, columns, w.max_gap_ms, w.max_topics)
