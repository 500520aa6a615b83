"""Security against a real mosquitto: a TLS listener that wants client certificates (made
here with ``cryptography``), a password file made by mosquitto_passwd, and an ACL."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from edged import auth
from edged.config import MqttConfig
from edged.errors import ConfigError
from tests.support.broker import Broker, TlsListener, passwd_file
from tests.support.certs import Pki, make_pki
from tests.support.daemon import Edged, digits_config
from tests.support.probe import Probe

EDGED_PASSWORD = "s3cret-Horse-battery"
ACL = """user edged
topic readwrite edged/test-box/#
topic read sensors/#
user tester
topic readwrite #
"""


def test_password_sources_in_order_and_plain_yaml_is_warned_about(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "mqtt-password").write_text("from-credential\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}
    assert auth.password(MqttConfig(password_file=tmp_path / "pw"), env) == "from-file"
    assert auth.password(MqttConfig(), env) == "from-credential"
    with structlog.testing.capture_logs() as logs:
        assert auth.password(MqttConfig(password="in-yaml"), {}) == "in-yaml"
    assert "plain text" in logs[0]["event"] and "in-yaml" not in repr(logs)
    assert "in-yaml" not in repr(MqttConfig(password="in-yaml"))  # a SecretStr
    (tmp_path / "empty").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        auth.password(MqttConfig(password_file=tmp_path / "empty"), {})


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def secure_broker(tmp_path: Path, pki: Pki) -> Iterator[Broker]:
    folder = tmp_path / "broker"
    folder.mkdir()
    passwords = passwd_file(folder / "passwd", {"edged": EDGED_PASSWORD, "tester": "t"})
    (folder / "acl").write_text(ACL)
    b = Broker(folder, tls=TlsListener(pki.server.cert, pki.server.key, client_ca=pki.ca),
               password_file=passwords, acl_file=folder / "acl")
    b.start()
    yield b
    b.stop()


def secure_config(broker: Broker, pki: Pki, password_file: Path | None,
                  ca: Path | None = None, **route: Any) -> dict[str, Any]:
    config = digits_config(broker.port, **route)
    assert broker.tls_port is not None
    config["mqtt"].update({
        "port": broker.tls_port, "username": "edged",
        "tls": {"ca_file": str(ca or pki.ca), "cert_file": str(pki.client.cert),
                "key_file": str(pki.client.key)},
    })
    if password_file is not None:
        config["mqtt"]["password_file"] = str(password_file)
    return config


def probe_as_tester(broker: Broker) -> Probe:
    return Probe(broker.port, username="tester", password="t")


def wait_for(predicate: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.integration
def test_right_credentials_over_tls_from_a_systemd_credential(
    tmp_path: Path, secure_broker: Broker, pki: Pki, daemons: list[Edged],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text(EDGED_PASSWORD + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    probe = probe_as_tester(secure_broker)
    try:
        probe.subscribe("edged/test-box/#")
        edged = Edged(tmp_path, secure_config(secure_broker, pki, None))
        daemons.append(edged)
        edged.start()
        assert probe.next(timeout=20, topic="edged/test-box/status").payload == b"online"
        probe.publish("sensors/a/frame", bytes(64))
        answer = probe.next(timeout=10, topic="edged/test-box/predictions/cam").json()
        assert "result" in answer
    finally:
        probe.close()
    assert edged.stop() == 0
    assert EDGED_PASSWORD not in edged.log()


@pytest.mark.integration
def test_wrong_password_is_refused_clearly_and_retried_with_backoff(
    tmp_path: Path, secure_broker: Broker, pki: Pki, daemons: list[Edged]
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    edged = Edged(tmp_path, secure_config(secure_broker, pki, wrong))
    daemons.append(edged)
    edged.start()
    refusals = lambda: secure_broker.log.read_text().count("not authorised")  # noqa: E731
    assert wait_for(lambda: secure_broker.log.exists() and refusals() >= 3, 20), edged.log()
    assert edged.proc is not None and edged.proc.poll() is None
    log = edged.log()
    assert log.count("refused the connection") == 1, log  # once, not once per attempt
    assert "Not authorized" in log and "not-the-password" not in log


@pytest.mark.integration
def test_untrusted_broker_certificate_is_refused_clearly_and_retried(
    tmp_path: Path, secure_broker: Broker, pki: Pki, daemons: list[Edged]
) -> None:
    pw = tmp_path / "pw"
    pw.write_text(EDGED_PASSWORD)
    edged = Edged(tmp_path, secure_config(secure_broker, pki, pw, ca=pki.rogue_ca))
    daemons.append(edged)
    edged.start()
    attempts = lambda: secure_broker.log.read_text().count(  # noqa: E731
        f"on port {secure_broker.tls_port}")
    assert wait_for(lambda: secure_broker.log.exists() and attempts() >= 3, 20), edged.log()
    log = edged.log()
    assert log.count("not trusted") == 1, log
    assert "self-signed certificate" in log and "mqtt.tls.ca_file" in log


@pytest.mark.integration
def test_publishing_outside_the_acl_is_detected_logged_once_and_counted(
    tmp_path: Path, secure_broker: Broker, pki: Pki, daemons: list[Edged]
) -> None:
    pw = tmp_path / "pw"
    pw.write_text(EDGED_PASSWORD)
    config = secure_config(secure_broker, pki, pw, publish="forbidden/{route}")
    probe = probe_as_tester(secure_broker)
    try:
        probe.subscribe("edged/test-box/#", "forbidden/#")
        edged = Edged(tmp_path, config)
        daemons.append(edged)
        edged.start()
        assert probe.next(timeout=20, topic="edged/test-box/status").payload == b"online"
        for _ in range(3):
            probe.publish("sensors/a/frame", bytes(64))
        assert wait_for(lambda: "broker refused a publish" in edged.log(), 10), edged.log()
        time.sleep(0.5)
        assert edged.stop(signal.SIGTERM) == 0
        stats = probe.next(timeout=5, topic="edged/test-box/stats").json()
        with pytest.raises(TimeoutError):
            probe.next(timeout=0.5, topic="forbidden/cam")
    finally:
        probe.close()
    log = edged.log()
    assert log.count("broker refused a publish") == 1 and "forbidden/cam" in log
    assert stats["mqtt"]["publish_refused"] == 3
    assert stats["mqtt"]["refused_topics"] == ["forbidden/cam"]
