"""Load a .tflite model once: check it, read its tensors and labels, time a warm-up invoke."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edged.config import ModelConfig
from edged.errors import ModelLoadError
from edged.runtime.backend import Backend

TFLITE_MAGIC = b"TFL3"


@dataclass(frozen=True)
class TensorSpec:
    """What a model says about one of its input or output tensors."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def describe(self) -> str:
        shape = "x".join(str(d) for d in self.shape)
        quant = f" scale={self.scale:.6g} zero_point={self.zero_point}" if self.quantized else ""
        return f"{self.name} {self.dtype.name}[{shape}]{quant}"

    @classmethod
    def from_detail(cls, detail: dict[str, Any]) -> TensorSpec:
        scale, zero_point = detail.get("quantization", (0.0, 0))
        return cls(
            name=str(detail["name"]),
            index=int(detail["index"]),
            shape=tuple(int(d) for d in detail["shape"]),
            dtype=np.dtype(detail["dtype"]),
            scale=float(scale),
            zero_point=int(zero_point),
        )


@dataclass(frozen=True)
class LoadedModel:
    """A model that loaded, ran once, and is ready for worker interpreters."""

    name: str
    config: ModelConfig
    backend: Backend
    input: TensorSpec
    outputs: tuple[TensorSpec, ...]
    labels: tuple[str, ...]
    warmup_ms: float

    def new_interpreter(self) -> Any:
        """A fresh interpreter with its tensors allocated, for one worker thread."""
        return _interpreter(self.backend, self.config)


def load_model(name: str, config: ModelConfig, backend: Backend) -> LoadedModel:
    """Load, inspect and warm up ``config.path``. Raises ModelLoadError saying what is wrong."""
    _check_file(name, config.path)
    interpreter = _interpreter(backend, config)
    inputs = [TensorSpec.from_detail(d) for d in interpreter.get_input_details()]
    outputs = tuple(TensorSpec.from_detail(d) for d in interpreter.get_output_details())
    if len(inputs) != 1:
        raise ModelLoadError(
            f"model {name!r} ({config.path}) has {len(inputs)} inputs; edged feeds one input"
        )
    labels = _read_labels(name, config.labels)
    if config.postprocess == "classification":
        _check_classifier(name, outputs, labels)
    started = time.perf_counter()
    try:
        interpreter.invoke()
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"model {name!r} ({config.path}) fails to run: {exc}") from exc
    warmup_ms = (time.perf_counter() - started) * 1000
    return LoadedModel(name, config, backend, inputs[0], outputs, labels, warmup_ms)


def _check_file(name: str, path: Path) -> None:
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ModelLoadError(f"model {name!r}: cannot read {path}: {exc.strerror or exc}") from exc
    if head[4:8] != TFLITE_MAGIC:
        raise ModelLoadError(f"model {name!r}: {path} is not a TFLite flatbuffer (no TFL3 mark)")


def _interpreter(backend: Backend, config: ModelConfig) -> Any:
    try:
        interpreter = backend.interpreter_class(
            model_path=str(config.path), num_threads=config.num_threads
        )
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            f"{backend.describe()} cannot load {config.path}: {str(exc).strip()}"
        ) from exc
    return interpreter


def _read_labels(name: str, path: Path | None) -> tuple[str, ...]:
    if path is None:
        return ()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelLoadError(
            f"model {name!r}: cannot read labels {path}: {exc.strerror or exc}"
        ) from exc
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _check_classifier(name: str, outputs: tuple[TensorSpec, ...], labels: tuple[str, ...]) -> None:
    if len(outputs) != 1:
        raise ModelLoadError(
            f"model {name!r}: classification needs one output tensor, the model has "
            f"{len(outputs)}; use postprocess: raw"
        )
    classes = outputs[0].shape[-1] if outputs[0].shape else 1
    if labels and len(labels) != classes:
        raise ModelLoadError(
            f"model {name!r}: {len(labels)} labels for {classes} output classes"
        )
