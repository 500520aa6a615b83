"""What a broker announces, honoured by the real daemon against a real mosquitto configured
as the cloud brokers are (MQTT 5 3.2.2.3): ``max_qos 1`` (AWS IoT Core, Azure: a QoS 2
publish is a protocol error, MQTT-3.2.2-11), ``retain_available false`` (a retained will is
refused, MQTT-3.2.2-13/-14), ``max_keepalive`` (Server Keep Alive, MQTT-3.2.2-21) and
``max_packet_size`` (MQTT-3.2.2-15); and a QoS 2 result delivered exactly once across
restarts of a broker that keeps the session (MQTT-4.4.0-1), counted at a QoS 2 subscriber
with a persistent session."""

from __future__ import annotations

import contextlib
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import Broker
from tests.support.daemon import MODELS, Edged, digits_config
from tests.support.probe import Probe

pytestmark = pytest.mark.integration
STATUS = "edged/test-box/status"
RESULTS = "edged/test-box/predictions/cam"
ERRORS = "edged/test-box/errors"
REPLIES = "replies/limits"
FRAME = bytes(range(64))


@pytest.fixture
def limited(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A private mosquitto with the config lines the test is parametrised with."""
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker", extra=request.param)
    broker.start()
    yield broker
    broker.stop()


def start_edged(tmp_path: Path, port: int, daemons: list[Edged], **mqtt: Any) -> Edged:
    config = digits_config(port, publish_qos=2)
    config["mqtt"].update({"protocol": "auto", **mqtt})
    edged = Edged(tmp_path, config)
    daemons.append(edged)
    edged.start()
    return edged


def stats(probe: Probe, edged: Edged) -> dict[str, Any]:
    """A stats snapshot asked for now (as ``edged status`` does)."""
    probe.subscribe("edged/test-box/stats")
    end = time.monotonic() + 20
    while time.monotonic() < end:
        probe.publish("edged/test-box/stats/request", b"", qos=0)
        try:
            body: dict[str, Any] = probe.next(timeout=1.0, topic="edged/test-box/stats").json()
            return body
        except TimeoutError:
            continue
    raise AssertionError(f"no stats snapshot:\n{edged.log()}")


def connections(edged: Edged) -> int:
    return sum(1 for line in edged.log().splitlines() if '"event": "connected"' in line)


@pytest.mark.parametrize("limited", [["max_qos 1"]], indirect=True)
def test_max_qos_1_results_go_at_qos_1_and_the_connection_holds(
        tmp_path: Path, limited: Broker, daemons: list[Edged]) -> None:
    probe = Probe(limited.port)
    probe.subscribe(STATUS, RESULTS, qos=2)
    edged = start_edged(tmp_path, limited.port, daemons)
    edged.wait_online(probe, STATUS)
    for i in range(50):
        probe.publish(f"sensors/c{i}/frame", FRAME, qos=1)
    results = probe.collect(50, timeout=60, topic=RESULTS)
    assert len(results) == 50, edged.log()
    assert {r.qos for r in results} == {1}  # the broker's Maximum QoS, not the route's 2
    snap = stats(probe, edged)["mqtt"]
    assert snap["broker"]["maximum_qos"] == 1 and snap["protocol"] == "5"
    assert snap["qos_downgraded"] >= 50
    assert connections(edged) == 1, edged.log()  # never disconnected for "Too high QoS"
    assert "Maximum QoS" in edged.log()  # said once, in the log
    probe.close()


@pytest.mark.parametrize("limited", [["retain_available false"]], indirect=True)
def test_without_retain_availability_still_works(
        tmp_path: Path, limited: Broker, daemons: list[Edged]) -> None:
    probe = Probe(limited.port)
    probe.subscribe(STATUS)
    edged = start_edged(tmp_path, limited.port, daemons, keepalive_s=5)
    edged.wait_online(probe, STATUS)  # mosquitto refuses a retained will: edged got in
    late = Probe(limited.port)  # nothing is retained: it learns `online` from the repeat
    late.subscribe(STATUS)
    heard = late.next(timeout=15, topic=STATUS)
    assert (heard.payload, heard.retain) == (b"online", False)
    probe.publish("sensors/c1/frame", FRAME, response_topic=REPLIES, correlation_data=b"1")
    assert edged.proc is not None
    edged.proc.send_signal(signal.SIGKILL)
    edged.proc.wait(10)
    end = time.monotonic() + 30  # the will, within 1.5 keep-alives
    while late.next(timeout=max(0.1, end - time.monotonic()), topic=STATUS
                    ).payload != b"offline":
        pass
    probe.close()
    late.close()


@pytest.mark.parametrize("limited", [["max_keepalive 10"]], indirect=True)
def test_the_server_keep_alive_is_kept(
        tmp_path: Path, limited: Broker, daemons: list[Edged]) -> None:
    probe = Probe(limited.port)
    probe.subscribe(STATUS)
    edged = start_edged(tmp_path, limited.port, daemons, keepalive_s=60)
    edged.wait_online(probe, STATUS)
    time.sleep(20)  # quiet for over 1.5 x 10 s: mosquitto drops a client that pings at 60 s
    assert stats(probe, edged)["mqtt"]["broker"]["server_keep_alive"] == 10
    assert connections(edged) == 1, edged.log()
    probe.close()


@pytest.mark.parametrize("limited", [["max_packet_size 420"]], indirect=True)
def test_a_result_over_the_maximum_packet_size_becomes_a_too_large_error(
        tmp_path: Path, limited: Broker, daemons: list[Edged]) -> None:
    probe = Probe(limited.port)
    probe.subscribe(STATUS, RESULTS, REPLIES, ERRORS)
    edged = start_edged(tmp_path, limited.port, daemons)
    edged.wait_online(probe, STATUS)
    probe.publish("sensors/c1/frame", FRAME, response_topic=REPLIES, correlation_data=b"7")
    reply = probe.next(timeout=20, topic=REPLIES)
    assert reply.correlation_data == b"7"
    body = reply.json()
    assert body["error"]["reason"] == "too_large", body
    assert "Maximum Packet Size is 420 bytes" in body["error"]["message"]
    assert (body["route"], body["topic"]) == ("cam", "sensors/c1/frame")
    assert probe.next(timeout=20, topic=ERRORS).json()["error"]["reason"] == "too_large"
    # The log says so (the stats snapshot itself is over 420 bytes here: it is not sent).
    assert '"reason": "too_large"' in edged.log()
    assert connections(edged) == 1
    probe.close()


def test_a_qos2_result_arrives_exactly_once_across_broker_restarts(
        tmp_path: Path, daemons: list[Edged]) -> None:
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker", persistence=True)
    broker.start()
    # paho as a QoS 2 receiver keeps its state across reconnects and hands a message on at
    # PUBREL, once (paho.mqtt.client _handle_pubrel): exactly once at the far end.
    counter = Probe(broker.port, client_id="qos2-counter", session_expiry=600)
    counter.subscribe(RESULTS, qos=2)
    try:
        config = digits_config(broker.port, publish_qos=2, queue_size=512,
                               deadline_ms=600_000)
        config["models"]["digits"] = {
            "path": str(MODELS / "mobilenet_v2_1.0_224_quant.tflite"), "workers": 1,
            "postprocess": "classification"}
        # Requests at QoS 2 as well: a request delivered twice would be answered twice.
        config["mqtt"].update({"session_expiry_s": 600, "client_id": "edged-qos2",
                               "reconnect_min_s": 0.1, "reconnect_max_s": 0.3,
                               "subscribe_qos": 2})
        edged = Edged(tmp_path, config)
        daemons.append(edged)
        edged.start()
        probe = Probe(broker.port)
        probe.subscribe(STATUS)
        edged.wait_online(probe, STATUS)
        frame = bytes(224 * 224 * 3)
        sent = 300
        infos = [probe.client.publish(f"sensors/c{i}/frame", frame, qos=2)
                 for i in range(sent)]  # all queued in edged at once; results trickle out
        for info in infos:
            info.wait_for_publish(30)
        # Every request inside edged before the broker goes: what is counted below is the
        # results' way out, not a request the broker delivered again.
        end = time.monotonic() + 60
        while stats(probe, edged)["routes"]["cam"]["received"] < sent:
            assert time.monotonic() < end, edged.log()
        probe.close()
        for _ in range(4):  # restarts while QoS 2 results are on their way
            time.sleep(0.4)
            broker.stop()
            time.sleep(0.2)
            broker.start()
        # A result is its request's topic and the time edged received it: the same result
        # twice is a duplicate of edged's QoS 2 flow. (After these restarts mosquitto 2.0.11
        # delivers some QoS 2 requests to edged again, 13 to 24 of 300 in our runs, which
        # edged does not take for duplicates: each gets a result with its own receipt time.
        # Not yet explained; see docs/brokers.md.)
        seen: Counter[tuple[str, str]] = Counter()
        end = time.monotonic() + 120
        while len({topic for topic, _ in seen}) < sent and time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                body = counter.next(timeout=1.0, topic=RESULTS).json()
                seen[body["topic"], body["received_at"]] += 1
        time.sleep(2)  # a duplicate would come now
        for late in counter.collect(10 * sent, timeout=0.5, topic=RESULTS):
            seen[late.json()["topic"], late.json()["received_at"]] += 1
        snap = stats(counter, edged)
        received = snap["routes"]["cam"]["received"]
    finally:
        counter.close()
        broker.stop()
    print(f"QoS 2 across 4 broker restarts: {sent} requests, {received} received by edged, "
          f"{sum(seen.values())} results arrived, "
          f"{snap['mqtt']['resent_in_session']} publishes resent in the session")
    assert len({topic for topic, _ in seen}) == sent, (len(seen), edged.log()[-3000:])
    assert len(seen) == received  # one result for each receipt
    assert set(seen.values()) == {1}, [t for t, n in seen.items() if n > 1]
