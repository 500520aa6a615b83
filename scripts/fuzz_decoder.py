"""Coverage-guided fuzzing of edged's MQTT packet decoder (edged/mqtt/packets/decode.py) with
atheris (libFuzzer for Python).

The invariants, for any bytes a broker (or anything that answers on its port) may send:
- ``Decoder(v5).feed`` raises nothing but ``MalformedPacket``;
- the packets decoded do not depend on how the bytes were cut into reads (one read, or
  the chunks the input's second byte chooses), and neither does whether it is malformed;
- what the decoder holds for an unfinished packet never exceeds the bytes it was given
  (memory stays bounded; libFuzzer's ``-rss_limit_mb`` watches the process as a whole).

The seed corpus is real packets: the ones a server sends to a client, encoded by edged's own
encoder (PUBLISH at every QoS with and without MQTT 5 properties, the acks, DISCONNECT) and
with CONNACK, SUBACK and DISCONNECT property blocks packed by paho's ``Properties``
(Maximum QoS, Retain Available, Maximum Packet Size, Server Keep Alive, ...).

  scripts/fuzz_decoder.py [-max_total_time=S] [-runs=N] [-rss_limit_mb=M] [CORPUS_DIR ...]

Any libFuzzer flag works. With no corpus folder the seeds are written to a temporary one.
A long run: ``scripts/fuzz_decoder.py -max_total_time=3600 -print_final_stats=1``.
tests/test_fuzz_decoder.py runs it for a bounded time in CI.
"""

from __future__ import annotations

import importlib
import struct
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the decoder of this checkout, whatever the venv has installed
    sys.path.insert(0, str(REPO))
MAX_CHUNKS = 16
_codec: list[ModuleType] = []  # edged.mqtt.packets, imported once (instrumented or not)


def codec(instrumented: bool = False) -> ModuleType:
    """edged's codec; under the fuzzer it must be imported first, inside atheris's
    instrumentation, so that its branches guide the search."""
    if not _codec:
        if instrumented:
            import atheris

            with atheris.instrument_imports(include=["edged.mqtt.packets"]):
                _codec.append(importlib.import_module("edged.mqtt.packets"))
        else:
            _codec.append(importlib.import_module("edged.mqtt.packets"))
    return _codec[0]


def _frame(first: int, body: bytes) -> bytes:
    """A fixed header (variable byte integer length) and ``body``."""
    n, length = len(body), bytearray()
    while True:
        byte, n = n % 128, n // 128
        length.append(byte | (0x80 if n else 0))
        if not n:
            return bytes([first]) + bytes(length) + body


def _paho_properties(packet_type: int, **values: object) -> bytes:
    from paho.mqtt.properties import Properties

    props = Properties(packet_type)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    return bytes(props.pack())  # type: ignore[no-untyped-call]


def seeds() -> list[bytes]:
    """Real packets a server sends, each prefixed by the two control bytes ``one_input``
    reads (protocol level, chunking)."""
    from paho.mqtt.packettypes import PacketTypes

    packets = codec()
    v5: list[bytes] = []
    v3: list[bytes] = []
    for is_v5, out in ((True, v5), (False, v3)):
        for qos in (0, 1, 2):
            out.append(packets.encode_publish("sensors/cam1/frame", b"\x00\x01payload",
                                              v5=is_v5, qos=qos, mid=qos + 1))
        for kind in (packets.PUBACK, packets.PUBREC, packets.PUBREL, packets.PUBCOMP):
            out.append(packets.encode_ack(kind, 7, v5=is_v5))
        out.append(_frame(0xD0, b""))  # PINGRESP
        # UNSUBACK: on MQTT 5 a property block and a reason code per filter
        out.append(_frame(0xB0, struct.pack(">H", 3) + (b"\x00\x00\x11" if is_v5 else b"")))
    v5.append(packets.encode_publish(
        "replies/x", b"{}", v5=True, qos=1, mid=9, correlation_data=b"42",
        user_properties=[("deadline", "1700000000000")]))
    v5.append(packets.encode_ack(packets.PUBACK, 8, v5=True, reason=0x97))
    v5.append(packets.encode_disconnect(v5=True, reason=0x8E))
    connack_props = _paho_properties(
        PacketTypes.CONNACK, MaximumQoS=1, RetainAvailable=0, MaximumPacketSize=131072,
        ServerKeepAlive=20, ReceiveMaximum=100, TopicAliasMaximum=0,
        AssignedClientIdentifier="auto-1", ReasonString="ok", SharedSubscriptionAvailable=0,
        WildcardSubscriptionAvailable=1, SubscriptionIdentifierAvailable=0,
        UserProperty=[("broker", "test")])
    v5.append(_frame(0x20, b"\x01\x00" + connack_props))
    v5.append(_frame(0x20, b"\x00\x84" + _paho_properties(PacketTypes.CONNACK,
                                                          ReasonString="Unsupported")))
    v5.append(_frame(0x90, struct.pack(">H", 5)
                     + _paho_properties(PacketTypes.SUBACK, ReasonString="granted")
                     + b"\x00\x01\x02\x80"))
    v5.append(_frame(0xE0, b"\x9a" + _paho_properties(
        PacketTypes.DISCONNECT, ReasonString="Retain not supported")))
    v3.append(_frame(0x20, b"\x01\x00"))  # CONNACK, session present
    v3.append(_frame(0x20, b"\x00\x01"))  # refused: unacceptable protocol version
    v3.append(_frame(0x90, struct.pack(">H", 5) + b"\x00\x01\x02\x80"))  # SUBACK
    chunked = [bytes([1, 3]) + v5[0] + v5[3] + v5[1]]  # several packets, cut into reads
    return ([bytes([1, 0]) + p for p in v5] + [bytes([0, 0]) + p for p in v3] + chunked)


def _decode(v5: bool, chunks: list[bytes]) -> tuple[list[Any], str | None]:
    packets = _codec[0] if _codec else codec()
    decoder = packets.Decoder(v5)
    got: list[Any] = []
    given = 0
    for chunk in chunks:
        given += len(chunk)
        try:
            got.extend(decoder.feed(chunk))
        except packets.MalformedPacket as exc:
            return got, type(exc).__name__
        if decoder.buffered > given:
            raise AssertionError(f"holds {decoder.buffered} bytes of {given} given")
    return got, None


def one_input(data: bytes) -> None:
    """The fuzz target: byte 0 picks the protocol level, byte 1 the chunking, the rest is
    what the broker sent."""
    if len(data) < 2:
        return
    v5, cut, stream = bool(data[0] & 1), data[1], data[2:]
    whole = _decode(v5, [stream])
    if cut:
        step = 1 + cut % 7
        chunks = [stream[i:i + step] for i in range(0, len(stream), step)][:MAX_CHUNKS]
        chunks.append(stream[sum(map(len, chunks)):])
        pieces = _decode(v5, [c for c in chunks if c])
        # A feed that raises gives back none of its packets, so after an error only the
        # error itself must agree.
        if (whole[1] is None) != (pieces[1] is None) or (
                whole[1] is None and whole[0] != pieces[0]):
            raise AssertionError(f"chunking changed the outcome: {whole!r} != {pieces!r}")


def main() -> None:
    codec(instrumented=True)
    import atheris

    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="fuzz-decoder-"))
        args.append(str(corpus))
        for i, seed in enumerate(seeds()):
            (corpus / f"seed-{i:03d}").write_bytes(seed)
    else:
        for folder in (Path(a) for a in args[1:] if not a.startswith("-")):
            folder.mkdir(parents=True, exist_ok=True)
            if not any(folder.iterdir()):
                for i, seed in enumerate(seeds()):
                    (folder / f"seed-{i:03d}").write_bytes(seed)
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
