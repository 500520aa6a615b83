"""What real publishers send, end to end: JPEG and PNG frames, sensor readings one at a time,
detection boxes, anomaly events, and one stream shared by two edged processes.

Every test runs the real daemon against a real mosquitto and the bundled ``.tflite`` models
and asserts on what comes out of the broker. Figures that matter (accuracy, F1, the load
split) are printed, so ``pytest -s`` shows them.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from edged.runtime import select_backend
from tests.support.broker import Broker
from tests.support.daemon import MODELS, REPO, Edged
from tests.support.images import jpeg_bomb, png_bomb
from tests.support.probe import Probe, Received

pytestmark = pytest.mark.integration

Array = np.ndarray[Any, Any]
MANIFEST = json.loads((MODELS / "manifest.json").read_text())["models"]
VIBRATION_LABELS = (MODELS / "vibration.labels").read_text().split()
SHAPE_LABELS = (MODELS / "shapes.labels").read_text().split()


# --------------------------------------------------------------------------- helpers


def model(name: str, file: str, labels: str, **settings: Any) -> dict[str, Any]:
    return {name: {"path": str(MODELS / file), "labels": str(MODELS / labels), **settings}}


def edged_config(port: int, models: dict[str, Any], routes: list[dict[str, Any]],
                 device_id: str = "stream-box") -> dict[str, Any]:
    return {
        "device_id": device_id,
        "mqtt": {"host": "127.0.0.1", "port": port, "protocol": "5", "topic_prefix": "edged",
                 "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
        "models": models,
        "routes": routes,
        "logging": {"format": "json", "level": "info"},
        "shutdown_timeout_s": 5,
        "stats_interval_s": 0,
    }


def start(workdir: Path, config: dict[str, Any], probe: Probe, daemons: list[Edged]) -> Edged:
    """Start edged and return once it has said online (and so has subscribed)."""
    workdir.mkdir(parents=True, exist_ok=True)
    status = f"edged/{config['device_id']}/status"
    probe.subscribe(status)
    edged = Edged(workdir, config)
    daemons.append(edged)
    edged.start()
    edged.wait_online(probe, status)
    return edged


def interpreter(file: str) -> Any:
    interp = select_backend().interpreter_class(model_path=str(MODELS / file))
    interp.allocate_tensors()
    return interp


def run_model(interp: Any, tensor: Array) -> list[Array]:
    interp.set_tensor(interp.get_input_details()[0]["index"], tensor)
    interp.invoke()
    return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]


def vibration_probabilities(windows: Array) -> Array:
    """The vibration model's dequantized softmax for each float window, run here with no
    MQTT in between: the reference the streamed results must reproduce."""
    spec = MANIFEST["vibration"]
    interp = interpreter("vibration_int8.tflite")
    out = interp.get_output_details()[0]
    o_scale, o_zero = out["quantization"]
    probs = []
    for w in windows:
        # The model's own quantization: q = clip(round(x / scale) + zero_point), in float32
        # as edged does it.
        q = np.rint(w.astype(np.float32) / np.float32(spec["input"]["scale"]))
        q = np.clip(q + spec["input"]["zero_point"], -128, 127).astype(np.int8)
        raw = run_model(interp, q.reshape(1, 128, 3))[0].reshape(-1)
        probs.append((raw.astype(np.float64) - o_zero) * o_scale)
    return np.array(probs)


def encode(pixels: Array, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **params)
    return out.getvalue()


# --------------------------------------------------------------------------- images


def digit_jpeg(image: Array) -> bytes:
    """A hold-out digit (8x8, ink in [0, 1]) as a camera would send it: an RGB JPEG of 40x32
    pixels (5x wide, 4x high: stretch has to undo two different factors)."""
    grey = np.clip(np.rint(image[..., 0] * 255.0), 0, 255).astype(np.uint8)
    big = np.repeat(np.repeat(grey, 4, axis=0), 5, axis=1)
    return encode(np.stack([big] * 3, axis=-1), "JPEG", quality=75)


def test_jpeg_frames_of_the_digits_holdout_keep_the_models_accuracy(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    data = np.load(MODELS / "digits_holdout.npz")
    images, labels = data["images"], data["labels"]
    route = {"name": "cam", "subscribe": "cams/+/jpeg", "model": "digits",
             "input": {"format": "jpeg", "resize": "stretch"}, "queue_size": 512,
             "deadline_ms": 5000}
    config = edged_config(broker.port, model("digits", "digits_int8.tflite", "digits.labels",
                                             workers=2), [route])
    start(tmp_path, config, probe, daemons)
    probe.subscribe("edged/stream-box/predictions/cam", "edged/stream-box/errors")
    for i, image in enumerate(images):
        probe.publish(f"cams/img{i}/jpeg", digit_jpeg(image))
        if i % 50 == 49:
            time.sleep(0.05)  # a camera's pace, not a burst: this test is about accuracy
    answers = probe.collect(len(images), 30, topic="edged/stream-box/predictions/cam")
    errors = probe.collect(1, 0.3, topic="edged/stream-box/errors")
    assert [e.json()["error"] for e in errors] == []
    predicted = {int(a.json()["topic"].split("/")[1].removeprefix("img")):
                 int(a.json()["result"]["label"]) for a in answers}
    assert len(answers) == len(images) and sorted(predicted) == list(range(len(images)))
    accuracy = sum(predicted[i] == int(t) for i, t in enumerate(labels)) / len(images)
    print(f"\ndigits as 40x32 RGB JPEG (q75), stretch: accuracy {accuracy:.4f} on "
          f"{len(images)} frames; manifest int8 {MANIFEST['digits']['int8_accuracy']:.4f}")
    # JPEG is lossy: a few points of the model's accuracy may go, no more.
    assert accuracy >= MANIFEST["digits"]["int8_accuracy"] - 0.03


def letterboxed_frame(image: Array, boxes: Array) -> tuple[Array, Array] | None:
    """A landscape frame made from a 64x64 scene: 48 of its rows holding every shape,
    upscaled 2x to 128x96, and its boxes as fractions of that frame. Letterboxed into the
    64x64 input it comes back at the scene's own scale with 8-pixel bars above and below,
    so the detector sees shapes of the size it was trained on. None if no 48-row band
    holds every shape."""
    top_px = 0 if len(boxes) == 0 else int(np.floor(boxes[:, 0].min() * 64))
    bottom_px = 0 if len(boxes) == 0 else int(np.ceil(boxes[:, 2].max() * 64))
    if bottom_px - top_px > 48:
        return None
    top = min(max(0, top_px - (48 - (bottom_px - top_px)) // 2), 16)
    band = image[top : top + 48]
    frame = np.repeat(np.repeat(band, 2, axis=0), 2, axis=1)
    framed = boxes.astype(np.float64).copy()
    framed[:, 0::2] = (framed[:, 0::2] * 64 - top) / 48
    return frame, framed


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = h * w
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(found: list[dict[str, Any]], truth: Array, classes: Array) -> int:
    """True positives: found boxes of the right class at IoU >= 0.5, each truth used once."""
    used: set[int] = set()
    hits = 0
    for det in found:
        box = [det["box"][k] for k in ("ymin", "xmin", "ymax", "xmax")]
        for j, (t, c) in enumerate(zip(truth, classes, strict=True)):
            if j not in used and det["index"] == int(c) and iou(box, list(t)) >= 0.5:
                used.add(j)
                hits += 1
                break
    return hits


def test_detection_on_png_frames_gives_boxes_normalised_to_the_frame(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    data = np.load(MODELS / "shapes_holdout.npz")
    scenes = []
    for image, boxes, classes, count in zip(data["images"], data["boxes"], data["classes"],
                                            data["counts"], strict=True):
        made = letterboxed_frame(image, boxes[:count])
        if made is not None:
            scenes.append((encode(made[0], "PNG"), made[1], classes[:count]))
    assert len(scenes) >= 100  # most of the 200 scenes fit a 48-row band
    route = {"name": "shapes", "subscribe": "cams/+/png", "model": "shapes",
             "input": {"format": "png", "resize": "letterbox", "pad_value": 128},
             "queue_size": 512, "deadline_ms": 5000}
    config = edged_config(broker.port, model("shapes", "shapes_detect_int8.tflite",
                                             "shapes.labels", postprocess="detection",
                                             score_threshold=0.5, workers=2), [route])
    start(tmp_path, config, probe, daemons)
    probe.subscribe("replies/shapes")
    for i, (png, _, _) in enumerate(scenes):
        probe.publish("cams/yard/png", png, response_topic="replies/shapes",
                      correlation_data=str(i).encode())
        if i % 50 == 49:
            time.sleep(0.05)
    replies = probe.collect(len(scenes), 30, topic="replies/shapes")
    assert len(replies) == len(scenes)
    tp = fp = fn = 0
    for reply in replies:
        body = reply.json()
        assert "error" not in body, body["error"]
        result = body["result"]
        _, truth, classes = scenes[int(reply.correlation_data or b"-1")]
        assert result["count"] == len(result["detections"])
        for det in result["detections"]:
            assert det["label"] == SHAPE_LABELS[det["index"]] and det["score"] >= 0.5
            b = det["box"]
            assert 0 <= b["ymin"] < b["ymax"] <= 1 and 0 <= b["xmin"] < b["xmax"] <= 1
        hits = match(result["detections"], truth, classes)
        tp, fp, fn = tp + hits, fp + result["count"] - hits, fn + len(truth) - hits
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall)
    print(f"\nshapes as letterboxed 128x96 PNG: F1 {f1:.4f} (precision {precision:.4f}, "
          f"recall {recall:.4f}) on {len(scenes)} frames, {tp + fn} shapes; manifest F1 "
          f"{MANIFEST['detection']['int8_accuracy']:.4f}")
    # Boxes are compared in the frame's own fractions: had edged not undone the letterbox
    # bars, every y would be off by up to a sixth of the frame and few IoUs would reach 0.5.
    # The bars themselves cost the model about two points (run locally on these scenes:
    # F1 0.985 as they are, 0.966 letterboxed with grey bars), hence the margin.
    assert f1 >= MANIFEST["detection"]["int8_accuracy"] - 0.05


def test_bad_jpeg_and_png_bomb_get_bad_input_and_the_next_frame_is_answered(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    route = {"name": "cam", "subscribe": "cams/+/frame", "model": "digits",
             "input": {"format": "image", "max_pixels": 1_000_000}, "deadline_ms": 5000}
    config = edged_config(broker.port, model("digits", "digits_int8.tflite", "digits.labels"),
                          [route])
    start(tmp_path, config, probe, daemons)
    probe.subscribe("replies/cam")
    data = np.load(MODELS / "digits_holdout.npz")
    good = digit_jpeg(data["images"][5])
    frames = {
        b"garbage": b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4,  # a JPEG in name only
        b"truncated": good[: len(good) // 3],
        b"png-bomb": png_bomb(),  # 50 Mpx declared in a few hundred bytes
        b"jpeg-bomb": jpeg_bomb(),
        b"good": good,
    }
    for name, payload in frames.items():
        probe.publish("cams/door/frame", payload, response_topic="replies/cam",
                      correlation_data=name)
    replies = {r.correlation_data: r.json() for r in probe.collect(len(frames), 15,
                                                                   topic="replies/cam")}
    assert set(replies) == set(frames)
    assert replies[b"good"]["result"]["label"] == str(data["labels"][5])
    for name in (b"garbage", b"truncated", b"png-bomb", b"jpeg-bomb"):
        assert replies[name]["error"]["reason"] == "bad_input", replies[name]
        assert "result" not in replies[name]
    assert "cannot be decoded" in replies[b"truncated"]["error"]["message"]
    for name in (b"png-bomb", b"jpeg-bomb"):  # refused on the header, before decoding
        assert "the limit is 1000000" in replies[name]["error"]["message"]
    assert daemons[0].proc is not None and daemons[0].proc.poll() is None


# --------------------------------------------------------------------------- sensor windows


def stream_readings(probe: Probe, per_topic: dict[str, Array], hop: int,
                    expect: int) -> list[Received]:
    """Publish every topic's readings one JSON object per message, interleaved across topics
    as independent sensors would, one hop at a time; after each hop wait for the windows it
    completed, so the broker never has to queue more than a hop per sensor (mosquitto drops
    beyond max_queued_messages). Returns every message the probe got meanwhile."""
    got: list[Received] = []
    length = len(next(iter(per_topic.values())))
    done = 0
    for start_at in range(0, length, hop):
        for i in range(start_at, start_at + hop):
            for topic, rows in per_topic.items():
                ax, ay, az = (float(v) for v in rows[i])
                probe.publish(topic, json.dumps({"ax": ax, "ay": ay, "az": az}).encode(),
                              qos=0)
        done += hop
        due = len(per_topic) * (0 if done < 128 else 1 + (done - 128) // hop) - len(got)
        got += probe.collect(due, 10)
    got += probe.collect(max(1, expect - len(got)), 0.5)  # nothing more may come
    return got


def test_vibration_readings_one_by_one_give_a_window_classification_per_hop(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    data = np.load(MODELS / "vibration_holdout.npz")
    windows, labels = data["windows"], data["labels"]
    sensors, per_sensor = 8, len(windows) // 8  # 25 hold-out windows after each other
    route = {"name": "vib", "subscribe": "plant/+/accel", "model": "vibration",
             "input": {"format": "json"}, "publish": "edged/{device_id}/vibration/{topic[1]}",
             "window": {"size": 128, "hop": 64, "fields": ["ax", "ay", "az"]},
             "queue_size": 64, "deadline_ms": 5000}
    # One worker: each sensor's windows are answered in the order they completed.
    config = edged_config(broker.port, model("vibration", "vibration_int8.tflite",
                                             "vibration.labels", workers=1, top_k=4), [route])
    start(tmp_path, config, probe, daemons)
    probe.subscribe("edged/stream-box/vibration/+", "edged/stream-box/errors")
    streams = {f"plant/pump{s}/accel":
               windows[s * per_sensor:(s + 1) * per_sensor].reshape(-1, 3)
               for s in range(sensors)}
    readings = per_sensor * 128
    per_topic = 1 + (readings - 128) // 64  # a window per hop after the first full one
    began = time.monotonic()
    results = stream_readings(probe, streams, 64, sensors * per_topic)
    took = time.monotonic() - began
    assert [r.json()["error"] for r in results if "error" in r.json()] == []
    assert len(results) == sensors * per_topic
    by_sensor: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        body = r.json()
        assert r.topic == f"edged/stream-box/vibration/{body['topic'].split('/')[1]}"
        by_sensor.setdefault(body["topic"], []).append(body["result"])
    assert {t: len(v) for t, v in by_sensor.items()} == dict.fromkeys(streams, per_topic)
    # Windows 0, 2, 4, ... of each sensor are exactly its hold-out windows; the ones
    # between straddle two of them (half of one, half of the next).
    reference = vibration_probabilities(windows)
    correct = agree = 0
    for s, topic in enumerate(streams):
        for j, result in enumerate(by_sensor[topic][::2]):
            index = s * per_sensor + j
            scores = {t["label"]: t["score"] for t in result["top_k"]}
            expected = {VIBRATION_LABELS[k]: round(float(p), 6)
                        for k, p in enumerate(reference[index])}
            agree += scores == expected
            correct += result["label"] == VIBRATION_LABELS[labels[index]]
    accuracy = correct / len(windows)
    print(f"\nvibration streamed one reading per message ({sensors * readings} messages, "
          f"{sensors} sensors, {took:.1f} s): {len(results)} windows, accuracy of the "
          f"hold-out windows {accuracy:.4f}; manifest int8 "
          f"{MANIFEST['vibration']['int8_accuracy']:.4f}")
    # The readings went through JSON and a ring buffer and came out as the same tensor: the
    # scores equal a local run of the model on the hold-out windows, not just the labels.
    assert agree == len(windows)
    assert accuracy == pytest.approx(MANIFEST["vibration"]["int8_accuracy"], abs=0.005)


def test_anomaly_events_are_a_streams_first_state_and_then_its_changes(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    data = np.load(MODELS / "vibration_holdout.npz")
    windows, labels = data["windows"], data["labels"]
    normal = [i for i, label in enumerate(labels) if label == 0]
    faulty = [i for i, label in enumerate(labels) if label != 0]
    # normal x3, fault x3, normal x2, fault x1, normal x2: four changes in eleven windows.
    order = normal[:3] + faulty[:3] + normal[3:5] + faulty[3:4] + normal[5:7]
    anomaly = {"source": "class", "label": "normal", "threshold": 0.5, "direction": "below"}
    route = {"name": "pump", "subscribe": "plant/+/window", "model": "vibration",
             "input": {"format": "json"}, "publish": "edged/{device_id}/alarms/{topic[1]}",
             "deadline_ms": 5000}
    config = edged_config(broker.port, model("vibration", "vibration_int8.tflite",
                                             "vibration.labels", workers=1,
                                             postprocess="anomaly", anomaly=anomaly), [route])
    start(tmp_path, config, probe, daemons)
    probe.subscribe("edged/stream-box/alarms/+", "replies/pump")
    for n, i in enumerate(order):
        probe.publish("plant/pump7/window", json.dumps(windows[i].tolist()).encode(),
                      response_topic="replies/pump", correlation_data=str(n).encode())
        # One at a time: the state moves in the order the windows were taken.
        probe.next(timeout=10, topic="replies/pump")
    published = [m.json()["result"] for m in probe.collect(len(order), 1.0,
                                                           topic="edged/stream-box/alarms/pump7")]
    # The stream's first result goes out whatever it says; then only the changes.
    first, *events = published
    assert first["first"] is True and first["changed"] is False
    p_normal = vibration_probabilities(windows[order])[:, 0]
    states = ["anomalous" if p < 0.5 else "normal" for p in p_normal]
    expected = [(before, now) for before, now in zip(["normal", *states], states, strict=False)
                if before != now]
    print(f"\nanomaly: {len(order)} windows, states {states}, events "
          f"{[(e['previous'], e['state']) for e in events]}")
    assert first["state"] == states[0]
    assert [(e["previous"], e["state"]) for e in events] == expected
    assert len(expected) == 4  # the model agrees with the labels on these windows
    assert all(e["changed"] is True and e["threshold"] == 0.5 for e in events)
    assert [e["state"] == "anomalous" for e in events] == [e["score"] < 0.5 for e in events]


# --------------------------------------------------------------------------- scale-out


def test_two_boxes_on_one_shared_subscription_answer_each_message_once_and_share_the_load(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    route = {"name": "cam", "subscribe": "$share/fleet/cams/+/raw", "model": "digits",
             "input": {"format": "raw"}, "queue_size": 256, "deadline_ms": 5000}
    digits = model("digits", "digits_int8.tflite", "digits.labels")
    for box in ("box-a", "box-b"):
        config = edged_config(broker.port, digits, [route], device_id=box)
        # No session kept for a box that is gone: otherwise the broker goes on queueing its
        # share for it until the session expires (what the README tells fleets to set).
        config["mqtt"]["session_expiry_s"] = 0
        start(tmp_path / box, config, probe, daemons)
    probe.subscribe("replies/fleet")
    data = np.load(MODELS / "digits_holdout.npz")
    images, labels = data["images"][:200], data["labels"][:200]
    for i, image in enumerate(images):
        raw = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8).tobytes()
        probe.publish(f"cams/c{i % 4}/raw", raw, response_topic="replies/fleet",
                      correlation_data=f"req-{i}".encode())
    replies = probe.collect(len(images), 20, topic="replies/fleet")
    replies += probe.collect(1, 1.0, topic="replies/fleet")  # a duplicate would land now
    ids = Counter(r.correlation_data or b"" for r in replies)
    assert sorted(ids) == sorted(f"req-{i}".encode() for i in range(len(images)))
    assert set(ids.values()) == {1}  # each message answered exactly once
    share = Counter(r.json()["device_id"] for r in replies)
    correct = sum(r.json()["result"]["label"] == str(labels[int(
        (r.correlation_data or b"").decode().removeprefix("req-"))]) for r in replies)
    print(f"\nshared subscription: {len(images)} messages, split {dict(share)}, "
          f"accuracy {correct / len(images):.3f}")
    assert correct >= 0.98 * len(images)  # real answers from both boxes, not just replies
    assert set(share) == {"box-a", "box-b"}
    assert min(share.values()) > 0.2 * len(images)

    # One box stops: the other answers everything from then on.
    assert daemons[1].stop() == 0
    time.sleep(0.2)  # the broker drops box-b's session on its DISCONNECT; let that land
    for i in range(40):
        probe.publish("cams/c0/raw", bytes(64), response_topic="replies/fleet",
                      correlation_data=f"after-{i}".encode())
    after = probe.collect(40, 10, topic="replies/fleet")
    assert sorted(r.correlation_data or b"" for r in after) == sorted(
        f"after-{i}".encode() for i in range(40))
    assert {r.json()["device_id"] for r in after} == {"box-a"}


def test_check_refuses_a_window_on_a_shared_subscription(tmp_path: Path) -> None:
    route = {"name": "vib", "subscribe": "$share/fleet/plant/+/accel", "model": "vibration",
             "input": {"format": "json"}, "window": {"size": 128, "hop": 64,
                                                    "fields": ["ax", "ay", "az"]}}
    config = edged_config(1883, model("vibration", "vibration_int8.tflite", "vibration.labels"),
                          [route])
    path = tmp_path / "edged.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = subprocess.run([sys.executable, "-m", "edged", "check", "--config", str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 78, done.stderr
    assert "route 'vib'" in done.stderr
    assert "shared subscription" in done.stderr and "subscribe without $share" in done.stderr
