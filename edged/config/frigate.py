"""The Frigate door: edged as the server of Frigate's ``zmq`` detector
(frigate/detectors/plugins/zmq_ipc.py). See docs/frigate.md."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edged.config.base import Section

DEFAULT_ENDPOINT = "ipc:///run/edged/frigate.sock"
MODEL_TYPES = ("ssd", "yologeneric", "yolonas", "yolox", "rfdetr", "dfine")
"""Frigate's ModelTypeEnum names, as its plugin sends them in a request's header."""


class ServedModel(Section):
    """One model Frigate's detectors may ask for."""

    model: str = Field(description="the name of a model under `models` (a box decoder: "
                       "detection, yolo or anchors)")
    name: str | None = Field(
        None, min_length=1, max_length=255, pattern=r"^[^/\x00]+$",
        description="the name Frigate asks for: the basename of Frigate's `model.path`; "
        "default: the basename of the model's own path")
    labelmap: Literal["coco-91", "coco-80"] | dict[str, int] = Field(
        "coco-91", description="the ids Frigate's labelmap gives the model's classes. "
        "coco-91: Frigate's default /labelmap.txt; coco-80: /labelmap/coco-80.txt (both by "
        "the model's label names; a model without labels passes its class index through); "
        "or a map of the model's label (or class index) to Frigate's id, classes left out "
        "being dropped")
    model_type: Literal["ssd", "yologeneric", "yolonas", "yolox", "rfdetr", "dfine"] | None = (
        Field(None, description="Frigate's `model.model_type` (the enum's name, e.g. "
              "yologeneric for yolo-generic); set, `edged check` refuses a decoder that "
              "cannot serve it and a request of another type is refused; unset: checked "
              "at the first request"))
    score_threshold: float = Field(
        0.4, ge=0, le=1, description="rows scoring below it are not sent (Frigate stops "
        "reading at the first row under its own threshold, 0.4)")

    @field_validator("labelmap")
    @classmethod
    def _ids_in_range(cls, value: object) -> object:
        if isinstance(value, dict):
            if not value:
                raise ValueError("an explicit labelmap needs at least one entry")
            bad = {k: v for k, v in value.items() if not 0 <= v <= 999}
            if bad:
                raise ValueError(f"labelmap ids must be 0..999: {bad}")
        return value


class UploadsConfig(Section):
    """Models Frigate's detectors upload (``model_data``), refused unless enabled."""

    enabled: bool = Field(False, description="accept models Frigate uploads")
    dir: Path = Field(Path("/var/lib/edged/frigate-models"), description="where uploaded "
                      "models are kept (across restarts)")
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024, le=2 * 1024 * 1024 * 1024,
                           description="the largest model accepted")
    labelmap: Literal["coco-91", "coco-80"] = Field(
        "coco-91", description="Frigate's labelmap the uploaded models' class indices are "
        "ids of (as Frigate's model.labelmap_path)")
    postprocess: Literal["detection", "yolo"] | None = Field(
        None, description="the decoder of uploaded models; unset: detection for ssd, yolo "
        "for the YOLO types (from the first request's model_type, else tried in that order)")


class FrigateConfig(Section):
    endpoints: list[str] = Field(
        [DEFAULT_ENDPOINT], min_length=1, max_length=16,
        description="ZeroMQ endpoints the ROUTER socket binds (ipc://PATH or "
        "tcp://HOST:PORT) and Frigate's detectors connect to; TCP on an address other than "
        "loopback needs allow_remote (Frigate's plugin has no authentication)")
    allow_remote: bool = Field(
        False, description="let a tcp endpoint bind an address other than loopback (e.g. "
        "for Frigate in Docker on a bridge network); logs a warning")
    models: list[ServedModel] = Field(
        default_factory=list, max_length=64, description="the models served, each under the "
        "name Frigate asks for (none: only what Frigate uploads, with uploads enabled)")
    request_timeout_ms: int = Field(
        200, ge=20, le=60_000, description="Frigate's request_timeout_ms: every request is "
        "answered within it of its receipt (a result, or 20 rows of zeros), so Frigate's "
        "socket never times out because of edged")
    reply_guard_ms: float = Field(
        20.0, ge=0, le=10_000, description="time kept in hand for the reply to reach Frigate "
        "inside the timeout: the deadline of the work is request_timeout_ms minus this")
    queue_size: int = Field(8, ge=1, le=10_000,
                            description="requests of one model waiting for a worker")
    max_pending: int = Field(
        256, ge=1, le=100_000, description="requests in flight at once; more are answered "
        "with zeros at once (counted overload)")
    max_frame_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024, description="the largest frame "
        "edged reads; a larger one drops that peer's connection (its detector resets)")
    uploads: UploadsConfig = Field(UploadsConfig(), description="models Frigate uploads")

    @field_validator("endpoints")
    @classmethod
    def _valid_endpoints(cls, value: list[str]) -> list[str]:
        for endpoint in value:
            scheme, sep, rest = endpoint.partition("://")
            if not sep or scheme not in ("ipc", "tcp") or not rest:
                raise ValueError(f"endpoint {endpoint!r}: use ipc:///path or tcp://host:port")
            if scheme == "tcp":
                host, colon, port = rest.rpartition(":")
                if not colon or not port.isdigit() or not 0 < int(port) < 65536 or not host:
                    raise ValueError(f"endpoint {endpoint!r}: tcp needs host:port")
        if len(set(value)) != len(value):
            raise ValueError("an endpoint is listed twice")
        return value

    @model_validator(mode="after")
    def _remote_is_explicit(self) -> FrigateConfig:
        if not self.models and not self.uploads.enabled:
            raise ValueError("frigate serves no model: list models, or enable uploads")
        remote = [e for e in self.endpoints if not endpoint_is_local(e)]
        if remote and not self.allow_remote:
            raise ValueError(f"endpoint {remote[0]} binds beyond loopback, where anyone "
                             "who reaches it can use edged (Frigate's plugin has no "
                             "authentication): set allow_remote: true to mean it")
        if self.reply_guard_ms >= self.request_timeout_ms / 2:
            raise ValueError("reply_guard_ms must be under half of request_timeout_ms")
        return self


def endpoint_is_local(endpoint: str) -> bool:
    """ipc, or tcp on a loopback address (a host name other than localhost is remote)."""
    scheme, _, rest = endpoint.partition("://")
    if scheme != "tcp":
        return True
    host = rest.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
