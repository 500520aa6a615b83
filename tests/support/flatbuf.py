"""Make a stand-in for a model compiled for the Edge TPU: a copy of a .tflite file in which
one operator code becomes the custom op ``edgetpu-custom-op``.

No TFLite schema bindings are needed (tflite-runtime has none): the new OperatorCode table,
its vtable and its name are appended to the file, and one entry of the model's
operator_codes vector is pointed at it. Flatbuffer offsets to tables and strings are
unsigned and point forward, so everything appended must follow what refers to it.
"""

from __future__ import annotations

import struct
from pathlib import Path

CUSTOM = 32  # BuiltinOperator.CUSTOM in TFLite's schema


def _u32(buf: bytes | bytearray, pos: int) -> int:
    return int(struct.unpack_from("<I", buf, pos)[0])


def _field(buf: bytes | bytearray, table: int, number: int) -> int:
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    offset = struct.unpack_from("<H", buf, vtable + 4 + 2 * number)[0]
    assert offset, f"field {number} is absent"
    return table + int(offset)


def operator_codes_vector(buf: bytes | bytearray) -> int:
    model = _u32(buf, 0)
    codes = _field(buf, model, 1)  # Model.operator_codes
    return codes + _u32(buf, codes)


def with_custom_op(source: Path, target: Path, name: str = "edgetpu-custom-op",
                   index: int = 0) -> Path:
    """Copy ``source`` to ``target`` with operator code ``index`` turned into custom op
    ``name``; every operator that used that code now refers to the custom op."""
    buf = bytearray(source.read_bytes())
    vector = operator_codes_vector(buf)
    count = _u32(buf, vector)
    assert 0 <= index < count, f"the model has {count} operator codes"
    buf.extend(b"\0" * (-len(buf) % 4))
    # vtable: its size, the table's size, then the offsets of fields 0..3:
    # deprecated_builtin_code (int8), custom_code (string), version (int32), builtin_code.
    vtable = len(buf)
    buf += struct.pack("<HHHHHH", 12, 20, 16, 4, 12, 8)
    table = len(buf)
    string = table + 20
    buf += struct.pack("<iIiib3x", table - vtable, string - (table + 4), CUSTOM, 1, CUSTOM)
    encoded = name.encode()
    buf += struct.pack("<I", len(encoded)) + encoded + b"\0"
    buf.extend(b"\0" * (-len(buf) % 4))
    entry = vector + 4 + 4 * index
    struct.pack_into("<I", buf, entry, table - entry)
    target.write_bytes(bytes(buf))
    return target
