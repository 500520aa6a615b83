"""A client that behaves as Frigate's zmq detector plugin does
(frigate/detectors/plugins/zmq_ipc.py): one REQ socket with send and receive timeouts of
request_timeout_ms and linger 0; a handshake (model_request, then model_data when the
model is not available) with a 30 s wait; on a timeout or a socket error it closes the
socket, opens a new one, runs the handshake again and returns zeros for that frame.
Written from the plugin's code, not imported: Frigate is not a test dependency."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from tests.support.daemon import MODELS, Edged
from tests.support.probe import Probe

ZEROS = np.zeros((20, 6), np.float32)
HANDSHAKE_TIMEOUT_MS = 30_000


@dataclass
class Counts:
    timeouts: int = 0
    resets: int = 0
    handshakes: int = 0
    ready_after: list[bool] = field(default_factory=list)


class FrigateClient:
    def __init__(self, endpoint: str, model_path: Path | str, model_type: str = "ssd",
                 timeout_ms: int = 200, upload_from: Path | None = None,
                 handshake_timeout_ms: int = HANDSHAKE_TIMEOUT_MS) -> None:
        self.endpoint = endpoint
        self.model_name = Path(model_path).name
        self.model_type = model_type
        self.timeout_ms = timeout_ms
        self.upload_from = upload_from
        self.handshake_timeout_ms = handshake_timeout_ms
        self.context = zmq.Context()
        self.socket: zmq.Socket[bytes] | None = None
        self.counts = Counts()
        self.ready = False
        self.last_reply: dict[str, Any] | None = None
        self._create_socket()

    def _create_socket(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
        self.socket = self.context.socket(zmq.REQ)
        self.socket.setsockopt(zmq.RCVTIMEO, self.timeout_ms)
        self.socket.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(self.endpoint)

    def initialize(self) -> bool:
        """The plugin's _initialize_model: True when the model is ready."""
        self.counts.handshakes += 1
        try:
            self.ready = self._check_and_transfer()
        except Exception:  # the plugin logs and carries on with a detector that is not ready
            self.ready = False
        self.counts.ready_after.append(self.ready)
        return self.ready

    def _recv_long(self) -> list[bytes]:
        assert self.socket is not None
        self.socket.setsockopt(zmq.RCVTIMEO, self.handshake_timeout_ms)
        try:
            return self.socket.recv_multipart()
        finally:
            self.socket.setsockopt(zmq.RCVTIMEO, self.timeout_ms)

    def _check_and_transfer(self) -> bool:
        assert self.socket is not None
        header = {"model_request": True, "model_name": self.model_name}
        self.socket.send_multipart([json.dumps(header).encode()])
        frames = self._recv_long()
        if len(frames) != 1:
            return False
        reply = json.loads(frames[0])
        self.last_reply = reply
        if reply.get("model_available") and reply.get("model_loaded"):
            return True
        if reply.get("model_available"):
            return False  # "exists but failed to load"
        return self._send_model_data()

    def _send_model_data(self) -> bool:
        assert self.socket is not None
        if self.upload_from is None or not self.upload_from.exists():
            return False
        header = {"model_data": True, "model_name": self.model_name}
        self.socket.send_multipart([json.dumps(header).encode(), self.upload_from.read_bytes()])
        frames = self._recv_long()
        if len(frames) != 1:
            return False
        reply = json.loads(frames[0])
        self.last_reply = reply
        return bool(reply.get("model_saved") and reply.get("model_loaded"))

    def detect(self, tensor: np.ndarray, header: dict[str, Any] | None = None,
               payload: bytes | None = None) -> np.ndarray:
        """The plugin's detect_raw (``header``/``payload`` override what it would send,
        for the bad-input tests)."""
        if not self.ready:
            return ZEROS
        assert self.socket is not None
        try:
            head = header if header is not None else {
                "shape": list(tensor.shape), "dtype": str(tensor.dtype.name),
                "model_type": self.model_type}
            body = payload if payload is not None else tensor.tobytes(order="C")
            self.socket.send_multipart([json.dumps(head).encode(), body])
            return self._decode(self.socket.recv_multipart())
        except zmq.Again:
            self.counts.timeouts += 1
            self._reset()
            return ZEROS
        except zmq.ZMQError:
            self._reset()
            return ZEROS

    def send_raw(self, frames: list[bytes]) -> list[bytes] | None:
        """Any frames; the reply's frames, or None after a timeout (then reset)."""
        assert self.socket is not None
        try:
            self.socket.send_multipart(frames)
            return list(self.socket.recv_multipart())
        except zmq.ZMQError:
            self.counts.timeouts += 1
            self._reset()
            return None

    def _reset(self) -> None:
        self.counts.resets += 1
        self._create_socket()
        self.initialize()

    @staticmethod
    def _decode(frames: list[bytes]) -> np.ndarray:
        if len(frames) == 1:
            if len(frames[0]) != 480:
                return ZEROS
            return np.frombuffer(frames[0], dtype=np.float32).reshape(20, 6)
        header = json.loads(frames[0])
        return np.frombuffer(frames[1], dtype=np.dtype(header.get("dtype", "float32"))
                             ).reshape(tuple(header.get("shape", [])))

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
        self.context.term()


# --- edged with a Frigate door, as the tests run it -----------------------------------

SHAPES = MODELS / "shapes_detect_int8.tflite"
YOLO = MODELS / "shapes_yolov8_int8.tflite"
IDS = {"circle": 0, "square": 2, "triangle": 16}  # person, car, dog in Frigate's labelmap
IMAGES = np.load(MODELS / "shapes_holdout.npz")["images"]


def frigate_config(port: int, sock: Path, **frigate: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "endpoints": [f"ipc://{sock}"],
        "models": [
            {"model": "shapes", "labelmap": IDS},
            {"model": "yolo", "name": "yolo.tflite", "model_type": "yologeneric",
             "labelmap": IDS},
        ],
        "request_timeout_ms": 2000,
    }
    section.update(frigate)
    labels = str(MODELS / "shapes.labels")
    return {
        "device_id": "test-box",
        "mqtt": {"host": "127.0.0.1", "port": port, "protocol": "5", "topic_prefix": "edged",
                 "reconnect_min_s": 0.2, "reconnect_max_s": 1.0, "session_expiry_s": 0},
        "models": {
            "shapes": {"path": str(SHAPES), "labels": labels, "postprocess": "detection",
                       "score_threshold": 0.4},
            "yolo": {"path": str(YOLO), "labels": labels, "postprocess": "yolo",
                     "score_threshold": 0.4},
        },
        "routes": [
            {"name": "det", "subscribe": "cams/+/det", "model": "shapes",
             "input": {"format": "raw"}, "deadline_ms": 5000},
            {"name": "yolo", "subscribe": "cams/+/yolo", "model": "yolo",
             "input": {"format": "raw"}, "deadline_ms": 5000},
        ],
        "frigate": section,
        "logging": {"format": "json", "level": "info"},
        "shutdown_timeout_s": 5,
        "stats_interval_s": 0,
    }


def status_topic(config: dict[str, Any]) -> str:
    return f"edged/{config['device_id']}/status"


def start(workdir: Path, config: dict[str, Any], probe: Probe) -> Edged:
    """edged, once online. Tests that run edged beside another (a module's) give it a
    device_id of its own: the same one would share its status topic and client id."""
    probe.subscribe(status_topic(config))
    edged = Edged(workdir, config)
    edged.start()
    edged.wait_online(probe, status_topic(config), timeout=60)
    return edged


def stats(probe: Probe) -> dict[str, Any]:
    """A stats snapshot now (edged answers a request at most every 0.5 s: ask again)."""
    probe.subscribe("edged/test-box/stats")
    for _ in range(20):
        probe.publish("edged/test-box/stats/request", b"")
        try:
            body: dict[str, Any] = probe.next(timeout=1.0, topic="edged/test-box/stats").json()
            return body
        except TimeoutError:
            continue
    raise AssertionError("no stats snapshot")


def expected_rows(result: dict[str, Any], threshold: float = 0.4) -> np.ndarray:
    """What Frigate should get for an MQTT result: its detections as rows, best first."""
    out = np.zeros((20, 6), np.float32)
    found = sorted(result["detections"], key=lambda d: -d["score"])
    for i, d in enumerate(d for d in found if d["score"] >= threshold):
        b = d["box"]
        out[i] = (IDS[d["label"]], d["score"], b["ymin"], b["xmin"], b["ymax"], b["xmax"])
    return out
