"""The benchmark's own parts (scripts/benchmarks/): the simulated
accelerator holds each invoke and writes zeros, the seed-style peer answers as the model
does, and a phase's answers are counted at the sender the way the tables say."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.runtime import select_backend
from tests.support.broker import Broker
from tests.support.daemon import MODELS

# The bench's modules live in scripts/, which is not a package (they run as scripts).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "benchmarks"))
import bench_report  # type: ignore[import-not-found]
from bench_load import (  # type: ignore[import-not-found]
    Answer,
    Phase,
    parse_answer,
    publish_correlation,
)
from bench_targets import (  # type: ignore[import-not-found]
    build_sim_delegate,
    start_peer,
    stop_process,
)

DIGITS = MODELS / "digits_int8.tflite"


def test_sim_delegate_holds_the_invoke_off_the_cpu_and_writes_zeros(tmp_path: Path) -> None:
    accel = build_sim_delegate(tmp_path, "sim:20")
    backend = select_backend()
    interp = backend.interpreter_class(
        model_path=str(DIGITS),
        experimental_delegates=[backend.load_delegate(str(accel.library), accel.options)])
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    frame = np.random.default_rng(3).integers(-128, 127, inp["shape"]).astype(inp["dtype"])
    interp.set_tensor(inp["index"], frame)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(5):
        interp.invoke()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert wall >= 5 * 0.020
    assert cpu < wall / 2  # asleep, not spinning
    assert not interp.get_tensor(out["index"]).any()


def test_sim_delegate_refuses_an_unknown_option(tmp_path: Path) -> None:
    accel = build_sim_delegate(tmp_path, "sim:1")
    with pytest.raises(ValueError):
        select_backend().load_delegate(str(accel.library), {"speed": "9"})


@pytest.fixture
def peer(broker: Broker, tmp_path: Path) -> Iterator[None]:
    proc = start_peer(tmp_path, broker.port, "bench-test/peer/in", DIGITS, None)
    yield
    stop_process(proc)


def test_peer_answers_on_the_response_topic_with_the_models_label(broker: Broker,
                                                                  peer: None) -> None:
    data = np.load(MODELS / "digits_holdout.npz")["images"][:5]
    quantized = [np.rint(i * 255).astype(np.uint8).reshape(1, 8, 8, 1) for i in data]
    reference = select_backend().interpreter_class(model_path=str(DIGITS))
    reference.allocate_tensors()
    inp, out = reference.get_input_details()[0], reference.get_output_details()[0]
    got: dict[bytes, Any] = {}
    done = threading.Event()

    def on_message(client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        corr = getattr(msg.properties, "CorrelationData", b"")
        got[corr] = parse_answer(time.time(), bytes(msg.payload))
        if len(got) == len(quantized):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.subscribe("bench-test/replies", qos=0)
    client.loop_start()
    try:
        time.sleep(0.3)
        for i, q in enumerate(quantized):
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = "bench-test/replies"
            props.CorrelationData = str(i).encode()
            client.publish("bench-test/peer/in", q.tobytes(), qos=0, properties=props)
        assert done.wait(10), f"answers for {sorted(got)} only"
    finally:
        client.loop_stop()
        client.disconnect()
    for i, q in enumerate(quantized):
        reference.set_tensor(inp["index"], q)
        reference.invoke()
        expected = int(np.argmax(reference.get_tensor(out["index"]).reshape(-1)))
        answer = got[str(i).encode()]
        assert answer.reason is None
        assert answer.label == expected


def test_a_phase_counts_on_time_late_and_refused_at_the_sender() -> None:
    phase = Phase(100.0, "t")
    phase.sent_at = {0: 10.0, 1: 10.0, 2: 10.0, 3: 10.0}
    phase.answers = {
        0: Answer(10.050, None, 10.001, {"queue": 1.0, "total": 5.0}),  # 50 ms: on time
        1: Answer(10.150, None, 10.001, {"queue": 1.0, "total": 5.0}),  # 150 ms: late
        2: parse_answer(10.010, b'{"error": {"reason": "deadline"}}'),
    }
    row = bench_report.summarise(phase, seconds=1.0, achieved=4.0, deadline_ms=100.0,
                                 capacity=10.0)
    assert (row["on_time"], row["late"], row["unanswered"]) == (1, 1, 1)
    assert row["rejected"] == {"deadline": 1}
    assert row["attainment"] == 0.25
    assert not bench_report.passes(row)


def test_the_raw_receiver_finds_the_correlation_data_among_other_properties() -> None:
    def utf8(b: bytes) -> bytes:
        return len(b).to_bytes(2, "big") + b

    props = (b"\x01\x01" + b"\x02" + (60).to_bytes(4, "big") + b"\x08" + utf8(b"re/ply")
             + b"\x26" + utf8(b"k") + utf8(b"v") + b"\x0b\x81\x01" + b"\x09" + utf8(b"417")
             + b"\x03" + utf8(b"application/json"))
    body = utf8(b"bench/replies/x") + len(props).to_bytes(1, "big") + props + b'{"a": 1}'
    assert publish_correlation(body, 0) == (b"417", b'{"a": 1}')
    with_id = utf8(b"t") + b"\x00\x07" + b"\x00" + b"x"  # QoS 1: a packet id, no properties
    assert publish_correlation(with_id, 0b0010) is None
