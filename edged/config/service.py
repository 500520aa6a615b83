"""The daemon's own services: metrics, outbox, logging, Home Assistant discovery."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    field_validator,
)

from edged import topics
from edged.config.base import Section


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
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="the least severe level logged"
    )
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
        return topics.validate_prefix(value)
