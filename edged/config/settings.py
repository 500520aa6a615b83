"""The validated configuration: one pydantic model per section, unknown keys are errors.

Parsing is cheap and pure (phase one); loading models and delegates happens elsewhere.
Values come from the YAML file, and ``EDGED_``-prefixed environment variables override
them (nested with ``__``, e.g. ``EDGED_MQTT__PORT=1884``).
"""


from __future__ import annotations

import difflib
import os
import socket
from pathlib import Path
from typing import Any, get_origin

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from edged.config.frigate import FrigateConfig
from edged.config.model import ModelConfig
from edged.config.mqtt import MqttConfig
from edged.config.route import RouteConfig
from edged.config.service import DiscoveryConfig, LoggingConfig, MetricsConfig, OutboxConfig
from edged.errors import ConfigError
from edged.yamlfile import KeyPath, format_path, line_of, load_yaml_with_lines

DEFAULT_CONFIG_PATH = Path("/etc/edged/edged.yaml")
ENV_PREFIX = "EDGED_"
# Sections whose change needs a restart: they shape the connection, its identity and topics,
# or the outbox's store. A reload (edged.reload) keeps the running values and says so; the
# configuration reference (edged.config.reference) marks them.
RESTART_ONLY = ("device_id", "mqtt", "outbox", "metrics")


class Settings(BaseSettings):
    """The whole configuration of one edged process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    device_id: str = Field(
        default_factory=socket.gethostname, pattern=r"^[^+#/\x00]{1,128}$",
        description="this box's name in topics, results and the client id; default: the host "
        "name; unique per box",
    )
    mqtt: MqttConfig = Field(MqttConfig(), description="the broker connection")
    models: dict[str, ModelConfig] = Field(
        default_factory=dict, description="the models, by the name routes use")
    routes: list[RouteConfig] = Field(
        default_factory=list, description="what to subscribe to and which model answers")
    logging: LoggingConfig = Field(LoggingConfig(), description="log level and format")
    metrics: MetricsConfig = Field(MetricsConfig(), description="the Prometheus endpoint")
    shutdown_timeout_s: float = Field(
        10.0, ge=0, le=600, description="on SIGTERM, time to finish queued work before the "
        "rest is answered shutdown"
    )
    stats_interval_s: float = Field(
        30.0, ge=0, le=86400, description="seconds between stats snapshots; 0 turns them off"
    )
    worker_niceness: int = Field(
        5, ge=0, le=19, description="nice value of worker threads that run inference on the "
        "CPU, so it never starves the MQTT thread that reads frames and sends answers "
        "(workers on an accelerator keep the normal priority)"
    )
    outbox: OutboxConfig = Field(
        OutboxConfig(), description="results kept while the broker is unreachable")
    discovery: DiscoveryConfig = Field(
        DiscoveryConfig(), description="Home Assistant MQTT discovery")
    frigate: FrigateConfig | None = Field(
        None, description="serve Frigate's zmq detector (docs/frigate.md); off if unset")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's contents arrive as init arguments; the environment overrides them.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _routes_are_consistent(self) -> Settings:
        names: set[str] = set()
        for route in self.routes:
            if route.name in names:
                raise ValueError(f"route name {route.name!r} is used twice")
            names.add(route.name)
            for model in (route.model, *route.chain_models):
                if model not in self.models:
                    known = ", ".join(sorted(self.models)) or "none are configured"
                    raise ValueError(
                        f"route {route.name!r} uses model {model!r}, which is not under "
                        f"'models' (known: {known})"
                    )
        if self.frigate is not None:
            served: set[str] = set()
            for entry in self.frigate.models:
                if entry.model not in self.models:
                    known = ", ".join(sorted(self.models)) or "none are configured"
                    raise ValueError(f"frigate serves model {entry.model!r}, which is not "
                                     f"under 'models' (known: {known})")
                name = self.served_name(entry.model, entry.name)
                if name in served:
                    raise ValueError(f"frigate serves two models as {name!r}: give one a "
                                     "name of its own")
                served.add(name)
        return self

    def served_name(self, model: str, name: str | None) -> str:
        """The name Frigate asks for a served model by: given, or its file's basename."""
        return name if name is not None else self.models[model].path.name

    def resolve_paths(self, base: Path) -> Settings:
        """Return a copy whose relative file paths are made absolute against ``base``."""

        def fix(p: Path | None) -> Path | None:
            return None if p is None or p.is_absolute() else (base / p).resolve()

        def fix_library(lib: str | None) -> str | None:
            # A bare name ("libedgetpu.so.1") is for the dynamic loader to find; only a
            # relative path with a folder in it is relative to the config file.
            if lib is None or "/" not in lib or Path(lib).is_absolute():
                return None
            return str((base / lib).resolve())

        models = {}
        for name, m in self.models.items():
            fixed = (("path", fix(m.path)), ("labels", fix(m.labels)),
                     ("keypoint_labels", fix(m.keypoint_labels)),
                     ("fallback_model", fix(m.fallback_model)), ("library", fix_library(m.library)))
            update = {k: v for k, v in fixed if v}
            models[name] = m.model_copy(update=update)
        return self.model_copy(update={"models": models})


def load_settings(path: Path) -> Settings:
    """Read, validate and resolve the configuration file at ``path``.

    Raises ConfigError listing every problem with its key path and line.
    """
    data, lines = load_yaml_with_lines(path)
    unknown = _unknown_env_keys()
    if unknown:
        raise ConfigError(str(path), unknown)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(str(path), [_describe(e, lines) for e in exc.errors()]) from None
    return settings.resolve_paths(path.parent.resolve())


def _describe(error: Any, lines: dict[KeyPath, int]) -> str:
    loc: KeyPath = tuple(error["loc"])
    where = format_path(loc)
    env_name = _env_name(loc)
    line = line_of(loc, lines)
    if env_name is not None:
        origin = f" (from the environment, {env_name})"
    elif line is not None:
        origin = f" (line {line})"
    else:
        origin = ""
    if error["type"] == "extra_forbidden":
        hint = _suggest(loc)
        return f"{where}{origin}: unknown key{hint}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}{origin}: {message}"


def _unknown_env_keys() -> list[str]:
    """``EDGED_`` variables that name no top-level key: a typo there must not pass silently."""
    fields = {name.upper() for name in Settings.model_fields}
    problems = []
    for name in sorted(os.environ):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX):
            top = upper[len(ENV_PREFIX):].split("__", 1)[0]
            if top not in fields:
                close = difflib.get_close_matches(top.lower(), list(Settings.model_fields), n=1)
                hint = f"; did you mean {ENV_PREFIX}{close[0].upper()}?" if close else ""
                problems.append(f"environment variable {name}: unknown key{hint}")
    return problems


def _env_name(loc: KeyPath) -> str | None:
    """The environment variable that set ``loc`` or one of its ancestors, if any did."""
    present = {k.upper() for k in os.environ if k.upper().startswith(ENV_PREFIX)}
    keys = [str(p) for p in loc if not isinstance(p, int)]
    for end in range(len(keys), 0, -1):
        name = ENV_PREFIX + "__".join(keys[:end]).upper()
        if name in present:
            return name
    return None


def _suggest(loc: KeyPath) -> str:
    """'did you mean ...' for a mistyped key, from the fields of the section it sits in."""
    section: Any = Settings
    entry_name_next = False
    for part in loc[:-1]:
        if isinstance(part, int) or section is None:
            continue
        if entry_name_next:  # the user's name of an entry in a dict, e.g. models.<name>
            entry_name_next = False
            continue
        field = section.model_fields.get(str(part)) if hasattr(section, "model_fields") else None
        section = _model_of(field.annotation) if field is not None else None
        entry_name_next = field is not None and get_origin(field.annotation) is dict
    if section is None or not hasattr(section, "model_fields"):
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(section.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _model_of(annotation: Any) -> Any:
    """The pydantic model inside ``X``, ``X | None``, ``list[X]`` or ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
