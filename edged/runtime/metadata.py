"""The input normalisation a model's own TFLite metadata states, where it carries some:
``NormalizationOptions`` (mean, std) on the first input tensor, in the ``TFLITE_METADATA``
buffer that TFLite Model Maker, MediaPipe and the TFLite Support tools write
(tensorflow/tflite-support, metadata_schema.fbs). Read straight from the flatbuffer, with
bounds checks, so no schema bindings are needed.

The metadata's formula is ``(value - mean) / std`` on pixel values 0..255; edged's config
takes ``(pixel / 255 - mean) / std``, so the config's equivalent is both divided by 255.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from edged.runtime.edgetpu import FlatbufferError, _Reader

METADATA_NAME = "TFLITE_METADATA"
# Field numbers from TFLite's schema.fbs and metadata_schema.fbs.
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA = 0
_MODEL_SUBGRAPHS = 3  # ModelMetadata.subgraph_metadata
_SUBGRAPH_INPUTS = 2  # SubGraphMetadata.input_tensor_metadata
_TENSOR_PROCESS_UNITS = 4  # TensorMetadata.process_units
_UNIT_TYPE, _UNIT_OPTIONS = 0, 1  # ProcessUnit.options_type, options
_NORMALIZATION = 1  # ProcessUnitOptions.NormalizationOptions
_NORM_MEAN, _NORM_STD = 0, 1


class _Metadata(_Reader):
    def __init__(self, buf: bytes | mmap.mmap, identifier: bytes = b"TFL3") -> None:
        self.buf = buf
        if len(buf) < 8 or buf[4:8] != identifier:
            raise FlatbufferError(f"no {identifier.decode()} file identifier")

    def vector(self, table: int, number: int) -> list[int]:
        """Positions of a vector's elements (4 bytes each)."""
        field = self._field(table, number)
        if field is None:
            return []
        vector = self._deref(field)
        count = self._u32(vector)
        if vector + 4 + 4 * count > len(self.buf):
            raise FlatbufferError("a vector runs past the end of the buffer")
        return [vector + 4 + 4 * i for i in range(count)]

    def tables(self, table: int, number: int) -> list[int]:
        return [self._deref(pos) for pos in self.vector(table, number)]

    def string(self, table: int, number: int) -> str | None:
        field = self._field(table, number)
        if field is None:
            return None
        text = self._deref(field)
        size = self._u32(text)
        if text + 4 + size > len(self.buf):
            raise FlatbufferError("a string runs past the end of the buffer")
        return bytes(self.buf[text + 4:text + 4 + size]).decode("utf-8", "replace")

    def floats(self, table: int, number: int) -> tuple[float, ...]:
        return tuple(struct.unpack_from("<f", self.buf, pos)[0]
                     for pos in self.vector(table, number))

    def byte_vector(self, table: int, number: int) -> bytes:
        field = self._field(table, number)
        if field is None:
            return b""
        vector = self._deref(field)
        size = self._u32(vector)
        if vector + 4 + size > len(self.buf):
            raise FlatbufferError("a buffer runs past the end of the file")
        return bytes(self.buf[vector + 4:vector + 4 + size])

    def u8(self, table: int, number: int) -> int:
        field = self._field(table, number)
        if field is None:
            return 0
        if field + 1 > len(self.buf):
            raise FlatbufferError(f"offset {field} is outside the buffer")
        return int(self.buf[field])

    def u32_field(self, table: int, number: int) -> int | None:
        field = self._field(table, number)
        return None if field is None else self._u32(field)


def input_normalization(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The (mean, std) the model's metadata states for its first input, in pixel values
    0..255, or None when it states none. Raises FlatbufferError, OSError."""
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        model_file = _Metadata(buf)
        model = model_file._deref(0)
        buffers = model_file.tables(model, _MODEL_BUFFERS)
        for entry in model_file.tables(model, _MODEL_METADATA):
            if model_file.string(entry, _METADATA_NAME) != METADATA_NAME:
                continue
            index = model_file.u32_field(entry, _METADATA_BUFFER)
            if index is None or index >= len(buffers):
                return None
            data = model_file.byte_vector(buffers[index], _BUFFER_DATA)
            return _normalization(data) if data else None
    return None


def _normalization(data: bytes) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    meta = _Metadata(data, identifier=b"M001")
    root = meta._deref(0)
    for subgraph in meta.tables(root, _MODEL_SUBGRAPHS)[:1]:
        for tensor in meta.tables(subgraph, _SUBGRAPH_INPUTS)[:1]:
            for unit in meta.tables(tensor, _TENSOR_PROCESS_UNITS):
                if meta.u8(unit, _UNIT_TYPE) != _NORMALIZATION:
                    continue
                field = meta._field(unit, _UNIT_OPTIONS)
                if field is None:
                    return None
                options = meta._deref(field)
                mean, std = meta.floats(options, _NORM_MEAN), meta.floats(options, _NORM_STD)
                return (mean, std) if mean and std else None
    return None
