"""The broker connection: address, session, credentials, TLS."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from edged import topics
from edged.config.base import Section


class TlsConfig(Section):
    ca_file: Path | None = Field(None, description="CA bundle that signs the broker's certificate")
    cert_file: Path | None = Field(None, description="client certificate, for mutual TLS")
    key_file: Path | None = Field(None, description="client private key, for mutual TLS")
    check_hostname: bool = Field(True, description="verify the broker's name in its certificate")


class MqttConfig(Section):
    host: str = Field("127.0.0.1", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port (8883 is usual for TLS)")
    protocol: Literal["auto", "5", "3.1.1"] = Field(
        "auto", description="MQTT protocol version. auto: MQTT 5, and 3.1.1 when the broker "
        "refuses 5 (NATS, RabbitMQ before 3.13, Azure IoT Hub)",
        # YAML reads `protocol: 5` as a number, which _protocol_as_text accepts.
        json_schema_extra={"type": ["string", "integer"],
                           "enum": ["auto", "5", "3.1.1", 5]},
    )
    client_id: str | None = Field(None, description="default: edged-{device_id}")
    keepalive_s: int = Field(
        30, ge=5, le=3600, description="MQTT keep-alive: the longest silence before a ping"
    )
    username: str | None = Field(None, description="broker user name; unset: anonymous")
    password_file: Path | None = Field(None, description="file whose first line is the password")
    tls: TlsConfig | None = Field(None, description="connect with TLS; unset: plain TCP")
    topic_prefix: str = Field("edged", description="status, stats and errors live under it")
    subscribe_qos: int = Field(1, ge=0, le=2, description="QoS of the routes' subscriptions")
    reconnect_min_s: float = Field(0.5, gt=0, le=60, description="first reconnect wait")
    reconnect_max_s: float = Field(
        30.0, gt=0, le=3600, description="the reconnect wait doubles (with jitter) up to this"
    )
    session_expiry_s: int = Field(
        3600, ge=0, le=4_294_967_295, description="how long the broker keeps edged's "
        "subscriptions and queued QoS 1 input while edged is away; 0: a clean session"
    )
    receive_maximum: int = Field(
        64, ge=1, le=65535, description="MQTT 5: messages the broker may have on their way "
        "to edged at once. mosquitto counts it into the QoS 0 messages it holds for edged, "
        "so a low value keeps frames from going stale in the broker during an overload"
    )
    publish_attempts: int = Field(
        3, ge=1, le=100, description="a publish alone in flight when the broker closes the "
        "connection this many times is set aside and reported (errors topic, log, stats), so "
        "that what waits behind it flows: how 3.1.1 brokers refuse a publish"
    )
    coalesce_ms: float = Field(
        0.8, ge=0, le=50, description="when two or more messages come within this many "
        "ms, let them gather up to this long in the socket so one wake-up of edged reads "
        "them all: less CPU per message on a small box, at most this much added latency. "
        "0: read every message as it comes"
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
        return topics.validate_prefix(value)

    @model_validator(mode="after")
    def _backoff_is_ordered(self) -> MqttConfig:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s is over reconnect_max_s")
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self
