"""A runtime whose interpreter dies with SIGSEGV when it opens a model, as ai-edge-litert
does under qemu-user (a NULL write in its CPU detection)."""

from __future__ import annotations

import ctypes
from typing import Any


class Interpreter:
    def __init__(self, model_path: str = "", **_: Any) -> None:
        ctypes.memset(0, 1, 1)  # a write through NULL: SIGSEGV, as in native code


def load_delegate(*_: Any, **__: Any) -> Any:
    raise ValueError("no delegates here")
