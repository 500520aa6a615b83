"""``mqtt.protocol: auto`` (edged/mqtt/negotiate.py) and the probation of a publish that
closes the connection (edged/mqtt/outgoing.py), against brokers no one here wrote: NATS's
MQTT server (3.1.1 only: a level-5 CONNECT gets return code 1; a QoS 2 PUBLISH resets the
connection) and RabbitMQ's MQTT plugin 3.10 (3.1.1 only: it closes the socket after a level-5
CONNECT). Plus ``edged check --broker`` there."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.brokers import MqttBroker, Nats, RabbitMq
from tests.support.daemon import REPO, Edged, digits_config
from tests.support.probe import Probe

pytestmark = pytest.mark.integration
STATUS = "edged/test-box/status"
FRAME = bytes(range(64))


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MqttBroker]:
    broker = Nats(tmp_path_factory.mktemp("nats"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MqttBroker]:
    broker = RabbitMq(tmp_path_factory.mktemp("rabbitmq"))
    broker.start()
    yield broker
    broker.stop()


def config(port: int, **mqtt: Any) -> dict[str, Any]:
    cfg = digits_config(port)
    del cfg["mqtt"]["protocol"]  # the default: auto
    cfg["mqtt"].update(mqtt)
    return cfg


def events(edged: Edged) -> list[dict[str, Any]]:
    out = []
    for line in edged.log().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def wait_for(edged: Edged, text: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while text not in edged.log():
        assert time.monotonic() < end, f"no {text!r} in the log:\n{edged.log()}"
        assert edged.proc is not None and edged.proc.poll() is None, edged.log()
        time.sleep(0.1)


@pytest.mark.parametrize("name", ["nats", "rabbitmq"])
def test_auto_speaks_3_1_1_to_a_broker_that_refuses_5(
        tmp_path: Path, name: str, request: pytest.FixtureRequest, daemons: list[Edged]
) -> None:
    broker: MqttBroker = request.getfixturevalue(name)
    probe = Probe(broker.port, protocol="3.1.1")
    probe.subscribe(STATUS, "edged/test-box/predictions/cam")
    edged = Edged(tmp_path, config(broker.port))
    daemons.append(edged)
    edged.start()
    edged.wait_online(probe, STATUS)
    for i in range(10):
        probe.publish(f"sensors/n{i}/frame", FRAME, qos=1)
    assert len(probe.collect(10, timeout=30, topic="edged/test-box/predictions/cam")) == 10
    log = events(edged)
    assert any(e["event"].startswith("the broker does not take MQTT 5") for e in log)
    connected = [e for e in log if e["event"] == "connected"]
    assert [e["protocol"] for e in connected] == ["3.1.1"]
    assert not any("unreachable" in e["event"] for e in log), edged.log()
    probe.close()


@pytest.mark.parametrize("name", ["nats", "rabbitmq"])
def test_an_explicit_5_that_is_refused_names_the_setting(
        tmp_path: Path, name: str, request: pytest.FixtureRequest, daemons: list[Edged]
) -> None:
    broker: MqttBroker = request.getfixturevalue(name)
    edged = Edged(tmp_path, config(broker.port, protocol="5"))
    daemons.append(edged)
    edged.start()
    wait_for(edged, 'set mqtt.protocol: \\"3.1.1\\"')
    assert "unreachable" not in edged.log()


def test_a_qos2_route_on_nats_does_not_wedge_the_others_and_the_will_still_fires(
        tmp_path: Path, nats: MqttBroker, daemons: list[Edged]) -> None:
    # A persistent session: NATS keeps the requests sent while edged reconnects.
    cfg = config(nats.port, publish_attempts=3, reconnect_min_s=0.1, reconnect_max_s=0.3,
                 session_expiry_s=600, client_id="edged-nats-qos2")
    cfg["routes"][0]["publish_qos"] = 2
    cfg["routes"].append({**cfg["routes"][0], "name": "other", "subscribe": "other/+/frame",
                          "publish_qos": 1})
    probe = Probe(nats.port, protocol="3.1.1")
    probe.subscribe(STATUS, "edged/test-box/predictions/#")
    edged = Edged(tmp_path, cfg)
    daemons.append(edged)
    edged.start()
    edged.wait_online(probe, STATUS)
    for i in range(20):
        probe.publish(f"sensors/n{i}/frame", FRAME, qos=1)
        probe.publish(f"other/n{i}/frame", FRAME, qos=1)
    # Each request's result at least once (QoS 1 on this broker: a reconnect may bring one
    # again), counted by the request's topic.
    answered: dict[str, set[str]] = {"cam": set(), "other": set()}
    end = time.monotonic() + 60
    while sum(map(len, answered.values())) < 40 and time.monotonic() < end:
        with contextlib.suppress(TimeoutError):
            message = probe.next(timeout=1.0)
            if message.topic.startswith("edged/test-box/predictions/"):
                answered[message.topic.rsplit("/", 1)[1]].add(message.json()["topic"])
    # NATS resets the connection on a QoS 2 PUBLISH: the one under suspicion is tried alone
    # `publish_attempts` times, then edged publishes at QoS 1 there, and everything flows.
    assert {k: len(v) for k, v in answered.items()} == {"cam": 20, "other": 20}, (
        answered, edged.log()[-3000:])
    log = events(edged)
    assert any(e["event"].startswith("the broker closes the connection on QoS 2") for e in log)
    assert sum(e["event"] == "connected" for e in log) <= 1 + 3 + 2, edged.log()
    assert edged.proc is not None
    edged.proc.send_signal(signal.SIGKILL)
    edged.proc.wait(10)
    end = time.monotonic() + 90  # 1.5 keep-alives of 30 s
    while probe.next(timeout=max(0.1, end - time.monotonic()), topic=STATUS
                     ).payload != b"offline":
        pass
    probe.close()


def check_broker(config_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edged", "check", "--broker", "--config",
                           str(config_path)], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_check_broker_says_what_nats_announces(tmp_path: Path, nats: MqttBroker) -> None:
    path = tmp_path / "edged.yaml"
    cfg = config(nats.port)
    cfg["routes"][0]["publish_qos"] = 2
    path.write_text(yaml.safe_dump(cfg))
    done = check_broker(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "answered (MQTT 3.1.1)" in done.stdout
    assert "protocol: MQTT 3.1.1; MQTT 3.1.1 announces no limits" in done.stdout
    assert "Nagle suspected:" in done.stdout
