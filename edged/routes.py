"""A route bound to its loaded model: how its payloads become input tensors and how output
tensors become the result it publishes. Per-topic state (sensor windows, anomaly state)
lives here, one set per route."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edged import audio, codec, image, preprocess, topics, window
from edged.admission import StandingQueue
from edged.audio import AudioFormat, SampleStreams, SampleWindow
from edged.config import PhraseConfig, RouteConfig
from edged.errors import BadInputError, ConfigError
from edged.image import DecodedImage, Geometry
from edged.phrase import PhraseTracker
from edged.postprocess import registry
from edged.postprocess.anomaly import AnomalyTracker
from edged.postprocess.base import PostProcessor, dequantize
from edged.postprocess.options import AnomalyOptions
from edged.runtime import LoadedModel, TensorSpec
from edged.streaming import StreamingChain
from edged.types import Inbound
from edged.window import Window, Windowers

Array = np.ndarray[Any, Any]
MAX_WINDOWS_PER_CHUNK = 64
"""An audio chunk may complete at most this many windows (a 10 s WAV at hop 80 ms is 125)."""


@dataclass(frozen=True)
class Route:
    config: RouteConfig
    model: LoadedModel
    decode: Callable[[bytes], Array]
    frames: Callable[[bytes], DecodedImage] | None
    postprocess: PostProcessor
    anomaly: AnomalyTracker | None = None
    windowers: Windowers | None = None
    chain: tuple[LoadedModel, ...] = ()
    """Models run after ``model``, each fed the previous one's output."""
    samples: SampleStreams | None = None
    """pcm input: the sample window of each source topic."""
    streaming: StreamingChain | None = None
    """A chain with windows between its stages: their state per source topic."""
    phrase: PhraseTracker | None = None
    mask_topic: bool = False
    """A segmentation mask goes on a topic of its own, not in the result."""
    queue_state: StandingQueue = field(default_factory=StandingQueue, compare=False)
    """Whether the route's queue has stood over its target (admission's state)."""

    @property
    def windowed(self) -> bool:
        """Its model inputs are windows of readings or samples, not its messages."""
        return self.windowers is not None or self.samples is not None

    @classmethod
    def bind(cls, config: RouteConfig, models: Mapping[str, LoadedModel]) -> Route:
        """Raises ConfigError when the route's input or output handling cannot serve its
        models (checked at start-up and by ``edged check``, never on a message)."""
        try:
            chain = tuple(models[name] for name in config.chain_models)
            if not config.streaming:
                _check_chain(models[config.model], chain)
            route = cls._bind(config, models[config.model], chain)
            return _bind_audio(route)
        except ValueError as exc:
            raise ConfigError(f"route {config.name!r}", [str(exc)]) from None

    def carrying_state_of(self, old: Route | None) -> Route:
        """This route, keeping ``old``'s partial windows and anomaly states when a reload
        changed neither the route nor its models: a reload must not lose readings nor
        announce false state changes."""
        if old is None or old.config != self.config or old.model is not self.model or any(
                a is not b for a, b in zip(old.chain, self.chain, strict=False)):
            return self
        return replace(self, windowers=old.windowers, anomaly=old.anomaly,
                       samples=old.samples, streaming=old.streaming, phrase=old.phrase)

    @property
    def last(self) -> LoadedModel:
        """The model whose outputs become the result."""
        return self.chain[-1] if self.chain else self.model

    @classmethod
    def _bind(cls, config: RouteConfig, model: LoadedModel,
              chain: tuple[LoadedModel, ...]) -> Route:
        inp, spec = config.input, model.input
        last = chain[-1] if chain else model
        mc = last.config
        options = None
        if inp.format in image.IMAGE_FORMATS:
            options = image.ImageOptions.from_config(inp, spec.shape)
            if _pixels_are_the_input(options, spec):
                options = replace(options, as_is=True)
        decode: Callable[[bytes], Array]
        if inp.format == "pcm":  # audio reaches the model through sample windows
            decode = functools.partial(audio.decode_pcm, fmt=_audio_format(config))
        else:
            decode = codec.decoder_for(inp.format, spec.shape, spec.dtype, inp.field,
                                       image_options=options, base64_field=inp.base64_field)
        frames = None
        if options is not None and registry.load(mc.postprocess).uses_frame:
            frames = codec.frame_decoder_for(inp.format, options, inp.base64_field)
        bound = registry.bind_model(mc, last.outputs, last.labels, last.input)
        anomaly = None
        if mc.anomaly is not None:
            anomaly = AnomalyTracker(AnomalyOptions.from_config(mc.anomaly, last.labels))
        mask_topic = mc.postprocess == "segmentation" and mc.segmentation.mask_topic
        return cls(config, model, decode, frames, bound.process, anomaly,
                   _windowers(config, model), chain, mask_topic=mask_topic)

    @property
    def name(self) -> str:
        return self.config.name

    def matches(self, topic: str) -> bool:
        return topics.matches(self.config.subscribe, topic)

    def windows(self, message: Inbound) -> list[Window]:
        """Feed a message's readings to its topic's window. Raises BadInputError."""
        assert self.windowers is not None and self.config.window is not None
        rows = window.parse_readings(message.payload, self.config.window.fields,
                                     self.config.input.field)
        size = self.config.window.size or 0
        if len(rows) > size:  # with a small hop, one burst would make thousands of windows
            raise BadInputError(f"{len(rows)} readings in one message; a window route takes "
                                f"at most {size} (one window) per message")
        return self.windowers.push(message.topic, rows, message.received_mono)

    def sample_windows(self, message: Inbound) -> tuple[list[SampleWindow], str | None]:
        """Feed an audio chunk to its topic's stream: the windows it completes and, when a
        gap restarted the stream first, a line saying what was dropped. Raises
        BadInputError."""
        assert self.samples is not None and self.config.window is not None
        try:
            samples = audio.decode_pcm(message.payload, self.samples.format)
            size, hop = self.config.window.in_samples(self.samples.format.sample_rate)
            if len(samples) > size + MAX_WINDOWS_PER_CHUNK * hop:
                raise BadInputError(f"{len(samples)} samples in one chunk would make over "
                                    f"{MAX_WINDOWS_PER_CHUNK} windows; send shorter chunks")
        except BadInputError:
            self.lost(message.topic)
            raise
        windows, restart = self.samples.push(message.topic, samples, message.received_mono)
        if restart is None:
            return windows, None
        if self.streaming is not None:
            self.streaming.restart(message.topic)
        return windows, (f"audio stream {message.topic!r} restarted: {restart.gap_ms:.0f} ms "
                         f"since its previous chunk (max_gap_ms "
                         f"{self.config.window.max_gap_ms:g}); {restart.dropped_samples} "
                         "samples held were dropped, not stitched to this chunk")

    def lost(self, topic: str) -> None:
        """A message of ``topic`` was refused before its samples reached the stream: they
        are missing, so what came before must not be stitched to what comes after."""
        if self.samples is not None:
            self.samples.restart(topic)
        if self.streaming is not None:
            self.streaming.restart(topic)

    def describe_streams(self) -> dict[str, Any] | None:
        """For the stats topic: streams held, restarts (gaps, lost chunks and windows),
        topics forgotten past max_topics; None for a route without audio or stages."""
        if self.samples is None and self.streaming is None:
            return None
        out: dict[str, Any] = {}
        if self.samples is not None:
            out["audio"] = {"topics": len(self.samples), "restarts": self.samples.restarts,
                            "forgotten": self.samples.forgotten}
        if self.streaming is not None:
            out["stages"] = {"topics": len(self.streaming),
                             "restarts": self.streaming.restarts,
                             "forgotten": self.streaming.forgotten}
        return out

    def skip(self, topic: str, seqs: Sequence[int | None]) -> None:
        """Windows of ``topic`` that will not run: a streaming chain restarts its stages
        there rather than stitching the rows either side."""
        if self.streaming is not None:
            for seq in seqs:
                self.streaming.skip(topic, seq)

    def prepare(self, payload: bytes, array: Array | None) -> tuple[Array, Geometry | None]:
        """Payload (or a window's readings) -> the input tensor, and how an image was fitted
        into it. Raises BadInputError."""
        if array is not None:
            if self.samples is not None:  # samples [n, channels] in order: the input's order
                array = array.reshape(-1)
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
        if self.phrase is not None:
            result = self.phrase.observe(message.topic, result["score"], message.received_mono)
            return result, bool(result["detected"])
        if self.anomaly is not None:
            result = self.anomaly.observe(message.topic, result["score"], message.received_mono)
            # Its first result after a start goes out too: a listener may still hold the
            # state of an earlier run.
            return result, bool(result["changed"] or result.get("first"))
        if self.last.config.postprocess == "classification" and result.get("label") is None:
            return result, False  # nothing reached the threshold
        return result, True


def _pixels_are_the_input(options: image.ImageOptions, spec: TensorSpec) -> bool:
    """Whether quantizing (pixel/255 - mean)/std gives back the pixel bytes themselves."""
    return (spec.dtype == np.uint8 and spec.zero_point == 0
            and abs(spec.scale * 255.0 - 1.0) < 1e-6
            and all(m == 0.0 for m in options.mean) and all(s == 1.0 for s in options.std))


def handoff(outputs: Sequence[Array], source: LoadedModel, target: LoadedModel) -> Array:
    """One chain link: the source's output as the target's input tensor. Quantized values
    pass as they are when both sides share dtype, scale and zero point; otherwise they go
    through real values."""
    out, spec = outputs[0], source.outputs[0]
    inp = target.input
    if (out.dtype, spec.scale, spec.zero_point) == (inp.dtype, inp.scale, inp.zero_point):
        return preprocess.fit_shape(out, inp)
    return preprocess.to_input_tensor(dequantize(out, spec), inp)


def _check_chain(first: LoadedModel, chain: tuple[LoadedModel, ...]) -> None:
    links = zip((first, *chain[:-1]), chain, strict=True) if chain else iter(())
    for source, target in links:
        if len(source.outputs) != 1:
            raise ValueError(f"chain: {source.name!r} has {len(source.outputs)} outputs; "
                             "a link passes exactly one")
        have, want = source.outputs[0].shape, target.input.shape
        if math.prod(have) != math.prod(want):
            raise ValueError(f"chain: {source.name!r} outputs {list(have)}, which does not "
                             f"fit {target.name!r}'s input {list(want)}")


def _audio_format(config: RouteConfig) -> AudioFormat:
    inp = config.input
    return AudioFormat(inp.sample_rate, inp.channels, inp.dtype)


def _bind_audio(route: Route) -> Route:
    """The per-topic state of audio input, streaming stages and phrase events."""
    config, model = route.config, route.model
    samples = streaming = phrase = None
    w = config.window
    if config.input.format == "pcm" and w is not None:
        inp = config.input
        size, hop = w.in_samples(inp.sample_rate)
        steps = math.prod(model.input.shape)
        if size * inp.channels != steps:
            raise ValueError(
                f"window of {size} samples x {inp.channels} channel(s) does not fit the "
                f"model's input {list(model.input.shape)} ({steps} values); set "
                "the model's input_shape if its input is dynamic")
        if config.subscribe.startswith(topics.SHARE_PREFIX):
            raise ValueError("an audio stream needs every chunk of a topic, but a shared "
                             "subscription ($share/...) splits them: subscribe without $share")
        samples = SampleStreams(_audio_format(config), size, hop, w.max_gap_ms, w.max_topics,
                                w.fill)
    if config.streaming:
        if config.subscribe.startswith(topics.SHARE_PREFIX):
            raise ValueError("streaming stages need every message of a topic, but a shared "
                             "subscription ($share/...) splits them: subscribe without $share")
        max_topics = w.max_topics if w is not None else 1000
        streaming = StreamingChain.build(model, route.chain, config.chain_links, max_topics)
    if route.last.config.postprocess == "phrase":
        phrase = PhraseTracker(route.last.config.phrase or PhraseConfig(), route.last.name)
    return replace(route, samples=samples, streaming=streaming, phrase=phrase)


def _windowers(config: RouteConfig, model: LoadedModel) -> Windowers | None:
    w = config.window
    if w is None or config.input.format == "pcm":
        return None
    if config.input.format != "json":
        raise ValueError("a window takes JSON readings: set input.format to json")
    if config.subscribe.startswith(topics.SHARE_PREFIX):
        raise ValueError(
            "a window needs every reading of a topic, but a shared subscription "
            "($share/...) splits them across boxes: subscribe without $share")
    shape = model.input.shape
    steps, columns = (shape[-2], shape[-1]) if len(shape) >= 2 else (shape[-1], 1)
    if w.size is None:
        raise ValueError("a window over readings takes size, not size_ms")
    if w.size != steps:
        raise ValueError(f"window size {w.size} does not match the model's time axis "
                         f"({steps} in input shape {list(shape)})")
    if w.fields is not None and len(w.fields) != columns:
        raise ValueError(f"window takes {len(w.fields)} fields; the model's input has "
                         f"{columns} channels")
    return Windowers(w.size, w.hop or w.size, columns, w.max_gap_ms, w.max_topics)
