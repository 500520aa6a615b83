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
        False, description="announce routes to Home Assistant through MQTT discovery: an "
        "entity per route, or per source on a route whose subscription has wildcards, "
        "available while edged is"
    )
    prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix")
    status_topic: str | None = Field(
        None, description="where Home Assistant says online when it starts (its birth "
        "message); edged then publishes every config and state again. Unset: "
        "{prefix}/status, Home Assistant's default"
    )
    max_sources: int = Field(
        100, ge=1, le=10_000, description="per-source entities a wildcard route may have; "
        "further sources are answered as usual but not announced, and counted"
    )
    expire_after_s: float = Field(
        86_400.0, ge=1, le=31_536_000, description="a source silent this long has its "
        "entities removed from Home Assistant (they come back when it sends again)"
    )
    min_interval_s: float = Field(
        1.0, ge=0, le=3600, description="while a source's state stays the same, its "
        "attributes (scores) are published at most this often; a new state goes at once"
    )

    @field_validator("prefix")
    @classmethod
    def _prefix_is_a_topic(cls, value: str) -> str:
        return topics.validate_prefix(value)

    @field_validator("status_topic")
    @classmethod
    def _status_is_a_topic(cls, value: str | None) -> str | None:
        return None if value is None else topics.validate_prefix(value)

    @property
    def birth_topic(self) -> str:
        """The topic Home Assistant announces itself on."""
        return self.status_topic or f"{self.prefix}/status"
