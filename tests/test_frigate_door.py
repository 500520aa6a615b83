"""The Frigate door against the real edged process, real models and a client that behaves
as Frigate's zmq plugin does (tests/support/frigate.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.support.broker import Broker
from tests.support.daemon import Edged
from tests.support.frigate import (
    IMAGES,
    SHAPES,
    YOLO,
    ZEROS,
    FrigateClient,
    expected_rows,
    frigate_config,
    start,
    stats,
    status_topic,
)
from tests.support.probe import Probe

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[Edged, str]]:
    workdir = tmp_path_factory.mktemp("frigate")
    probe = Probe(broker.port)
    edged = start(workdir, frigate_config(broker.port, workdir / "frigate.sock"), probe)
    probe.close()
    yield edged, f"ipc://{workdir / 'frigate.sock'}"
    assert edged.stop() == 0, edged.log()


@pytest.fixture
def clients() -> Iterator[list[FrigateClient]]:
    made: list[FrigateClient] = []
    yield made
    for c in made:
        c.close()


def client(made: list[FrigateClient], endpoint: str, model: Path | str, **kw: Any
           ) -> FrigateClient:
    c = FrigateClient(endpoint, model, **kw)
    made.append(c)
    return c


def test_handshake_known_unknown_and_upload_refused(
        served: tuple[Edged, str], clients: list[FrigateClient]) -> None:
    edged, endpoint = served
    known = client(clients, endpoint, "/config/model_cache/" + SHAPES.name)
    assert known.initialize() and known.last_reply == {"model_available": True,
                                                       "model_loaded": True}
    named = client(clients, endpoint, "/config/yolo.tflite", model_type="yologeneric")
    assert named.initialize()
    # An unknown name: not available; the plugin then uploads, which is refused.
    unknown = client(clients, endpoint, "/config/other.tflite", upload_from=SHAPES)
    assert not unknown.initialize()
    assert unknown.last_reply == {"model_saved": False, "model_loaded": False}
    # Without a file to upload the plugin stops after the first answer.
    bare = client(clients, endpoint, "/config/missing.tflite")
    assert not bare.initialize() and bare.last_reply == {"model_available": False,
                                                         "model_loaded": False}
    log = edged.log()
    assert "Frigate asked for a model edged does not serve" in log
    assert "uploads are off" in log and "frigate.uploads.enabled" in log
    assert "shapes_detect_int8.tflite" in log and "yolo.tflite" in log


@pytest.mark.parametrize("model,route,model_type", [
    (SHAPES, "det", "ssd"), ("yolo.tflite", "yolo", "yologeneric")])
def test_the_same_detections_as_through_mqtt(
        served: tuple[Edged, str], clients: list[FrigateClient], probe: Probe,
        model: Path | str, route: str, model_type: str) -> None:
    _, endpoint = served
    frigate = client(clients, endpoint, model, model_type=model_type, timeout_ms=5000)
    assert frigate.initialize()
    probe.subscribe("replies/#")
    found = 0
    for i, image in enumerate(IMAGES[:12]):
        tensor = image.reshape(1, 64, 64, 3)
        probe.publish(f"cams/a/{route}", tensor.tobytes(), response_topic=f"replies/{i}",
                      correlation_data=b"1")
        answer = probe.next(timeout=20, topic=f"replies/{i}").json()
        rows = frigate.detect(tensor)
        want = expected_rows(answer["result"])
        np.testing.assert_allclose(rows, want, atol=1e-6)
        found += int(rows[0, 1] > 0)
    assert frigate.counts.timeouts == 0
    assert found >= 10  # nearly every scene has shapes: the comparison is not of zeros


def test_nchw_and_float_tensors_are_taken(served: tuple[Edged, str],
                                          clients: list[FrigateClient]) -> None:
    _, endpoint = served
    frigate = client(clients, endpoint, SHAPES, timeout_ms=5000)
    assert frigate.initialize()
    tensor = IMAGES[0].reshape(1, 64, 64, 3)
    want = frigate.detect(tensor)
    assert want[0, 1] > 0
    np.testing.assert_allclose(frigate.detect(tensor.transpose(0, 3, 1, 2).copy()), want)
    as_float = (tensor.astype(np.float32) / 255.0)
    np.testing.assert_allclose(frigate.detect(as_float), want, atol=1e-6)


def test_bad_input_gets_zeros_and_the_socket_keeps_working(
        served: tuple[Edged, str], clients: list[FrigateClient], probe: Probe) -> None:
    edged, endpoint = served
    frigate = client(clients, endpoint, SHAPES, timeout_ms=5000)
    assert frigate.initialize()
    tensor = IMAGES[0].reshape(1, 64, 64, 3)
    good = frigate.detect(tensor)
    assert good[0, 1] > 0
    before = stats(probe)["frigate"]["counts"]
    header = {"shape": [1, 64, 64, 3], "dtype": "uint8", "model_type": "ssd"}
    bad = [
        ([b"\xff{not json", tensor.tobytes()], "zeros_bad_header"),
        ([b"[1, 2, 3]", tensor.tobytes()], "zeros_bad_header"),
        ([json.dumps({**header, "dtype": "complex128"}).encode(), tensor.tobytes()],
         "zeros_bad_dtype"),
        ([json.dumps({**header, "shape": [1, 32, 32, 3]}).encode(), tensor[:, :32, :32].tobytes()],
         "zeros_mismatch"),
        ([json.dumps(header).encode(), tensor.tobytes()[:-1]], "zeros_bad_length"),
        ([json.dumps(header).encode(), tensor.tobytes() * 2], "zeros_bad_length"),
        ([json.dumps({**header, "model_type": "rfdetr"}).encode(), tensor.tobytes()],
         "zeros_mismatch"),
        ([json.dumps({**header, "shape": [10 ** 9]}).encode(), b"x"], "zeros_bad_header"),
    ]
    for frames, _ in bad:
        reply = frigate.send_raw(frames)
        assert reply is not None and reply == [ZEROS.tobytes()]
        np.testing.assert_allclose(frigate.detect(tensor), good)  # still serving
    after = stats(probe)["frigate"]["counts"]
    for name in {n for _, n in bad}:
        want = sum(1 for _, n in bad if n == name)
        assert after.get(name, 0) - before.get(name, 0) == want, (name, after)
    assert frigate.counts.timeouts == 0
    assert "do not fit the model" in edged.log()


def test_an_oversized_frame_drops_only_that_connection(
        served: tuple[Edged, str], clients: list[FrigateClient]) -> None:
    _, endpoint = served
    other = client(clients, endpoint, SHAPES, timeout_ms=5000)
    assert other.initialize()
    big = client(clients, endpoint, SHAPES, timeout_ms=1000)
    assert big.initialize()
    tensor = IMAGES[1].reshape(1, 64, 64, 3)
    want = other.detect(tensor)
    reply = big.send_raw([b"{}", bytes(17 * 1024 * 1024)])  # over max_frame_bytes (16 MiB)
    assert reply is None and big.counts.resets == 1  # dropped: it timed out and reset
    assert big.ready  # its new handshake went through
    np.testing.assert_allclose(big.detect(tensor), want)
    np.testing.assert_allclose(other.detect(tensor), want)


def test_uploads_when_enabled_are_checked_served_and_kept_across_restarts(
        tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged],
        clients: list[FrigateClient]) -> None:
    store = tmp_path / "uploads"
    config = frigate_config(broker.port, tmp_path / "f.sock", uploads={
        "enabled": True, "dir": str(store), "max_bytes": 1_000_000, "labelmap": "coco-80"})
    config["device_id"] = "upload-box"  # the module's edged runs beside this one
    edged = start(tmp_path, config, probe)
    daemons.append(edged)
    endpoint = f"ipc://{tmp_path / 'f.sock'}"
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"TFL3" + bytes(2000))
    broken = client(clients, endpoint, junk, upload_from=junk)
    assert not broken.initialize()
    assert broken.last_reply == {"model_saved": False, "model_loaded": False}
    assert not (store / "junk.tflite").exists()
    # Frigate's own copy of a YOLO model, under a name edged does not serve yet.
    mine = tmp_path / "frigate_yolo.tflite"
    mine.write_bytes(YOLO.read_bytes())
    uploader = client(clients, endpoint, mine, upload_from=mine, model_type="yologeneric",
                      timeout_ms=5000)
    assert uploader.initialize(), (uploader.last_reply, edged.log()[-3000:])
    assert uploader.last_reply == {"model_saved": True, "model_loaded": True}
    tensor = IMAGES[0].reshape(1, 64, 64, 3)
    rows = uploader.detect(tensor)
    assert rows[0, 1] > 0 and set(rows[rows[:, 1] > 0, 0]) <= {0.0, 1.0, 2.0}  # coco-80 ids
    assert (store / "frigate_yolo.tflite").read_bytes() == YOLO.read_bytes()
    assert edged.stop() == 0
    again = Edged(tmp_path, config)  # the upload is served from the start now
    daemons.append(again)
    again.start()
    later = client(clients, endpoint, mine, model_type="yologeneric", timeout_ms=5000)
    assert later.initialize()  # the handshake waits in ZeroMQ until edged binds
    assert later.last_reply == {"model_available": True, "model_loaded": True}
    # Handshakes are answered as each model is ready; frames get zeros until edged serves.
    again.wait_online(probe, status_topic(config), timeout=60)
    np.testing.assert_allclose(later.detect(tensor), rows)


def check(tmp_path: Path, config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "edged.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([sys.executable, "-m", "edged", "check", "--no-broker",
                           "--config", str(path)], capture_output=True, text=True,
                          timeout=120, check=False)


def test_check_shows_what_the_door_serves_and_refuses_what_cannot_work(
        tmp_path: Path) -> None:
    config = frigate_config(1883, tmp_path / "f.sock")
    done = check(tmp_path, config)
    assert done.returncode == 0, done.stderr
    assert "frigate  shapes_detect_int8.tflite: shapes (detection, input " in done.stdout
    assert "frigate  yolo.tflite: yolo (yolo, input " in done.stdout
    assert "3 classes with Frigate ids, threshold 0.4, model_type yologeneric" in done.stdout
    config["frigate"]["models"][0]["model_type"] = "yologeneric"
    done = check(tmp_path, config)
    assert done.returncode != 0
    assert ("Frigate model_type yologeneric needs postprocess yolo; the model's postprocess "
            "is detection") in done.stderr
    config["frigate"]["models"][0].update(model_type="rfdetr")
    assert "needs a decoder edged does not have" in check(tmp_path, config).stderr
    config["frigate"]["models"][0].update(model_type=None, labelmap="coco-80")
    done = check(tmp_path, config)
    assert "none of the model's classes (circle, square, triangle) has an id" in done.stderr


def test_a_detector_without_a_handshake_is_placed_by_its_frame_or_made_to_ask(
        served: tuple[Edged, str], clients: list[FrigateClient]) -> None:
    """As after a restart of edged under a running Frigate: its REQ socket reconnects by
    itself and sends frames to an edged that never heard its handshake."""
    _, endpoint = served
    tensor = IMAGES[0].reshape(1, 64, 64, 3)
    reference = client(clients, endpoint, "/config/yolo.tflite", model_type="yologeneric",
                       timeout_ms=5000)
    assert reference.initialize()
    want = reference.detect(tensor)
    typed = client(clients, endpoint, "/config/yolo.tflite", model_type="yologeneric",
                   timeout_ms=5000)
    typed.ready = True  # no handshake: the frame's type names the one model it fits
    np.testing.assert_allclose(typed.detect(tensor), want)
    assert typed.counts.resets == 0
    # Both served models take this frame: no answer, so the detector resets and asks.
    untyped = client(clients, endpoint, SHAPES, timeout_ms=500)
    untyped.ready = True
    header = {"shape": [1, 64, 64, 3], "dtype": "uint8"}
    assert not untyped.detect(tensor, header=header).any()
    assert untyped.counts.resets == 1 and untyped.ready  # its new handshake went through
    assert untyped.detect(tensor)[0, 1] > 0
