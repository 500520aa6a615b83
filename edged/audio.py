"""Microphone audio -> sample windows (pure, clock-free).

A microphone publisher sends chunks of any length: little-endian 16-bit integers or 32-bit
floats, channels interleaved, or a whole WAV file whose header must agree with the route.
:class:`SampleStreams` keeps one stream per source topic and hands out a window of samples
each time ``hop`` new ones complete one. A chunk later than ``max_gap_ms`` after the one
before starts its stream afresh: samples either side of a gap are not consecutive, and
stitching them would feed the model a sound that never happened.
"""

from __future__ import annotations

import io
import threading
import wave
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edged.errors import BadInputError
from edged.streaming import RowWindow

Array = np.ndarray[Any, Any]
SampleType = Literal["int16", "float32"]
_DTYPES: dict[str, np.dtype[Any]] = {"int16": np.dtype("<i2"), "float32": np.dtype("<f4")}
_WAV_WIDTHS = {2: "int16"}  # the stdlib reads integer PCM; float WAVs are refused by name


@dataclass(frozen=True)
class AudioFormat:
    """What a route's microphone sends."""

    sample_rate: int
    channels: int
    dtype: SampleType = "int16"

    def ms_of(self, samples: int) -> float:
        return samples * 1000.0 / self.sample_rate


def decode_pcm(payload: bytes, fmt: AudioFormat) -> Array:
    """One chunk -> samples [n, channels] (float32, the values as sent: int16 stays in
    -32768..32767). A payload starting ``RIFF....WAVE`` is read as a WAV file whose rate,
    channels and sample type must be the route's. Raises BadInputError."""
    if payload[:4] == b"RIFF" and payload[8:12] == b"WAVE":
        return _decode_wav(payload, fmt)
    return _samples(payload, fmt)


def _samples(data: bytes, fmt: AudioFormat) -> Array:
    dtype = _DTYPES[fmt.dtype]
    frame = dtype.itemsize * fmt.channels
    if not data:
        raise BadInputError("an empty audio chunk holds no samples")
    if len(data) % frame:
        raise BadInputError(
            f"audio chunk of {len(data)} bytes is not a whole number of {fmt.dtype} frames "
            f"of {fmt.channels} channel(s) ({frame} bytes each)")
    samples = np.frombuffer(data, dtype=dtype).reshape(-1, fmt.channels).astype(np.float32)
    if fmt.dtype == "float32" and not np.all(np.isfinite(samples)):
        raise BadInputError("audio chunk holds NaN or infinite samples")
    return samples


def _decode_wav(payload: bytes, fmt: AudioFormat) -> Array:
    try:
        with wave.open(io.BytesIO(payload), "rb") as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        text = str(exc)
        if "unknown format: 3" in text:
            text = "32-bit float WAV files are not read; send float32 pcm without a header"
        raise BadInputError(f"not a WAV file edged can read: {text}") from None
    found = (rate, channels, _WAV_WIDTHS.get(width, f"{8 * width}-bit"))
    wanted = (fmt.sample_rate, fmt.channels, fmt.dtype)
    if found != wanted:
        raise BadInputError(
            f"WAV header says {rate} Hz, {channels} channel(s), {found[2]} samples; the "
            f"route takes {fmt.sample_rate} Hz, {fmt.channels} channel(s), {fmt.dtype}")
    return _samples(frames, fmt)


@dataclass(frozen=True)
class SampleWindow:
    """``size`` consecutive samples [size, channels] and the receive time of the chunk that
    completed it."""

    array: Array
    newest_at: float


@dataclass(frozen=True)
class Restart:
    """A stream that a gap started afresh: what was dropped, for the report."""

    gap_ms: float
    dropped_samples: int


class _Stream:
    def __init__(self, size: int, hop: int, channels: int, fill: float | None) -> None:
        self.window = RowWindow(size, hop, channels, fill)
        self.last_at: float | None = None


class SampleStreams:
    """One sample window per source topic, bounded (the quietest topic is forgotten past
    ``max_topics``). Thread-safe."""

    def __init__(self, fmt: AudioFormat, size: int, hop: int, max_gap_ms: float | None,
                 max_topics: int, fill: float | None = None) -> None:
        RowWindow(size, hop, fmt.channels, fill)  # fail now, not on the first chunk
        self.format = fmt
        self._args = (size, hop, fmt.channels, fill)
        self._max_gap_s = None if max_gap_ms is None else max_gap_ms / 1000.0
        self._max_topics = max_topics
        self._by_topic: OrderedDict[str, _Stream] = OrderedDict()
        self._lock = threading.Lock()
        self.restarts = 0
        """Streams a gap started afresh (for stats)."""
        self.forgotten = 0

    def push(self, topic: str, samples: Array,
             at: float) -> tuple[list[SampleWindow], Restart | None]:
        """Add one chunk from ``topic`` received at ``at`` (monotonic s); return the windows
        it completes and, if a gap restarted the stream first, what was dropped."""
        with self._lock:
            stream = self._stream(topic)
            restart = None
            if (self._max_gap_s is not None and stream.last_at is not None
                    and at - stream.last_at > self._max_gap_s):
                restart = Restart((at - stream.last_at) * 1000.0, stream.window.pending)
                stream.window.reset()
                self.restarts += 1
            stream.last_at = at
            return [SampleWindow(rows, at) for rows in stream.window.push(samples)], restart

    def restart(self, topic: str) -> None:
        """Start ``topic``'s stream afresh (one of its chunks was lost)."""
        with self._lock:
            stream = self._by_topic.get(topic)
            if stream is not None:
                stream.window.reset()
                self.restarts += 1

    def _stream(self, topic: str) -> _Stream:
        stream = self._by_topic.get(topic)
        if stream is None:
            stream = self._by_topic[topic] = _Stream(*self._args)
            if len(self._by_topic) > self._max_topics:
                self._by_topic.popitem(last=False)
                self.forgotten += 1
        else:
            self._by_topic.move_to_end(topic)
        return stream

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_topic)
