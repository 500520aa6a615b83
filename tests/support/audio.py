"""Audio made on the spot for the listening tests and benchmarks, openWakeWord's models
(unzipped from its wheel by scripts/setup.sh), its own pipeline as the reference, and a
wake-word config as a field engineer would write it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.daemon import REPO

Array = np.ndarray[Any, Any]
RATE = 16000
CHUNK = 1280  # openWakeWord's step: 80 ms
OWW_MODELS = REPO / ".cache" / "models" / "openwakeword"
PHRASES = ("hey_jarvis", "alexa", "hey_mycroft")


def require_tools() -> None:
    """Skip (fail under CI=true: scripts/setup.sh installs them) without espeak-ng, sox,
    openWakeWord's models or its reference package."""
    missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if not (OWW_MODELS / "hey_jarvis_v0.1.tflite").exists():
        missing.append(f"openWakeWord models in {OWW_MODELS}")
    try:
        import openwakeword  # noqa: F401
    except ImportError:
        missing.append("the openwakeword package")
    if missing:
        text = "missing " + ", ".join(missing) + " (scripts/setup.sh installs them)"
        if os.environ.get("CI") == "true":
            pytest.fail(text)
        pytest.skip(text)


def speak(text: str, voice: str = "en-us", words_per_minute: int = 130) -> Array:
    """``text`` spoken by espeak-ng, resampled by sox to 16 kHz mono int16."""
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(raw),
                        text], check=True, capture_output=True, timeout=60)
        subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out)],
                       check=True, capture_output=True, timeout=60)
        with wave.open(str(out), "rb") as w:
            return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def silence(seconds: float) -> Array:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def tone(hz: float, seconds: float, level: float = 8000) -> Array:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.rint(level * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def noise(seconds: float, level: float = 600, seed: int = 0) -> Array:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0, level, round(seconds * RATE)), -32768, 32767).astype(np.int16)


def reference_scores(audio: Array, phrase: str = "hey_jarvis") -> list[float]:
    """openWakeWord's own pipeline (its ONNX models on onnxruntime: another runtime and
    other model files than edged's) fed ``audio`` in 80 ms steps: one score per step."""
    return [float(step[phrase]) for step in _reference(audio, phrase)]


def reference_classes(audio: Array, model: str) -> list[dict[str, float]]:
    """Like :func:`reference_scores` for a multi-class model: its scores by class name."""
    return [{k: float(v) for k, v in step.items()} for step in _reference(audio, model)]


def _reference(audio: Array, model_name: str) -> list[dict[str, Any]]:
    from openwakeword.model import Model

    model = Model(wakeword_models=[model_name], inference_framework="onnx")
    return [dict(model.predict(audio[i:i + CHUNK]))
            for i in range(0, len(audio) - CHUNK + 1, CHUNK)]


def wakeword_models(phrases: tuple[str, ...] = ("hey_jarvis",), workers: int = 1,
                    refractory_ms: float = 1000) -> dict[str, Any]:
    """The models section of a wake-word config."""
    models: dict[str, Any] = {
        "melspectrogram": {"path": str(OWW_MODELS / "melspectrogram.tflite"),
                           "input_shape": [1, 1760], "postprocess": "raw", "workers": workers},
        "speech_embedding": {"path": str(OWW_MODELS / "embedding_model.tflite"),
                             "postprocess": "raw"},
    }
    for phrase in phrases:
        models[phrase] = {"path": str(OWW_MODELS / f"{phrase}_v0.1.tflite"),
                          "postprocess": "phrase",
                          "phrase": {"threshold": 0.5, "hysteresis": 0.2,
                                     "refractory_ms": refractory_ms}}
    return models


def wakeword_route(name: str = "wake", phrase: str = "hey_jarvis", **overrides: Any,
                   ) -> dict[str, Any]:
    """A route serving openWakeWord's pipeline on microphones publishing 16 kHz int16."""
    route: dict[str, Any] = {
        "name": name,
        "subscribe": "mics/+/audio",
        "model": "melspectrogram",
        "input": {"format": "pcm", "sample_rate": RATE, "channels": 1, "dtype": "int16"},
        # 110 ms of samples every 80 ms -> 8 mel frames (openWakeWord's own step).
        "window": {"size": 1760, "hop": 1280, "fill": 0.0, "max_gap_ms": 500},
        "chain": [
            {"model": "speech_embedding", "scale": 0.1, "offset": 2.0,
             "window": {"size": 76, "hop": 8, "fill": 1.0}},
            {"model": phrase, "window": {"size": 16, "hop": 1}},
        ],
        "publish": "edged/{device_id}/wake/{topic[1]}",
        "queue_size": 256,
        "deadline_ms": 1000,
    }
    route.update(overrides)
    return route
