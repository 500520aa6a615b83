"""What the Frigate door serves: one route per served model, bound as any route is (raw
input, the model's own decoder at the door's threshold), and what the door needs to know
about it. Routes built here go through the same pipeline, admission and sink as MQTT's."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from edged.config import InputConfig, RouteConfig, Settings
from edged.config.frigate import FrigateConfig, ServedModel
from edged.errors import ConfigError
from edged.frigate import labelmaps
from edged.frigate.protocol import DECODERS_FOR, ROWS
from edged.postprocess import registry
from edged.routes import Route
from edged.runtime import LoadedModel, TensorSpec

TOPIC_PREFIX = "$frigate/"
"""Topics of the door's messages: MQTT never delivers them (edged does not subscribe to
them, and a broker keeps $-topics to itself), so the two doors' routes cannot mix."""
REPLY_TOPIC = "$frigate/reply"
"""The Response Topic of the door's messages: the sink's answers come back to the door."""
BOX_DECODERS = ("detection", "yolo", "anchors")


@dataclass(frozen=True)
class Served:
    name: str
    """What Frigate asks for (the basename of its model.path)."""
    route: Route
    ids: Mapping[int, int]
    """The model's class index -> Frigate's labelmap id."""
    threshold: float
    model_type: str | None
    """The model type the config says Frigate sends; None: any this decoder can serve."""

    @property
    def topic(self) -> str:
        return self.route.config.subscribe

    @property
    def spec(self) -> TensorSpec:
        return self.route.model.input

    @property
    def decoder(self) -> str:
        return self.route.last.config.postprocess


def route_name(name: str) -> str:
    """A route name (letters, digits, _ . -) for the served name."""
    return ("frigate-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name))[:64]


def route_config(config: FrigateConfig, entry: ServedModel, name: str) -> RouteConfig:
    rname = route_name(name)
    deadline = max(1, int(config.request_timeout_ms - config.reply_guard_ms))
    return RouteConfig(
        name=rname, subscribe=TOPIC_PREFIX + rname, model=entry.model,
        input=InputConfig(format="raw"), deadline_ms=deadline, queue="fifo",
        queue_size=config.queue_size, reply_margin_ms=0.0, on_late="drop",
        publish="{prefix}/{device_id}/frigate/{route}")


def decoder_fits(model_type: str, decoder: str) -> str | None:
    """None when ``decoder`` can serve Frigate's ``model_type``; else why not."""
    allowed = DECODERS_FOR.get(model_type)
    if allowed is None:
        return f"Frigate model_type {model_type!r} is unknown (known: {', '.join(DECODERS_FOR)})"
    if decoder not in allowed:
        need = (f"postprocess {' or '.join(allowed)}" if allowed else
                "a decoder edged does not have")
        return (f"Frigate model_type {model_type} needs {need}; the model's postprocess is "
                f"{decoder}")
    return None


def bind(settings: Settings, models: Mapping[str, LoadedModel]) -> list[Served]:
    """The served models, bound. Raises ConfigError saying what cannot work (``edged
    check`` and start-up, never on a request)."""
    config = settings.frigate
    return [] if config is None else [bind_one(settings, e, models) for e in config.models]


def bind_one(settings: Settings, entry: ServedModel,
             models: Mapping[str, LoadedModel]) -> Served:
    """One served model, bound (``models`` holds its model). Raises ConfigError."""
    assert settings.frigate is not None
    name = settings.served_name(entry.model, entry.name)
    try:
        return _bind_one(settings.frigate, entry, name, models[entry.model], models)
    except ValueError as exc:
        raise ConfigError(f"frigate.models[{entry.model}]", [str(exc)]) from None


def _bind_one(config: FrigateConfig, entry: ServedModel, name: str, model: LoadedModel,
              models: Mapping[str, LoadedModel]) -> Served:
    decoder = model.config.postprocess
    if decoder not in BOX_DECODERS:
        raise ValueError(f"model {entry.model!r} has postprocess {decoder}; Frigate takes "
                         f"boxes: use {', '.join(BOX_DECODERS)}")
    if entry.model_type is not None:
        why = decoder_fits(entry.model_type, decoder)
        if why is not None:
            raise ValueError(why)
    route = Route.bind(route_config(config, entry, name), models)
    # The door's own threshold and Frigate's 20 rows, not the model's MQTT settings.
    cfg = model.config.model_copy(update={"score_threshold": entry.score_threshold,
                                          "max_detections": ROWS * 4})
    bound = registry.bind_model(cfg, model.outputs, model.labels, model.input)
    route = replace(route, postprocess=bound.process, frames=None)
    classes = len(model.labels) or 1000
    ids = labelmaps.class_ids(entry.labelmap, model.labels, classes)
    return Served(name, route, ids, entry.score_threshold, entry.model_type)
