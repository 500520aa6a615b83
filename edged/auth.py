"""Broker credentials and TLS material, read once at start (phase two).

The password comes, in this order, from ``mqtt.password_file``, from the systemd credential
``mqtt.password_credential`` in ``$CREDENTIALS_DIRECTORY`` (``LoadCredential=``), or from
``mqtt.password`` in the YAML file, which works but is warned about. It is never logged.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from edged.config import MqttConfig, TlsConfig
from edged.errors import ConfigError

log = structlog.get_logger("edged.auth")


def _first_line(path: Path, key: str) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(key, [f"cannot read {path}: {exc.strerror or exc}"]) from exc
    if not lines or not lines[0]:
        raise ConfigError(key, [f"{path} is empty: its first line must be the password"])
    return lines[0]


def password(cfg: MqttConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The broker password, or None when none is configured. Raises ConfigError."""
    env = os.environ if env is None else env
    if cfg.password_file is not None:
        return _first_line(cfg.password_file, "mqtt.password_file")
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        cred = Path(cred_dir) / cfg.password_credential
        if cred.exists():
            return _first_line(cred, f"systemd credential {cfg.password_credential}")
    if cfg.password is not None:
        log.warning("mqtt.password is in the configuration in plain text; use password_file "
                    "or a systemd credential (LoadCredential=) instead")
        return cfg.password.get_secret_value()
    return None


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """A client context that verifies the broker (and its name unless told not to)."""
    for key, path in (("ca_file", tls.ca_file), ("cert_file", tls.cert_file),
                      ("key_file", tls.key_file)):
        if path is not None and not os.access(path, os.R_OK):
            raise ConfigError(f"mqtt.tls.{key}", [f"cannot read {path}"])
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None
        )
        if tls.cert_file is not None:
            context.load_cert_chain(str(tls.cert_file),
                                    str(tls.key_file) if tls.key_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("mqtt.tls", [f"cannot load TLS material: {exc}"]) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # Turning the name check off is for brokers reached by address; the chain is still checked.
    context.check_hostname = tls.check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    return context


@dataclass(frozen=True)
class Material:
    """What a connection needs that is read from disk (phase two of loading): a bad path
    fails ``edged check``, not the first connect."""

    tls: ssl.SSLContext | None
    password: str | None

    @classmethod
    def load(cls, config: MqttConfig) -> Material:
        """Raises ConfigError."""
        return cls(tls_context(config.tls) if config.tls is not None else None,
                   password(config))
