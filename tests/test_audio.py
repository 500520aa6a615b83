"""edged.audio: PCM and WAV chunks -> samples, and sample windows per topic with gaps."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from edged.audio import AudioFormat, SampleStreams, decode_pcm
from edged.errors import BadInputError

MONO = AudioFormat(16000, 1, "int16")


def wav_bytes(samples: np.ndarray, rate: int = 16000, channels: int = 1, width: int = 2) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return out.getvalue()


def test_int16_little_endian_samples_keep_their_values() -> None:
    raw = np.array([0, 1, -1, 32767, -32768], dtype="<i2")
    got = decode_pcm(raw.tobytes(), MONO)
    assert got.shape == (5, 1) and got.dtype == np.float32
    assert got[:, 0].tolist() == [0, 1, -1, 32767, -32768]


def test_interleaved_float32_channels_become_columns() -> None:
    raw = np.array([0.5, -0.5, 0.25, -0.25], dtype="<f4")
    got = decode_pcm(raw.tobytes(), AudioFormat(48000, 2, "float32"))
    assert got.tolist() == [[0.5, -0.5], [0.25, -0.25]]


@pytest.mark.parametrize(
    ("payload", "fmt", "message"),
    [
        (b"", MONO, "empty audio chunk"),
        (b"\x00\x01\x02", MONO, "not a whole number of int16 frames"),
        (b"\x00" * 6, AudioFormat(16000, 2, "float32"), "frames of 2 channel"),
        (np.array([np.nan], "<f4").tobytes(), AudioFormat(16000, 1, "float32"), "NaN"),
    ],
)
def test_bad_chunks_are_bad_input(payload: bytes, fmt: AudioFormat, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        decode_pcm(payload, fmt)


def test_a_wav_payload_is_read_when_its_header_matches_the_route() -> None:
    samples = np.arange(-50, 50, dtype="<i2")
    np.testing.assert_array_equal(decode_pcm(wav_bytes(samples), MONO)[:, 0], samples)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 22050}, "22050 Hz"),
        ({"channels": 2}, "2 channel"),
        ({"width": 1}, "8-bit samples"),
    ],
)
def test_a_wav_header_that_disagrees_with_the_route_is_refused(kwargs: dict[str, int],
                                                              message: str) -> None:
    payload = wav_bytes(np.zeros(64, dtype="<i2"), **kwargs)
    with pytest.raises(BadInputError, match=message):
        decode_pcm(payload, MONO)


def test_a_truncated_wav_header_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="not a WAV file"):
        decode_pcm(b"RIFF\x10\x00\x00\x00WAVEfmt ", MONO)


def test_chunks_of_any_length_give_the_same_windows() -> None:
    streams = SampleStreams(MONO, size=1760, hop=1280, max_gap_ms=None, max_topics=4,
                            fill=0.0)
    signal = np.arange(12800, dtype=np.float32).reshape(-1, 1)
    got, at = [], 0
    for n in (1, 999, 280, 3000, 4000, 4520):
        windows, restart = streams.push("mic/a", signal[at:at + n], at=at / 16000)
        assert restart is None
        got += [w.array for w in windows]
        at += n
    assert at == len(signal) and len(got) == 10  # one window per 1280 samples
    for k, window in enumerate(got):  # windows end on every hop, zeros before the start
        end = 1280 * (k + 1)
        expected = np.concatenate((np.zeros(max(0, 1760 - end)), signal[max(0, end - 1760):end, 0]))
        np.testing.assert_array_equal(window[:, 0], expected)


def test_a_gap_restarts_the_stream_and_says_what_was_dropped() -> None:
    streams = SampleStreams(MONO, size=400, hop=400, max_gap_ms=100, max_topics=4)
    assert streams.push("mic/a", np.ones((300, 1), np.float32), at=0.0) == ([], None)
    windows, restart = streams.push("mic/a", np.ones((300, 1), np.float32), at=0.5)
    assert windows == [] and restart is not None
    assert restart.dropped_samples == 300 and restart.gap_ms == pytest.approx(500)
    windows, restart = streams.push("mic/a", np.ones((100, 1), np.float32), at=0.55)
    assert len(windows) == 1 and restart is None and streams.restarts == 1


def test_topics_are_separate_and_bounded() -> None:
    streams = SampleStreams(MONO, size=4, hop=4, max_gap_ms=None, max_topics=2)
    for topic in ("a", "b", "c"):
        streams.push(topic, np.ones((3, 1), np.float32), at=0.0)
    assert len(streams) == 2 and streams.forgotten == 1
    windows, _ = streams.push("c", np.ones((1, 1), np.float32), at=0.0)
    assert len(windows) == 1  # c kept its three samples; a was forgotten
    windows, _ = streams.push("a", np.ones((1, 1), np.float32), at=0.0)
    assert windows == []
