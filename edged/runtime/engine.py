"""Engines: something that turns one input tensor into output tensors.

``InlineEngine`` holds an interpreter (with its delegate, if any) and runs it on the
calling thread. ``edged.runtime.isolation.ChildEngine`` runs one in a child process.
"""

from __future__ import annotations

import ctypes
from contextlib import nullcontext
from typing import Any, Protocol

import numpy as np

from edged.runtime import edgetpu, tflite_log
from edged.runtime.backend import Backend
from edged.runtime.delegates import DelegateError, DelegateSpec, EngineSpec
from edged.runtime.tensors import TensorSpec, mismatch, specs_of

Array = np.ndarray[Any, Any]


class EngineFailure(Exception):
    """An engine could not run one input; the session decides whether to fail over."""


class Engine(Protocol):
    name: str
    input: TensorSpec
    outputs: tuple[TensorSpec, ...]

    def run(self, tensor: Array) -> list[Array]:
        """Outputs for ``tensor``, in the model's output order. Raises EngineFailure."""
        ...

    def close(self) -> None: ...


def load_delegate(backend: Backend, spec: DelegateSpec) -> Any:
    """Load ``spec`` with the runtime's ``load_delegate``. Raises DelegateError saying what
    was loaded, with which options, and (for the Edge TPU) what to check."""
    try:
        # Open the library first: the runtime's Delegate object, half-built when the library
        # is missing or lacks the plugin symbol, raises again from its finalizer.
        if not hasattr(ctypes.CDLL(spec.library), "tflite_plugin_create_delegate"):
            raise AttributeError("tflite_plugin_create_delegate")
        return backend.load_delegate(spec.library, dict(spec.options))
    except (OSError, ValueError, RuntimeError, AttributeError) as exc:
        # load_delegate wraps a NULL from create in "Failed to load delegate from X\n<msg>";
        # libedgetpu reports nothing, so the message is empty and the advice does the work.
        detail = str(exc).strip().splitlines()
        reason = detail[-1].strip() if len(detail) > 1 and detail[-1].strip() else None
        text = f"{spec.kind} delegate {spec.describe()} did not load"
        if isinstance(exc, OSError) or "cannot open shared object" in str(exc):
            text += f": the library cannot be opened ({str(exc).strip()})"
        elif isinstance(exc, AttributeError):
            text += ": the library does not export tflite_plugin_create_delegate"
        elif reason:
            text += f": {reason}"
        else:
            text += ": its create function returned NULL without a message"
        if spec.kind == "edgetpu":
            device = dict(spec.options).get("device", "")
            text += "; " + edgetpu.what_to_check(device, spec.library)
        raise DelegateError(text) from exc


def new_interpreter(backend: Backend, spec: EngineSpec) -> Any:
    """An interpreter for ``spec`` with its tensors allocated. Raises DelegateError when the
    delegate fails, ModelLoadError-compatible ValueError/RuntimeError otherwise."""
    delegates = [load_delegate(backend, spec.delegate)] if spec.delegate else None
    try:
        with nullcontext() if delegates else tflite_log.quiet():
            interpreter = backend.interpreter_class(
                model_path=str(spec.model_path), num_threads=spec.num_threads,
                experimental_delegates=delegates,
            )
            if spec.input_shape is not None:
                _resize_input(interpreter, spec.input_shape)
            interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        if spec.delegate is None:
            raise
        raise DelegateError(
            f"{spec.delegate.kind} delegate {spec.delegate.describe()} loaded but the "
            f"interpreter for {spec.model_path} failed with it: {str(exc).strip()}"
        ) from exc
    return interpreter


def _resize_input(interpreter: Any, shape: tuple[int, ...]) -> None:
    """Give a dynamic input (shape signature -1) the configured shape; a fixed input must
    already have it."""
    detail = interpreter.get_input_details()[0]
    signature = [int(d) for d in detail.get("shape_signature", detail["shape"])]
    if len(signature) != len(shape) or any(s not in (-1, d) for s, d in zip(signature, shape,
                                                                            strict=False)):
        raise ValueError(f"input_shape {list(shape)} does not fit the model's input "
                         f"signature {signature} (-1: any size)")
    interpreter.resize_tensor_input(detail["index"], list(shape), strict=True)


class InlineEngine:
    """An interpreter run on the calling thread. Not thread-safe: one per worker."""

    def __init__(self, backend: Backend, spec: EngineSpec) -> None:
        self.name = spec.name
        self.spec = spec
        self._interpreter = new_interpreter(backend, spec)
        inputs, self.outputs = specs_of(self._interpreter)
        if len(inputs) != 1:
            raise ValueError(f"{spec.model_path} has {len(inputs)} inputs; edged feeds one")
        self.input = inputs[0]
        self._input_index = self.input.index
        self._output_indices = [o.index for o in self.outputs]
        self._set_tensor, self._invoke, self._get_tensor = _tensor_calls(self._interpreter)

    def run(self, tensor: Array) -> list[Array]:
        # set_tensor copies once into the interpreter's buffer, as writing through a view
        # would, in one call instead of three.
        try:
            self._set_tensor(self._input_index, tensor)
            self._invoke()
            return list(map(self._get_tensor, self._output_indices))  # no Python frame
        except (RuntimeError, ValueError) as exc:
            raise EngineFailure(str(exc).strip() or type(exc).__name__) from exc

    def close(self) -> None:
        # The interpreter must go before its delegates; dropping it does both in order (the
        # bound calls hold it too).
        self._interpreter = self._set_tensor = self._invoke = self._get_tensor = None


def _tensor_calls(interpreter: Any) -> tuple[Any, Any, Any]:
    """``set_tensor``, ``invoke`` and ``get_tensor``, as the runtime's native wrapper's own
    calls when it has them (ai-edge-litert and tflite-runtime both do): the Python methods
    around them add three frames and a reference-count check to every message of a model of
    microseconds. That check guards against arrays that view the interpreter's buffers
    (``Interpreter.tensor``), which edged never makes: ``get_tensor`` copies. Once these
    are held, the check itself counts them as such references: the interpreter's own
    ``invoke`` refuses to run, so an engine uses these calls and nothing else."""
    native = getattr(interpreter, "_interpreter", None)
    calls = [getattr(native, name, None) for name in ("SetTensor", "Invoke", "GetTensor")]
    if all(callable(c) for c in calls):
        return calls[0], calls[1], calls[2]
    return interpreter.set_tensor, interpreter.invoke, interpreter.get_tensor


def check_compatible(engine: Engine, input_spec: TensorSpec,
                     outputs: tuple[TensorSpec, ...]) -> None:
    """Raise ValueError unless ``engine`` takes and gives tensors like the served model: a
    fallback that quantizes differently would answer wrongly without a sign."""
    problems = []
    why = mismatch(input_spec, engine.input)
    if why:
        problems.append(f"input: {why}")
    if len(engine.outputs) != len(outputs):
        problems.append(f"{len(engine.outputs)} outputs instead of {len(outputs)}")
    else:
        for i, (want, got) in enumerate(zip(outputs, engine.outputs, strict=True)):
            why = mismatch(want, got)
            if why:
                problems.append(f"output {i}: {why}")
    if problems:
        raise ValueError("tensors differ from the model's: " + "; ".join(problems))
