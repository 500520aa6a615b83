"""Load a .tflite model once: check it, read its tensors and labels, time a warm-up invoke."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edged.config import ModelConfig
from edged.errors import ModelLoadError
from edged.runtime.backend import Backend

TFLITE_MAGIC = b"TFL3"
# tflite-runtime 2.14 does not verify the flatbuffer: a truncated or corrupt file crashes
# the process with SIGSEGV. With it, a model is opened in a throw-away child process first.
UNVERIFIED_RUNTIMES = frozenset({"tflite-runtime"})
_PROBE = (
    "import sys; from {module} import Interpreter; "
    "i = Interpreter(model_path=sys.argv[1]); i.allocate_tensors()"
)


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
    if backend.name in UNVERIFIED_RUNTIMES:
        _probe_in_child(name, config.path, backend)
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


def _probe_in_child(name: str, path: Path, backend: Backend) -> None:
    module = backend.interpreter_class.__module__
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE.format(module=module), str(path)],
            capture_output=True, text=True, timeout=120, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelLoadError(f"model {name!r}: loading {path} did not finish in 120 s") from exc
    if done.returncode < 0:
        sig = signal.Signals(-done.returncode).name
        raise ModelLoadError(
            f"model {name!r}: {backend.describe()} crashed ({sig}) opening {path}; "
            "the file is truncated or corrupt"
        )
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise ModelLoadError(
            f"{backend.describe()} cannot load {path}: {lines[-1] if lines else 'unknown error'}"
        )


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
