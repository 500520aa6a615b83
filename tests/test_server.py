"""The server's lifecycle in-process, over a fake transport: what a message brings, what a
reload swaps, what a shutdown does, asserted on what would be published rather than on
log lines. The real daemon over a real broker is tested in test_end_to_end and test_reload."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edged.config import load_settings
from edged.server import Server, load
from edged.types import Inbound
from tests.support.daemon import MODELS, digits_config
from tests.support.fakes import FakeBroker

IMAGES = np.load(MODELS / "digits_holdout.npz")


def frame(i: int, topic: str = "sensors/a/frame", reply: str | None = "replies/me") -> Inbound:
    payload = np.rint(IMAGES["images"][i] * 255).astype(np.uint8).tobytes()
    return Inbound(topic, payload, 1, time.time(), time.monotonic(), reply, str(i).encode())


def replies(broker: FakeBroker, topic: str = "replies/me") -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in broker.published if m.topic == topic]


def serve(tmp_path: Path, raw: dict[str, Any]) -> tuple[Server, FakeBroker, Path]:
    """A started server of config ``raw`` over a fake transport."""
    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config)
    made: list[FakeBroker] = []

    def make(on_message: Callable[[Inbound], None]) -> FakeBroker:
        made.append(FakeBroker(on_message))
        return made[0]

    server = Server(settings, load(settings), config_path=config, make_transport=make)
    server.start()
    return server, made[0], config


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, FakeBroker, Path]]:
    served = serve(tmp_path, digits_config(1))
    yield served
    served[0].shutdown()


def test_a_message_gets_its_answer_and_is_counted(
        served: tuple[Server, FakeBroker, Path]) -> None:
    server, broker, _ = served
    assert broker.started
    assert server.pipeline.models["digits"].inline  # digits takes microseconds
    broker.deliver(frame(0))
    (reply,) = replies(broker)
    assert reply["result"]["label"] == str(IMAGES["labels"][0])
    assert server.stats.totals()["succeeded"] == 1
    assert "broker connected (fake)" in server.status_line()
    broker.deliver(frame(1, reply=None))  # no Response Topic: the route's topic gets it
    (routed,) = replies(broker, "edged/test-box/predictions/cam")
    assert routed["result"]["label"] == str(IMAGES["labels"][1])


def test_a_reload_swaps_routes_and_subscriptions(
        served: tuple[Server, FakeBroker, Path]) -> None:
    server, broker, config = served
    raw = digits_config(1)
    raw["routes"].append({**raw["routes"][0], "name": "door", "subscribe": "door/+/frame"})
    config.write_text(yaml.safe_dump(raw))
    assert server.reload()
    assert broker.subscriptions == ["sensors/+/frame", "door/+/frame",
                                    "edged/test-box/stats/request"]
    broker.deliver(frame(2, topic="door/1/frame"))
    (reply,) = replies(broker)
    assert reply["route"] == "door" and reply["result"]["label"] == str(IMAGES["labels"][2])


def test_a_bad_reload_keeps_the_old_routes(served: tuple[Server, FakeBroker, Path]) -> None:
    server, broker, config = served
    config.write_text("routes: [{name: x}]\n")
    assert not server.reload()
    broker.deliver(frame(3))
    assert replies(broker)[0]["result"]["label"] == str(IMAGES["labels"][3])


def test_shutdown_holds_input_finishes_queued_work_and_stops_the_transport(
        tmp_path: Path) -> None:
    raw = digits_config(1, queue_size=64, deadline_ms=10_000)
    raw["models"]["digits"]["inline"] = False  # through the workers' queue
    server, broker, _ = serve(tmp_path, raw)
    for i in range(40):
        broker.deliver(frame(i))
    server.shutdown()
    assert broker.holding and broker.stopped
    answered = replies(broker)
    assert len(answered) == 40  # queued work was finished, not dropped
    assert all("result" in a for a in answered)
    stats = [json.loads(m.payload) for m in broker.published
             if m.topic == "edged/test-box/stats"]
    assert stats and stats[-1]["routes"]["cam"]["succeeded"] == 40


def test_a_stats_request_is_answered_at_once_but_not_more_than_twice_a_second(
        served: tuple[Server, FakeBroker, Path]) -> None:
    server, broker, _ = served
    broker.deliver(frame(0))
    ask = Inbound("edged/test-box/stats/request", b"", 0, time.time(), time.monotonic())
    for _ in range(5):  # five watchers asking at once
        broker.deliver(ask)
    snapshots = [json.loads(m.payload) for m in broker.published
                 if m.topic == "edged/test-box/stats"]
    assert len(snapshots) == 1
    assert snapshots[0]["routes"]["cam"]["succeeded"] == 1
    assert server.stats.totals()["unrouted"] == 0  # not a message for the routes
    time.sleep(0.6)
    broker.deliver(ask)
    assert len([m for m in broker.published if m.topic == "edged/test-box/stats"]) == 2
