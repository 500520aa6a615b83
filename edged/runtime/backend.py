"""Pick the TFLite runtime: ai-edge-litert when installed (its XNNPACK runs quantized kernels,
about 8x faster than tflite-runtime's reference kernels on x86), else tflite-runtime.

Both expose the same ``Interpreter`` and ``load_delegate``.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from edged.errors import RuntimeUnavailableError

# (distribution name, module holding Interpreter and load_delegate), fastest first.
CANDIDATES: tuple[tuple[str, str], ...] = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
)


@dataclass(frozen=True)
class Backend:
    """One importable TFLite runtime."""

    name: str
    version: str
    interpreter_class: Any
    load_delegate: Callable[..., Any]

    def describe(self) -> str:
        return f"{self.name} {self.version}"


@functools.cache
def select_backend(prefer: str | None = None) -> Backend:
    """Return the preferred installed runtime, or the one named by ``prefer``, without
    trying it (``edged.runtime.probe.choose_backend`` tries it first, in a child process).

    Raises RuntimeUnavailableError naming what was tried and why each failed.
    """
    candidates = [c for c in CANDIDATES if prefer in (None, c[0])]
    if not candidates:
        names = ", ".join(c[0] for c in CANDIDATES)
        raise RuntimeUnavailableError(f"unknown TFLite runtime {prefer!r}; known: {names}")
    return import_backend(candidates)


def import_backend(candidates: Iterable[tuple[str, str]]) -> Backend:
    """The first of ``candidates`` (distribution, module) that imports."""
    failures = []
    for dist, module_name in candidates:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            failures.append(f"{dist}: {exc}")
            continue
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "unknown"
        return Backend(dist, version, module.Interpreter, module.load_delegate)
    raise RuntimeUnavailableError(
        "no TFLite runtime can be imported (install ai-edge-litert, or tflite-runtime with "
        "numpy<2): " + "; ".join(failures)
    )
