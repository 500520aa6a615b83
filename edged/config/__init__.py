"""The validated configuration: one pydantic model per section, unknown keys are errors.

Parsing is cheap and pure (phase one); loading models and delegates happens elsewhere.
Values come from the YAML file, and ``EDGED_``-prefixed environment variables override
them (nested with ``__``, e.g. ``EDGED_MQTT__PORT=1884``).
"""


from edged.config.base import Section
from edged.config.frigate import FrigateConfig, ServedModel, UploadsConfig
from edged.config.model import AnomalyConfig, ModelConfig, PhraseConfig
from edged.config.mqtt import MqttConfig, TlsConfig
from edged.config.route import (
    IMAGE_FORMATS,
    ChainLink,
    InputConfig,
    RouteConfig,
    StageWindow,
    WindowConfig,
)
from edged.config.service import DiscoveryConfig, LoggingConfig, MetricsConfig, OutboxConfig
from edged.config.settings import (
    DEFAULT_CONFIG_PATH,
    ENV_PREFIX,
    RESTART_ONLY,
    Settings,
    load_settings,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "IMAGE_FORMATS",
    "RESTART_ONLY",
    "AnomalyConfig",
    "ChainLink",
    "DiscoveryConfig",
    "FrigateConfig",
    "InputConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ModelConfig",
    "MqttConfig",
    "OutboxConfig",
    "PhraseConfig",
    "RouteConfig",
    "Section",
    "ServedModel",
    "Settings",
    "StageWindow",
    "TlsConfig",
    "UploadsConfig",
    "WindowConfig",
    "load_settings",
]
