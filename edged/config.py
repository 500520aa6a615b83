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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from edged import topics
from edged.errors import ConfigError
from edged.yamlfile import KeyPath, format_path, line_of, load_yaml_with_lines

DEFAULT_CONFIG_PATH = Path("/etc/edged/edged.yaml")
ENV_PREFIX = "EDGED_"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(Section):
    ca_file: Path | None = Field(None, description="CA bundle that signs the broker's certificate")
    cert_file: Path | None = Field(None, description="client certificate, for mutual TLS")
    key_file: Path | None = Field(None, description="client private key, for mutual TLS")
    check_hostname: bool = Field(True, description="verify the broker's name in its certificate")


class MqttConfig(Section):
    host: str = Field("127.0.0.1", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version")
    client_id: str | None = Field(None, description="default: edged-{device_id}")
    keepalive_s: int = Field(30, ge=5, le=3600)
    username: str | None = None
    password_file: Path | None = Field(None, description="file whose first line is the password")
    tls: TlsConfig | None = None
    topic_prefix: str = Field("edged", description="status, stats and errors live under it")
    subscribe_qos: int = Field(1, ge=0, le=2)
    reconnect_min_s: float = Field(0.5, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: Any) -> Any:
        # YAML reads `protocol: 5` as an integer and `protocol: 3.1.1` as text.
        return str(value) if isinstance(value, (int, float)) else value

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_a_topic(cls, value: str) -> str:
        topics.validate_template(value)
        if "{" in value:
            raise ValueError("the topic prefix cannot contain placeholders")
        return value.strip("/")


class ModelConfig(Section):
    path: Path = Field(description=".tflite file; relative paths resolve from the config's folder")
    labels: Path | None = Field(None, description="text file with one label per line")
    workers: int = Field(1, ge=1, le=32, description="interpreters, one per worker thread")
    num_threads: int = Field(1, ge=1, le=64, description="CPU threads per interpreter")
    postprocess: Literal["classification", "raw"] = "classification"
    top_k: int = Field(3, ge=1, le=1000, description="labels reported by classification")
    queue_size: int = Field(64, ge=1, le=100_000, description="messages waiting for a worker")


class InputConfig(Section):
    format: Literal["raw", "npy", "json"] = "raw"
    field: str = Field("data", description="json: the key holding the array in an object")
    max_payload_bytes: int = Field(16 * 1024 * 1024, ge=1)


class RouteConfig(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    subscribe: str = Field(description="MQTT filter; wildcards and $share/GROUP/ allowed")
    model: str
    input: InputConfig = InputConfig()
    publish: str = Field("{prefix}/{device_id}/predictions/{route}")
    publish_qos: int = Field(1, ge=0, le=2)
    deadline_ms: int = Field(1000, gt=0, le=24 * 3600 * 1000)

    @field_validator("subscribe")
    @classmethod
    def _valid_filter(cls, value: str) -> str:
        return topics.validate_filter(value)

    @field_validator("publish")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        return topics.validate_template(value)


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a terminal, JSON lines otherwise"
    )


class Settings(BaseSettings):
    """The whole configuration of one edged process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    device_id: str = Field(default_factory=socket.gethostname, pattern=r"^[^+#/\x00]{1,128}$")
    mqtt: MqttConfig = MqttConfig()
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    routes: list[RouteConfig] = Field(default_factory=list)
    logging: LoggingConfig = LoggingConfig()
    shutdown_timeout_s: float = Field(10.0, ge=0, le=600)
    stats_interval_s: float = Field(
        30.0, ge=0, le=86400, description="seconds between stats snapshots; 0 turns them off"
    )

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
            if route.model not in self.models:
                known = ", ".join(sorted(self.models)) or "none are configured"
                raise ValueError(
                    f"route {route.name!r} uses model {route.model!r}, which is not under "
                    f"'models' (known: {known})"
                )
        return self

    def resolve_paths(self, base: Path) -> Settings:
        """Return a copy whose relative file paths are made absolute against ``base``."""

        def fix(p: Path | None) -> Path | None:
            return None if p is None or p.is_absolute() else (base / p).resolve()

        models = {}
        for name, m in self.models.items():
            update = {k: v for k, v in (("path", fix(m.path)), ("labels", fix(m.labels))) if v}
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
    for part in loc[:-1]:
        if isinstance(part, int) or section is None:
            continue
        field = section.model_fields.get(str(part)) if hasattr(section, "model_fields") else None
        section = _model_of(field.annotation) if field is not None else None
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
