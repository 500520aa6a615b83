#!/usr/bin/env python3
"""The seed-style loop: the baseline that scripts/benchmarks/bench.py measures edged against
(--peer).

What a user writes before reaching for a daemon: one paho-mqtt 2.x client, one interpreter,
and inside ``on_message``: raw payload -> ``set_tensor`` -> ``invoke`` -> argmax and score
as JSON -> publish on the message's Response Topic with its Correlation Data, at the QoS of
the request. TCP_NODELAY is on, as edged sets it. No deadlines, no queue, no stats: it
answers every request, however late (the sender counts the late ones).

  python scripts/benchmarks/peer.py --port 1883 --model models/digits_int8.tflite \
      --topic bench/peer/in

Prints "ready" on stdout once subscribed; SIGTERM or SIGINT disconnects and exits.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
from types import FrameType
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def make_interpreter(model: str, delegate: str | None, options: dict[str, str]) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate
    except ImportError:  # the legacy runtime has the same API
        from tflite_runtime.interpreter import Interpreter, load_delegate
    delegates = [load_delegate(delegate, options)] if delegate else None
    interpreter = Interpreter(model_path=model, num_threads=1, experimental_delegates=delegates)
    interpreter.allocate_tensors()
    return interpreter


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model", required=True, help=".tflite file")
    p.add_argument("--topic", required=True, help="the filter to subscribe to")
    p.add_argument("--delegate", help="external delegate library (e.g. the bench's sim one)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="delegate option (repeatable)")
    args = p.parse_args()
    options = dict(item.split("=", 1) for item in args.option)
    interpreter = make_interpreter(args.model, args.delegate, options)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    scale, zero = out["quantization"]

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        reply_to = getattr(props, "ResponseTopic", None)
        if not reply_to:
            return
        x = np.frombuffer(msg.payload, dtype=inp["dtype"]).reshape(inp["shape"])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        scores = interpreter.get_tensor(out["index"]).reshape(-1)
        best = int(np.argmax(scores))
        score = float(scores[best]) if not scale else (float(scores[best]) - zero) * scale
        answer = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        corr = getattr(props, "CorrelationData", None)
        if corr is not None:
            answer.CorrelationData = corr
        client.publish(reply_to, json.dumps({"label": best, "score": score}), qos=msg.qos,
                       properties=answer)

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                   properties: Any) -> None:
        client.subscribe(args.topic, qos=0)

    def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                     properties: Any) -> None:
        print("ready", flush=True)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-peer",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.connect(args.host, args.port)
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def stop(signum: int, frame: FrameType | None) -> None:
        client.disconnect()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    client.loop_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
