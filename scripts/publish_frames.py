#!/usr/bin/env python3
"""Publish frames or sensor windows to an MQTT topic at a given rate, and (with MQTT 5
request/response) collect edged's answers: predictions, accuracy and round-trip latency.

Examples:
  # the digits hold-out images as raw uint8 tensors, 50 a second, answers collected
  python scripts/publish_frames.py --broker 127.0.0.1:1883 --topic sensors/cam1/frame \\
      --source digits --format raw --rate 50 --wait-replies
  # the vibration hold-out windows as .npy float arrays
  python scripts/publish_frames.py --topic sensors/pump1/vibration --source vibration --format npy
  # any files as they are (e.g. .npy arrays you saved)
  python scripts/publish_frames.py --topic sensors/cam1/frame --files a.npy b.npy

Needs only numpy and paho-mqtt; the hold-out sets come from models/.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

MODELS = Path(__file__).resolve().parents[1] / "models"
SOURCES = {"digits": ("digits", "images"), "vibration": ("vibration", "windows")}


@dataclass
class Sample:
    payload: bytes
    label: str | None = None


@dataclass
class Tally:
    """Answers collected by correlation id."""

    sent_at: dict[int, float] = field(default_factory=dict)
    answers: dict[int, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)


def encode(array: np.ndarray, fmt: str, quant: dict[str, Any]) -> bytes:
    """One sample in the route's input format; raw is quantized as the model's input is."""
    if fmt == "raw":
        info = np.iinfo(np.dtype(quant["dtype"]))
        q = np.rint(array / quant["scale"]) + quant["zero_point"]
        return bytes(np.clip(q, info.min, info.max).astype(quant["dtype"]).tobytes())
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, array.astype(np.float32))
        return buffer.getvalue()
    return json.dumps({"data": np.round(array, 5).tolist()}).encode()


def load_samples(args: argparse.Namespace) -> list[Sample]:
    if args.files:
        return [Sample(Path(f).read_bytes()) for f in args.files]
    model, key = SOURCES[args.source]
    manifest = json.loads((MODELS / "manifest.json").read_text())["models"][model]
    data = np.load(MODELS / manifest["holdout"])
    labels = (MODELS / manifest["labels"]).read_text().split()
    arrays, truth = data[key], data["labels"]
    if args.count:
        arrays, truth = arrays[: args.count], truth[: args.count]
    return [Sample(encode(a, args.format, manifest["input"]), labels[int(t)])
            for a, t in zip(arrays, truth, strict=False)]


def connect(broker: str, protocol: str) -> mqtt.Client:
    host, _, port = broker.rpartition(":")
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"publish-frames-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5 if protocol == "5" else MQTTProtocolVersion.MQTTv311,
    )
    client.connect(host or "127.0.0.1", int(port))
    # Small request/response messages must not wait for Nagle's algorithm.
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.loop_start()
    return client


def on_reply(tally: Tally, expected: int) -> Any:
    def handle(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        corr = getattr(msg.properties, "CorrelationData", None) if msg.properties else None
        if corr is None:
            return
        with tally.lock:
            tally.answers[int(corr)] = (now, json.loads(msg.payload))
            if len(tally.answers) >= expected:
                tally.done.set()
    return handle


def publish_all(client: mqtt.Client, args: argparse.Namespace, samples: list[Sample],
                tally: Tally, reply_topic: str | None) -> None:
    rng = np.random.default_rng(0)
    start = time.monotonic()
    due = start
    for i, sample in enumerate(samples):
        props = None
        if reply_topic is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = reply_topic
            props.CorrelationData = str(i).encode()
            if args.deadline_ms:
                props.UserProperty = [("deadline_ms", str(args.deadline_ms))]
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with tally.lock:
            tally.sent_at[i] = time.monotonic()
        client.publish(args.topic, sample.payload, qos=args.qos, properties=props)
        gap = 1.0 / args.rate if args.rate > 0 else 0.0
        due += rng.exponential(gap) if args.poisson else gap
        if not args.quiet and (i + 1) % max(1, len(samples) // 10) == 0:
            print(f"  sent {i + 1}/{len(samples)}", file=sys.stderr)


def report(samples: list[Sample], tally: Tally, show: int) -> dict[str, Any]:
    latencies: list[float] = []
    correct = 0
    errors: dict[str, int] = {}
    for i, (arrived, body) in sorted(tally.answers.items()):
        if "error" in body:
            reason = body["error"]["reason"]
            errors[reason] = errors.get(reason, 0) + 1
            continue
        latencies.append((arrived - tally.sent_at[i]) * 1000)
        label = body["result"].get("label")
        correct += label == samples[i].label
        if i < show:
            print(f"  #{i:4d} predicted {label!s:>14} ({body['result'].get('score', 0):.2f})"
                  f"  truth {samples[i].label!s:>14}  round trip {latencies[-1]:.2f} ms")
    lat = np.array(latencies) if latencies else np.array([np.nan])
    summary = {
        "sent": len(samples), "answered": len(tally.answers), "predictions": len(latencies),
        "errors": errors,
        "accuracy": round(correct / len(latencies), 4) if latencies else None,
        "latency_ms": {p: round(float(np.percentile(lat, q)), 3)
                       for p, q in (("p50", 50), ("p90", 90), ("p99", 99))},
    }
    print(json.dumps(summary, indent=2))
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", default="127.0.0.1:1883", help="HOST:PORT")
    parser.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--source", choices=sorted(SOURCES), default="digits")
    parser.add_argument("--files", nargs="*", help="publish these files' bytes as they are")
    parser.add_argument("--format", choices=["raw", "npy", "json"], default="raw")
    parser.add_argument("--count", type=int, default=0, help="at most this many (0: all)")
    parser.add_argument("--rate", type=float, default=20.0, help="messages a second (0: flat out)")
    parser.add_argument("--poisson", action="store_true", help="Poisson arrivals at --rate")
    parser.add_argument("--qos", type=int, choices=[0, 1, 2], default=1)
    parser.add_argument("--deadline-ms", type=int, default=0, help="user property deadline_ms")
    parser.add_argument("--wait-replies", action="store_true",
                        help="MQTT 5: ask for replies and report predictions and latency")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for replies")
    parser.add_argument("--show", type=int, default=10, help="print this many predictions")
    parser.add_argument("--json-out", type=Path, help="write the summary here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.wait_replies and args.protocol != "5":
        parser.error("--wait-replies needs MQTT 5 (Response Topic and Correlation Data)")

    samples = load_samples(args)
    client = connect(args.broker, args.protocol)
    tally = Tally()
    reply_topic = None
    if args.wait_replies:
        reply_topic = f"replies/publish-frames/{uuid.uuid4().hex[:12]}"
        client.on_message = on_reply(tally, len(samples))
        client.subscribe(reply_topic, qos=1)
        time.sleep(0.3)
    print(f"publishing {len(samples)} messages to {args.topic} at "
          f"{args.rate or 'max'} msg/s", file=sys.stderr)
    publish_all(client, args, samples, tally, reply_topic)
    status = 0
    if args.wait_replies:
        tally.done.wait(args.timeout)
        summary = report(samples, tally, args.show)
        if args.json_out:
            args.json_out.write_text(json.dumps(summary, indent=2))
        status = 0 if summary["answered"] == summary["sent"] else 1
    client.disconnect()
    client.loop_stop()
    return status


if __name__ == "__main__":
    raise SystemExit(main())
