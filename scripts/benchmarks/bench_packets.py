"""Microbenchmark: edged.mqtt.packets against paho-mqtt's codec on the hot path's packets.

Prints microseconds per operation (best of several runs):
  decode  64-byte PUBLISH with properties (one per feed, and 100 per feed)
  decode  150 KB PUBLISH with properties arriving in 64 KB chunks
  encode  200-byte JSON reply with correlation data
paho's figures are its own decoder (paho.mqtt._packet.decode_publish with Properties.unpack,
after the fixed header is split off, which paho's socket reader does separately) and its own
PUBLISH builder (Client._send_publish into a captured queue, Properties built per message).

    .venv/bin/python scripts/benchmarks/bench_packets.py
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt import _packet as paho_packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.mqtt import packets


def best_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


class _Capture(paho.Client):
    def __init__(self) -> None:
        super().__init__(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self._sock = object()  # type: ignore[assignment]
        self.last: bytes | bytearray = b""

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: Any = None) -> MQTTErrorCode:
        self.last = packet
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def __del__(self) -> None:
        self._sock = None


def paho_body(packet: bytes) -> tuple[int, bytes]:
    i = 1
    while packet[i] & 0x80:
        i += 1
    return packet[0], packet[i + 1:]


def main() -> None:
    v5 = MQTTProtocolVersion.MQTTv5
    props: dict[str, Any] = {"response_topic": "replies/c1",
                             "correlation_data": b"0123456789abcdef",
                             "user_properties": [("dl", "17646273")]}
    small = packets.encode_publish("s/a", b"x" * 7, v5=True, qos=1, mid=1, **props)
    assert len(small) == 64, len(small)
    big = packets.encode_publish("frames/cam1", bytes(150_000), v5=True, qos=1, mid=2, **props)
    chunks = [big[i:i + 65536] for i in range(0, len(big), 65536)]
    batch = small * 100
    reply = json.dumps({"label": "cat", "score": 0.9731, "model": "mobilenet_v2",
                        "latency_ms": 13.61, "pad": "p" * 110}).encode()
    assert len(reply) == 200, len(reply)

    decoder = packets.Decoder(v5=True)

    def ours_big() -> None:
        for chunk in chunks:
            decoder.feed(chunk)

    header_s, body_s = paho_body(small)
    header_b, body_b = paho_body(big)
    capture = _Capture()

    def paho_encode() -> None:
        p = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        p.CorrelationData = b"0123456789abcdef"
        capture._send_publish(0, b"replies/c1", reply, 0, False, False, None, p)

    rows = [
        ("decode 64 B PUBLISH, 1 per feed", best_us(lambda: decoder.feed(small), 20000),
         best_us(lambda: paho_packet.decode_publish(header_s, body_s, v5), 20000)),
        ("decode 64 B PUBLISH, 100 per feed", best_us(lambda: decoder.feed(batch), 200) / 100,
         None),
        ("decode 150 KB PUBLISH in 64 KB chunks", best_us(ours_big, 2000),
         best_us(lambda: paho_packet.decode_publish(header_b, body_b, v5), 2000)),
        ("encode 200 B reply + correlation data",
         best_us(lambda: packets.encode_publish("replies/c1", reply, v5=True,
                                                correlation_data=b"0123456789abcdef"), 20000),
         best_us(paho_encode, 20000)),
    ]
    print(f"{'operation':40} {'edged us':>9} {'paho us':>9}")
    for name, ours, theirs in rows:
        print(f"{name:40} {ours:9.2f} {'-' if theirs is None else f'{theirs:.2f}':>9}")


if __name__ == "__main__":
    main()
