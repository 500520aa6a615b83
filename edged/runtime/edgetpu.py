"""Edge TPU specifics: spot a model compiled for it without running it, name its devices,
and say what to check when none answers.

A compiled model carries its TPU program in one custom op, ``edgetpu-custom-op``. Without
the delegate the interpreter stops at ``Encountered unresolved custom op``, so edged reads
the model's operator codes straight from the flatbuffer instead of trying it.
"""

from __future__ import annotations

import mmap
import re
import struct
from pathlib import Path

EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
DEFAULT_LIBRARY = "libedgetpu.so.1"
USB_IDS = {("1a6e", "089a"): "before its firmware is loaded",
           ("18d1", "9302"): "firmware loaded"}
_DEVICE = re.compile(r"^(|usb|pci)(:\d{1,3})?$")

# Field numbers from TFLite's schema.fbs: Model.operator_codes and OperatorCode.custom_code.
_MODEL_OPERATOR_CODES = 1
_OPCODE_CUSTOM_CODE = 1


class FlatbufferError(ValueError):
    """The file is not a well-formed TFLite flatbuffer."""


def valid_device(device: str) -> bool:
    """``""``, ``usb``, ``usb:N``, ``pci`` or ``pci:N``: what libedgetpu's ``device`` takes."""
    match = _DEVICE.match(device)
    if match is None:
        return False
    return not (match.group(1) == "" and match.group(2))  # ":0" names no bus


def custom_ops(path: Path) -> frozenset[str]:
    """The custom op names a ``.tflite`` file declares. Raises FlatbufferError, OSError."""
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        return frozenset(_Reader(buf).custom_codes())


def compiled_for_edgetpu(path: Path) -> bool:
    return EDGETPU_CUSTOM_OP in custom_ops(path)


def what_to_check(device: str, library: str) -> str:
    """The advice that goes with "no Edge TPU answered": libedgetpu says nothing itself."""
    wanted = f"device {device!r}" if device else "any Edge TPU (device '')"
    return (
        f"looked for {wanted} through {library}. Check: PCIe/M.2 modules appear as "
        "/dev/apex_N (needs the gasket/apex driver and read-write access, e.g. the 'apex' "
        "group); USB accelerators appear in lsusb as 1a6e:089a before their firmware loads "
        "and 18d1:9302 after (needs the libedgetpu udev rules and the 'plugdev' group); "
        "a USB accelerator needs a USB 3 port or a powered hub; `edged devices` lists "
        "what this box has"
    )


class _Reader:
    """Just enough of the flatbuffer format to list operator codes, with bounds checks."""

    def __init__(self, buf: bytes | mmap.mmap) -> None:
        self.buf = buf
        if len(buf) < 8 or buf[4:8] != b"TFL3":
            raise FlatbufferError("no TFL3 file identifier")

    def _u32(self, pos: int) -> int:
        if pos < 0 or pos + 4 > len(self.buf):
            raise FlatbufferError(f"offset {pos} is outside the file")
        return int(struct.unpack_from("<I", self.buf, pos)[0])

    def _u16(self, pos: int) -> int:
        if pos < 0 or pos + 2 > len(self.buf):
            raise FlatbufferError(f"offset {pos} is outside the file")
        return int(struct.unpack_from("<H", self.buf, pos)[0])

    def _field(self, table: int, number: int) -> int | None:
        vtable = table - struct.unpack("<i", struct.pack("<I", self._u32(table)))[0]
        if 4 + 2 * number >= self._u16(vtable):
            return None
        offset = self._u16(vtable + 4 + 2 * number)
        return table + offset if offset else None

    def _deref(self, pos: int) -> int:
        return pos + self._u32(pos)

    def custom_codes(self) -> list[str]:
        model = self._deref(0)
        codes = self._field(model, _MODEL_OPERATOR_CODES)
        if codes is None:
            return []
        vector = self._deref(codes)
        names = []
        for i in range(self._u32(vector)):
            code = self._deref(vector + 4 + 4 * i)
            field = self._field(code, _OPCODE_CUSTOM_CODE)
            if field is not None:
                text = self._deref(field)
                size = self._u32(text)
                if text + 4 + size > len(self.buf):
                    raise FlatbufferError("a custom op name runs past the end of the file")
                names.append(bytes(self.buf[text + 4:text + 4 + size]).decode("utf-8", "replace"))
        return names
