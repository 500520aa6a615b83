"""Under overload, edged sheds load by deadline and never publishes a late result."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.broker import Broker
from tests.support.daemon import MODELS, Edged, digits_config
from tests.support.probe import Probe

pytestmark = pytest.mark.integration

STATUS = "edged/test-box/status"
REPLIES = "replies/overload"
DEADLINE_MS = 200
MARGIN_MS = 50
SENT = 300
SCHEDULING_SLACK_S = 0.1  # the sender's side: see the last assertion


def mobilenet_config(port: int) -> dict[str, object]:
    config = digits_config(port, queue="edf", queue_size=16, deadline_ms=DEADLINE_MS,
                           reply_margin_ms=MARGIN_MS)
    config["models"] = {"digits": {"path": str(MODELS / "mobilenet_v2_1.0_224_quant.tflite"),
                                   "workers": 1, "postprocess": "raw"}}
    return config


def test_no_result_is_published_after_its_deadline(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    probe.subscribe(STATUS, REPLIES)
    edged = Edged(tmp_path, mobilenet_config(broker.port))
    daemons.append(edged)
    edged.start()
    end = time.monotonic() + 60
    while probe.next(timeout=max(0.1, end - time.monotonic()), topic=STATUS).payload != b"online":
        pass
    time.sleep(0.3)
    frame = np.random.default_rng(0).integers(0, 255, (1, 224, 224, 3), dtype=np.uint8).tobytes()
    sent_wall: dict[bytes, float] = {}
    for i in range(SENT):  # as fast as the probe can: several times edged's capacity
        corr = str(i).encode()
        sent_wall[corr] = time.time()
        due = str(int(sent_wall[corr] * 1000) + DEADLINE_MS)
        probe.publish("sensors/cam/frame", frame, response_topic=REPLIES, correlation_data=corr,
                      user_properties=[("deadline", due)])
    replies = probe.collect(SENT, timeout=60, topic=REPLIES)

    # Every request got exactly one answer: a result or an error saying why not.
    assert sorted(r.correlation_data or b"" for r in replies) == sorted(sent_wall)
    results = [r for r in replies if "result" in r.json()]
    errors = [r.json()["error"]["reason"] for r in replies if "error" in r.json()]
    assert set(errors) <= {"deadline", "expired", "queue_full"}, errors
    assert results, "overload must still deliver on-time results"
    assert errors, "the load was meant to exceed capacity"
    for reply in results:
        body = reply.json()
        # edged's own clock: the result was ready within the deadline, less the margin kept
        # for the way back to the sender.
        assert body["timings_ms"]["total"] <= body["deadline_ms"] - MARGIN_MS + 1e-3
        assert "late" not in body
        # And the sender's clock: it arrived by the absolute deadline the sender set, give or
        # take the broker's and this probe's own scheduling, which edged cannot hold in
        # hand (the fixed margin is for a quiet machine; CI's 2 cores under load once took
        # 227 ms for a 200 ms deadline).
        assert reply.arrived_wall <= (sent_wall[reply.correlation_data or b""]
                                      + DEADLINE_MS / 1000 + SCHEDULING_SLACK_S)
