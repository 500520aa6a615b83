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
from typing import Any, Literal, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
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
    reconnect_min_s: float = Field(0.5, gt=0, le=60, description="first reconnect wait")
    reconnect_max_s: float = Field(
        30.0, gt=0, le=3600, description="the reconnect wait doubles (with jitter) up to this"
    )
    session_expiry_s: int = Field(
        3600, ge=0, le=4_294_967_295, description="how long the broker keeps edged's "
        "subscriptions and queued QoS 1 input while edged is away; 0: a clean session"
    )
    password: SecretStr | None = Field(
        None, description="discouraged: prefer password_file or the systemd credential"
    )
    password_credential: str = Field(
        "mqtt-password", pattern=r"^[A-Za-z0-9_.@-]{1,255}$", description="the systemd "
        "credential (LoadCredential=) read from $CREDENTIALS_DIRECTORY when it exists"
    )

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

    @model_validator(mode="after")
    def _backoff_is_ordered(self) -> MqttConfig:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s is over reconnect_max_s")
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self


class ModelConfig(Section):
    path: Path = Field(description=".tflite file; relative paths resolve from the config's folder")
    labels: Path | None = Field(None, description="text file with one label per line")
    workers: int = Field(1, ge=1, le=32, description="interpreters, one per worker thread")
    num_threads: int = Field(1, ge=1, le=64, description="CPU threads per interpreter")
    postprocess: Literal["classification", "detection", "anomaly", "raw"] = "classification"
    top_k: int = Field(3, ge=1, le=1000, description="labels reported by classification")
    threshold: float | None = Field(
        None, description="classification: classes scoring below it are not reported; when "
        "none reaches it the label is null"
    )
    score_threshold: float = Field(
        0.5, ge=0, le=1, description="detection: boxes scoring below it are left out"
    )
    max_detections: int | None = Field(
        None, ge=1, le=10_000, description="detection: report at most this many, best first"
    )
    anomaly: AnomalyConfig | None = Field(
        None, description="anomaly: how the score is read and when it is anomalous"
    )
    delegate: Literal["auto", "cpu", "edgetpu", "gpu", "external"] = Field(
        "auto", description="auto: the Edge TPU for a model compiled for it, else the CPU "
        "(XNNPACK with num_threads); edgetpu, gpu, external: that delegate library"
    )
    device: str = Field(
        "", max_length=16, description="edgetpu: usb, usb:N, pci, pci:N, or empty for any"
    )
    devices: list[str] = Field(
        default_factory=list, max_length=32,
        description="edgetpu: one device per worker (e.g. [usb:0, usb:1]); replaces device",
    )
    library: str | None = Field(
        None, min_length=1, max_length=4096,
        description="delegate shared library, a path or a name the loader finds (edgetpu: "
        "libedgetpu.so.1; gpu: libtensorflowlite_gpu_delegate.so; external: required)",
    )
    options: dict[str, str] = Field(
        default_factory=dict, max_length=64,
        description="key/value strings passed to the delegate's create function",
    )
    fallback_model: Path | None = Field(
        None, description="CPU variant of the same model, served when the accelerator is "
        "missing or fails; default: the same model on the CPU, unless compiled for the TPU",
    )
    fallback: bool = Field(
        True, description="serve from the CPU while the accelerator is missing or failing; "
        "false: such messages get model_error"
    )
    isolation: Literal["thread", "process"] = Field(
        "thread", description="process: run each accelerator interpreter in a child process "
        "that edged restarts when it crashes or hangs"
    )
    invoke_timeout_ms: int | None = Field(
        None, gt=0, le=600_000, description="watchdog: an accelerator invoke longer than this "
        "is a failure (process isolation: the child is killed); off if unset"
    )
    retry_min_s: float = Field(
        5.0, gt=0, le=3600, description="first wait before retrying a failed accelerator"
    )
    retry_max_s: float = Field(
        300.0, gt=0, le=86_400, description="the retry wait doubles up to this"
    )

    @field_validator("options", mode="before")
    @classmethod
    def _options_as_text(cls, value: Any) -> Any:
        # YAML reads `num_threads: 4` as an integer; delegates take every value as text.
        if isinstance(value, dict):
            return {k: str(v).lower() if isinstance(v, bool) else
                    str(v) if isinstance(v, (int, float)) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _delegate_is_consistent(self) -> ModelConfig:
        from edged.runtime.edgetpu import valid_device  # runtime imports config: import late

        for dev in [self.device, *self.devices]:
            if not valid_device(dev):
                raise ValueError(f"device {dev!r}: use usb, usb:N, pci, pci:N or ''")
        tpu_only = [k for k in ("device", "devices") if getattr(self, k)]
        if tpu_only and self.delegate not in ("auto", "edgetpu"):
            raise ValueError(f"{tpu_only[0]} applies to the Edge TPU, not delegate "
                             f"{self.delegate!r}")
        if self.device and self.devices:
            raise ValueError("set device or devices, not both")
        if self.devices and len(self.devices) != self.workers:
            raise ValueError(f"devices lists {len(self.devices)} device(s) for "
                             f"{self.workers} worker(s); set workers: {len(self.devices)}")
        if self.delegate == "external" and self.library is None:
            raise ValueError("delegate external needs library: the delegate's .so path")
        if self.delegate == "cpu" and (self.library or self.options or self.fallback_model):
            raise ValueError("delegate cpu takes no library, options or fallback_model")
        if "device" in self.options and (self.device or self.devices):
            raise ValueError("give the Edge TPU device once: device/devices or options.device")
        if self.retry_min_s > self.retry_max_s:
            raise ValueError("retry_min_s is over retry_max_s")
        return self


IMAGE_FORMATS = ("jpeg", "png", "image")
_IMAGE_KEYS = ("base64_field", "resize", "mean", "std", "max_pixels", "pad_value")


class InputConfig(Section):
    format: Literal["raw", "npy", "json", "jpeg", "png", "image"] = Field(
        "raw", description="image: JPEG or PNG, told apart by their first bytes"
    )
    field: str = Field("data", description="json: the key holding the array in an object")
    max_payload_bytes: int = Field(16 * 1024 * 1024, ge=1)
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
    std: tuple[float, ...] = Field((1.0,), min_length=1, max_length=3)
    max_pixels: int = Field(
        40_000_000, ge=1, le=1_000_000_000,
        description="frames declaring more pixels are refused before decoding",
    )
    pad_value: int = Field(0, ge=0, le=255, description="letterbox: grey level of the bars")

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
        return self


class WindowConfig(Section):
    size: int = Field(ge=1, le=1_000_000, description="readings in one model input")
    hop: int | None = Field(
        None, ge=1, description="readings between windows: size (default) tumbles, less slides"
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
        if self.hop is not None and self.hop > self.size:
            raise ValueError(f"hop {self.hop} is over size {self.size}: readings would be lost")
        return self


class AnomalyConfig(Section):
    source: Literal["output", "class", "reconstruction"] = Field(
        "output", description="output: the model's single output value; class: the "
        "probability of `label`; reconstruction: mean squared error of output vs. input"
    )
    label: str | None = Field(None, min_length=1, description="class: the label (or index)")
    threshold: float = Field(description="the score that separates normal from anomalous")
    direction: Literal["above", "below"] = Field(
        "above", description="anomalous when the score is above (or below) the threshold"
    )
    hysteresis: float = Field(
        0.0, ge=0, description="back to normal only once the score is this far past the "
        "threshold on the normal side, so a noisy score does not flap"
    )
    max_topics: int = Field(1000, ge=1, le=1_000_000, description="source topics tracked")

    @model_validator(mode="after")
    def _label_for_class(self) -> AnomalyConfig:
        if (self.source == "class") != (self.label is not None):
            raise ValueError("source class needs a label, and only it takes one")
        return self


class RouteConfig(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    subscribe: str = Field(description="MQTT filter; wildcards and $share/GROUP/ allowed")
    model: str
    chain: tuple[str, ...] = Field(
        (), max_length=8, description="models run after `model`, each fed the previous one's "
        "output (e.g. a feature extractor, then a classifier); one deadline for the whole chain"
    )
    input: InputConfig = InputConfig()
    publish: str = Field("{prefix}/{device_id}/predictions/{route}")
    publish_qos: int = Field(1, ge=0, le=2)
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
    reply_margin_ms: float = Field(
        1.0, ge=0, le=10_000, description="time kept in hand for the answer to reach the sender"
    )
    deadline_ms: int = Field(1000, gt=0, le=24 * 3600 * 1000)
    window: WindowConfig | None = Field(
        None, description="build each model input from a stream of readings per topic"
    )

    @field_validator("subscribe")
    @classmethod
    def _valid_filter(cls, value: str) -> str:
        return topics.validate_filter(value)

    @field_validator("publish")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        return topics.validate_template(value)


class MetricsConfig(Section):
    port: int | None = Field(None, ge=1, le=65535, description="Prometheus port; off if unset")
    host: str = Field("127.0.0.1", description="address the metrics endpoint binds to")


class OutboxConfig(Section):
    memory_limit: int = Field(
        10_000, ge=1, le=10_000_000, description="results held in memory while the broker "
        "is unreachable; beyond it the oldest are dropped and counted"
    )
    memory_limit_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="the same, in bytes")
    spool_path: Path | None = Field(
        None, description="SQLite file (WAL) that keeps undelivered results across restarts, "
        "e.g. /var/lib/edged/outbox.sqlite; unset: memory only"
    )
    spool_limit: int = Field(
        1_000_000, ge=1, le=100_000_000, description="results kept in the spool; beyond it "
        "the oldest are dropped and counted"
    )
    flush_timeout_s: float = Field(
        5.0, ge=0, le=600, description="on shutdown, time to deliver what is waiting before "
        "it is left in the spool (or dropped, without one)"
    )

    @field_validator("spool_path")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("spool_path must be an absolute path")
        return value


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a terminal, JSON lines otherwise"
    )


class DiscoveryConfig(Section):
    enabled: bool = Field(
        False, description="publish Home Assistant MQTT discovery configs (retained) on "
        "connect, so each route shows up as a sensor with edged's availability"
    )
    prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix")

    @field_validator("prefix")
    @classmethod
    def _prefix_is_a_topic(cls, value: str) -> str:
        topics.validate_template(value)
        if "{" in value:
            raise ValueError("the discovery prefix cannot contain placeholders")
        return value.strip("/")


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
    metrics: MetricsConfig = MetricsConfig()
    shutdown_timeout_s: float = Field(10.0, ge=0, le=600)
    stats_interval_s: float = Field(
        30.0, ge=0, le=86400, description="seconds between stats snapshots; 0 turns them off"
    )
    worker_niceness: int = Field(
        5, ge=0, le=19, description="nice value of worker threads, so inference never starves "
        "the MQTT thread that reads frames and sends answers"
    )
    outbox: OutboxConfig = OutboxConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()

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
            for model in (route.model, *route.chain):
                if model not in self.models:
                    known = ", ".join(sorted(self.models)) or "none are configured"
                    raise ValueError(
                        f"route {route.name!r} uses model {model!r}, which is not under "
                        f"'models' (known: {known})"
                    )
        return self

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
