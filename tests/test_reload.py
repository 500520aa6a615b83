"""SIGHUP against the real daemon: a good new config is swapped in while requests keep
coming (none lost, the connection kept); a bad config or model leaves the old one serving."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.broker import Broker
from tests.support.daemon import MODELS, Edged, digits_config
from tests.support.ledger import Ledger, Publisher, frame
from tests.support.probe import Probe

pytestmark = pytest.mark.integration
STATUS = "edged/test-box/status"


def own_model_config(tmp_path: Path, port: int) -> dict[str, Any]:
    """The digits config with the model copied into the test's folder, to change it."""
    model = tmp_path / "digits.tflite"
    shutil.copy(MODELS / "digits_int8.tflite", model)
    config = digits_config(port, queue_size=512)
    config["models"]["digits"]["path"] = str(model)
    return config


def start(tmp_path: Path, broker: Broker, daemons: list[Edged], config: dict[str, Any]
          ) -> tuple[Edged, Probe]:
    probe = Probe(broker.port)
    probe.subscribe(STATUS, "edged/test-box/predictions/+", "replies/#")
    edged = Edged(tmp_path, config)
    daemons.append(edged)
    edged.start()
    end = time.monotonic() + 30
    while probe.next(timeout=max(0.1, end - time.monotonic()), topic=STATUS).payload != (
            b"online"):
        pass  # a retained status from an earlier test
    time.sleep(0.3)
    return edged, probe


def rewrite(edged: Edged, config: dict[str, Any] | str) -> None:
    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    edged.config_path.write_text(text)


def hup_and_wait(edged: Edged, marker: str, seen: int = 0, timeout: float = 20) -> None:
    assert edged.proc is not None
    edged.proc.send_signal(signal.SIGHUP)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if edged.log().count(marker) > seen:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {marker!r} in the log:\n{edged.log()}")


def test_reload_swaps_routes_and_a_changed_model_without_losing_anything(
    tmp_path: Path, broker: Broker, daemons: list[Edged]
) -> None:
    config = own_model_config(tmp_path, broker.port)
    edged, probe = start(tmp_path, broker, daemons, config)
    ledger = Ledger()
    publisher = Publisher(probe, ledger, rate=100)
    try:
        publisher.start()
        time.sleep(1.0)
        config["models"]["digits"]["workers"] = 1  # a changed model: loaded and warmed afresh
        config["routes"].append(dict(config["routes"][0], name="json", subscribe="json/+",
                                     input={"format": "json"}))
        rewrite(edged, config)
        hup_and_wait(edged, '"event": "reloaded"')
        probe.publish("json/x", json.dumps([0.0] * 64).encode())
        time.sleep(1.0)
        publisher.stop()
        ledger.take(probe, timeout=15)
        json_answer = probe.next(timeout=10, topic="edged/test-box/predictions/json").json()
    finally:
        publisher.stop()
        probe.close()
    print(ledger.figures("reload during a 100/s stream"))
    assert ledger.lost == 0 and not ledger.errors and not ledger.dropped
    assert "result" in json_answer
    log = edged.log()
    reloaded = next(json.loads(line) for line in log.splitlines() if '"reloaded"' in line)
    assert reloaded["models_loaded"] == ["digits"] and reloaded["routes"] == ["cam", "json"]
    assert "disconnected" not in log and log.count('"event": "connected"') == 1
    assert edged.stop() == 0


def test_unchanged_model_is_not_reloaded(tmp_path: Path, broker: Broker,
                                         daemons: list[Edged]) -> None:
    config = own_model_config(tmp_path, broker.port)
    edged, probe = start(tmp_path, broker, daemons, config)
    try:
        config["routes"][0]["deadline_ms"] = 3000
        rewrite(edged, config)
        hup_and_wait(edged, '"event": "reloaded"')
        probe.publish("sensors/a/frame", frame())
        assert "result" in probe.next(timeout=10, topic="edged/test-box/predictions/cam").json()
    finally:
        probe.close()
    reloaded = next(json.loads(line) for line in edged.log().splitlines()
                    if '"reloaded"' in line)
    assert reloaded["models_loaded"] == []


@pytest.mark.parametrize("breakage", ["typo", "bad_model", "restart_only"])
def test_bad_reload_keeps_the_old_config_serving(
    tmp_path: Path, broker: Broker, daemons: list[Edged], breakage: str
) -> None:
    config = own_model_config(tmp_path, broker.port)
    edged, probe = start(tmp_path, broker, daemons, config)
    try:
        if breakage == "typo":
            config["routes"][0]["deadlne_ms"] = 5
            marker = "reload rejected"
        elif breakage == "bad_model":
            model = Path(config["models"]["digits"]["path"])
            model.write_bytes(model.read_bytes()[:1000])  # truncated in place
            marker = "reload rejected"
        else:
            config["mqtt"]["keepalive_s"] = 60  # needs a restart: kept, and said so
            marker = "take effect at the next restart"
        rewrite(edged, config)
        hup_and_wait(edged, marker)
        probe.publish("sensors/a/frame", frame(), response_topic="replies/r",
                      correlation_data=b"1")
        answer = probe.next(timeout=10, topic="replies/r").json()
    finally:
        probe.close()
    assert "result" in answer, answer
    log = edged.log()
    if breakage == "typo":
        assert "deadlne_ms" in log and "did you mean" in log
    if breakage == "bad_model":
        assert "digits" in next(line for line in log.splitlines() if "reload rejected" in line)
    assert edged.stop() == 0
