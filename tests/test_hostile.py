"""A mixed stream of good and hostile messages through the real daemon: every good one is
answered, every bad one gets a bad_input error, and nothing stalls or crashes."""

from __future__ import annotations

import io
import json
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.broker import Broker
from tests.support.daemon import MODELS, Edged, digits_config
from tests.support.probe import Probe

pytestmark = pytest.mark.integration
REPLIES = "replies/hostile"


def image() -> np.ndarray:
    images = np.asarray(np.load(MODELS / "digits_holdout.npz")["images"], dtype=np.float32)
    first: np.ndarray = images[0]
    return first


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def stream() -> list[tuple[str, bytes, bool, list[tuple[str, str]] | None]]:
    """(topic, payload, good?, user properties) in the order they are sent."""
    raw = np.clip(np.rint(image() * 255), 0, 255).astype(np.uint8).tobytes()
    good_json = json.dumps(image().reshape(-1).tolist()).encode()
    flat = ",".join(["0.5"] * 63)
    return [
        ("raw/a/frame", raw, True, None),
        ("raw/a/frame", raw[:63], False, None),                      # one byte short
        ("raw/a/frame", raw * 2, False, None),                       # twice the size
        ("raw/a/frame", b"\x00" * 5000, False, None),                # over max_payload_bytes
        ("raw/ünï cødé €/frame", raw, True, None),                    # unusual but legal topic
        ("raw/a b%20'\"<>/frame", raw, True, None),                 # spaces, quotes
        ("raw/a/frame", raw, False, [("deadline_ms", "soon")]),       # a deadline not a number
        ("npy/x", npy(image()), True, None),
        ("npy/x", npy(image())[:-10], False, None),                  # truncated
        ("npy/x", npy(np.array([{"a": 1}] * 64, dtype=object), allow_pickle=True),
         False, None),                                               # pickled objects
        ("npy/x", npy(np.zeros((3, 3), np.float32)), False, None),   # wrong shape
        ("npy/x", b"\x93NUMPY garbage", False, None),
        ("npy/x", pickle.dumps(list(range(64))), False, None),       # a bare pickle
        ("json/x", good_json, True, None),
        ("json/x", f"[NaN,{flat}]".encode(), False, None),
        ("json/x", f"[Infinity,{flat}]".encode(), False, None),
        ("json/x", f"[1e400,{flat}]".encode(), False, None),        # overflows to inf
        ("json/x", f"[{'9' * 5000},{flat}]".encode(), False, None),  # a 5000-digit integer
        ("json/x", b"[" * 100_000 + b"]" * 100_000, False, None),   # deep nesting
        ("json/x", b'{"data": "not numbers"}', False, None),
        ("json/x", b"\xff\xfe not utf-8", False, None),
        ("json/x", b"", False, None),
        ("raw/a/frame", raw, True, None),                            # still serving after all
    ]


def test_mixed_good_and_hostile_stream_every_message_accounted(
    tmp_path: Path, broker: Broker, daemons: list[Edged]
) -> None:
    config = digits_config(broker.port)
    base = dict(config["routes"][0], queue_size=256)
    config["routes"] = [
        dict(base, name="raw", subscribe="raw/+/frame",
             input={"format": "raw", "max_payload_bytes": 1000}),
        dict(base, name="npy", subscribe="npy/+", input={"format": "npy"}),
        dict(base, name="json", subscribe="json/+",
             input={"format": "json", "max_payload_bytes": 1_000_000}),
    ]
    probe = Probe(broker.port)
    try:
        probe.subscribe("edged/test-box/status", REPLIES)
        edged = Edged(tmp_path, config)
        daemons.append(edged)
        edged.start()
        end = time.monotonic() + 30
        while probe.next(timeout=max(0.1, end - time.monotonic()),
                         topic="edged/test-box/status").payload != b"online":
            pass
        time.sleep(0.3)
        messages = stream()
        for rounds in range(3):  # repeated, to show no route stalls after the bad ones
            for i, (topic, payload, _, props) in enumerate(messages):
                probe.publish(topic, payload, response_topic=REPLIES,
                              correlation_data=f"{rounds}-{i}".encode(), user_properties=props)
        replies = probe.collect(3 * len(messages), timeout=30, topic=REPLIES)
    finally:
        probe.close()
    got: dict[str, dict[str, Any]] = {}
    for reply in replies:
        got[(reply.correlation_data or b"").decode()] = reply.json()
    problems = []
    for rounds in range(3):
        for i, (topic, _, good, _) in enumerate(messages):
            body = got.get(f"{rounds}-{i}")
            if body is None:
                problems.append(f"#{i} on {topic}: no answer")
            elif good and "result" not in body:
                problems.append(f"#{i} on {topic}: good but got {body.get('error')}")
            elif not good and (body.get("error") or {}).get("reason") != "bad_input":
                problems.append(f"#{i} on {topic}: bad but got {body.get('error', 'a result')}")
    assert problems == [], "\n".join(problems)
    assert edged.proc is not None and edged.proc.poll() is None
    assert "Traceback" not in edged.log()
    assert edged.stop() == 0
