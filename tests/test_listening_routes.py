"""A wake-word route bound to openWakeWord's real models, without a broker: what load-time
checks say, how chunks become windows, and what a reload keeps."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from edged.config import ModelConfig, RouteConfig
from edged.errors import BadInputError, ConfigError, ModelLoadError
from edged.routes import Route
from edged.runtime import LoadedModel, load_model, select_backend
from edged.types import Inbound
from tests.support.audio import OWW_MODELS, require_tools, wakeword_models, wakeword_route
from tests.support.daemon import REPO


@pytest.fixture(scope="module")
def models() -> dict[str, LoadedModel]:
    require_tools()
    backend = select_backend()
    return {name: load_model(name, ModelConfig(**settings), backend)
            for name, settings in wakeword_models().items()}


def chunk(samples: int, topic: str = "mics/a/audio", at: float = 0.0) -> Inbound:
    return Inbound(topic, np.zeros(samples, "<i2").tobytes(), 0, 1.7e9, at)


def test_input_shape_resizes_a_dynamic_input(models: dict[str, LoadedModel]) -> None:
    assert models["melspectrogram"].input.shape == (1, 1760)
    assert models["melspectrogram"].outputs[0].shape == (1, 1, 8, 32)
    with pytest.raises(ModelLoadError, match=r"input_shape \[1, 76, 32\] does not fit"):
        load_model("embedding", ModelConfig(path=OWW_MODELS / "embedding_model.tflite",
                                            input_shape=(1, 76, 32)), select_backend())


def test_each_80_ms_of_audio_is_one_window_whatever_the_chunks(
        models: dict[str, LoadedModel]) -> None:
    route = Route.bind(RouteConfig(**wakeword_route()), models)
    assert route.streaming is not None and route.phrase is not None
    counts = [len(route.sample_windows(chunk(n))[0]) for n in (1000, 280, 1280, 3840, 1)]
    assert counts == [0, 1, 1, 3, 0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"window": {"size": 1600, "hop": 1280}}, "window of 1600 samples"),
        ({"chain": [{"model": "speech_embedding", "window": {"size": 76, "hop": 8}},
                    {"model": "hey_jarvis", "window": {"size": 15}}]},
         "chain stage 'hey_jarvis': a window of 15 rows of 96 values"),
        ({"chain": ["speech_embedding", "hey_jarvis"]}, "does not fit"),
        ({"subscribe": "$share/g/mics/+/audio"}, "shared subscription"),
    ],
)
def test_load_time_checks_name_what_does_not_fit(models: dict[str, LoadedModel],
                                                 change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Route.bind(RouteConfig(**wakeword_route(**change)), models)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"window": None}, "input format pcm needs a window"),
        ({"window": {"size": 1760, "size_ms": 110}}, "exactly one of them"),
        ({"input": {"format": "json", "sample_rate": 16000}}, "only to the format pcm"),
        ({"input": {"format": "json"}, "window": {"size": 8, "fill": 0}},
         "fill apply only to input format pcm"),
        ({"chain": [{"model": "x", "window": {"size": 4, "hop": 5}}]}, "rows would be lost"),
        ({"chain": [{"model": "x", "scael": 2}]}, "scael"),
    ],
)
def test_config_mistakes_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RouteConfig(**wakeword_route(**change))


def test_ms_settings_become_samples() -> None:
    config = RouteConfig(**wakeword_route(window={"size_ms": 110, "hop_ms": 80}))
    assert config.window is not None and config.window.in_samples(16000) == (1760, 1280)


def test_a_wav_with_the_wrong_rate_restarts_the_stream(models: dict[str, LoadedModel]) -> None:
    route = Route.bind(RouteConfig(**wakeword_route()), models)
    assert route.sample_windows(chunk(1000))[0] == []
    bad = Inbound("mics/a/audio", b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00"
                  b"\x01\x00\x22\x56\x00\x00\x44\xac\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00",
                  0, 1.7e9, 0.0)
    with pytest.raises(BadInputError, match="22050 Hz"):
        route.sample_windows(bad)
    # The 1000 samples before it are gone: 280 more complete nothing now.
    assert route.sample_windows(chunk(280))[0] == []
    assert route.describe_streams() == {
        "audio": {"topics": 1, "restarts": 1, "forgotten": 0},
        "stages": {"topics": 1, "restarts": 0, "forgotten": 0}}  # restarts at its next window


def test_a_reload_keeps_the_partial_windows_of_an_unchanged_pipeline(
        models: dict[str, LoadedModel]) -> None:
    config = RouteConfig(**wakeword_route())
    old = Route.bind(config, models)
    assert old.sample_windows(chunk(1000))[0] == []
    kept = Route.bind(config, models).carrying_state_of(old)
    assert kept.samples is old.samples and kept.streaming is old.streaming
    assert kept.phrase is old.phrase
    assert len(kept.sample_windows(chunk(280))[0]) == 1  # 1000 + 280 samples
    changed = RouteConfig(**wakeword_route(deadline_ms=500))
    fresh = Route.bind(changed, models).carrying_state_of(old)
    assert fresh.samples is not old.samples and fresh.streaming is not old.streaming


def test_the_docs_wake_word_config_binds_to_the_real_models() -> None:
    require_tools()
    text = (REPO / "docs" / "inputs.md").read_text()
    section = text.split("## Listening: audio streams and wake words", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = yaml.safe_load(block.replace("/opt/edged/models/openwakeword", str(OWW_MODELS)))
    backend = select_backend()
    loaded = {name: load_model(name, ModelConfig(**settings), backend)
              for name, settings in config["models"].items()}
    route = Route.bind(RouteConfig(**config["routes"][0]), loaded)
    assert route.streaming is not None and len(route.streaming.stages) == 2
    assert route.phrase is not None and route.phrase.label == "hey_jarvis"
