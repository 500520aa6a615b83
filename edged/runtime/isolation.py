"""``isolation: process``: an interpreter in a child process, so that a delegate that aborts
(a USB transfer error in libedgetpu calls abort()) or hangs in native code takes down only
the child. A hung invoke cannot be cancelled inside a thread; a child can be killed.

The parent and the child talk over a socketpair in frames: one kind byte, a 4-byte length,
the payload. The input goes as raw tensor bytes and the outputs come back the same way, so
nothing is pickled. ``python -m edged.runtime.child`` is the child's entry point.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edged.errors import ModelLoadError
from edged.runtime.backend import Backend, select_backend
from edged.runtime.delegates import DelegateError, DelegateSpec, EngineSpec
from edged.runtime.engine import Array, Engine, EngineFailure, InlineEngine
from edged.runtime.tensors import TensorSpec

READY, INPUT, OUTPUT, ERROR = b"R", b"I", b"O", b"E"
_HEADER = struct.Struct("<cI")
LOAD_TIMEOUT_S = 120.0  # starting Python, importing the runtime and opening the device


def start_engine(backend: Backend, spec: EngineSpec, invoke_timeout_ms: int | None) -> Engine:
    """An accelerator under ``isolation: process`` runs in a child; everything else, and the
    CPU fallback (XNNPACK is not what crashes), runs inline. Raises ModelLoadError."""
    try:
        if spec.isolation == "process" and spec.accelerated:
            return ChildEngine(backend, spec, invoke_timeout_ms)
        return InlineEngine(backend, spec)
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            f"{backend.describe()} cannot load {spec.model_path}: {str(exc).strip()}"
        ) from exc


class ChildEngine:
    """An InlineEngine in a child process. Any failure leaves it closed: make a new one."""

    def __init__(self, backend: Backend, spec: EngineSpec,
                 invoke_timeout_ms: int | None = None) -> None:
        self.name = spec.name
        self.spec = spec
        self._timeout = invoke_timeout_ms / 1000 if invoke_timeout_ms else None
        parent, child = socket.socketpair()
        self._sock = parent
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-m", "edged.runtime.child", str(child.fileno()),
             backend.name, json.dumps(_spec_to_json(spec))],
            pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
        )
        child.close()
        try:
            kind, payload = self._receive(LOAD_TIMEOUT_S, "start")
        except EngineFailure as exc:
            raise DelegateError(f"{spec.name} in a child process: {exc}") from exc
        if kind == ERROR:
            self.close()
            raise DelegateError(payload.decode("utf-8", "replace"))
        described = json.loads(payload)
        self.input = _spec_from_json(described["input"])
        self.outputs = tuple(_spec_from_json(o) for o in described["outputs"])

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def run(self, tensor: Array) -> list[Array]:
        if self._proc is None:
            raise EngineFailure("the child process was stopped after an earlier failure")
        data = np.ascontiguousarray(tensor).tobytes()
        try:
            self._sock.sendall(_HEADER.pack(INPUT, len(data)) + data)
        except OSError as exc:
            raise EngineFailure(self._died(f"cannot reach the child process ({exc})")) from exc
        kind, payload = self._receive(self._timeout, "invoke")
        if kind == ERROR:
            raise EngineFailure(payload.decode("utf-8", "replace"))
        outputs, offset, data_out = [], 0, bytearray(payload)  # writable, like get_tensor's
        for spec in self.outputs:
            outputs.append(np.frombuffer(data_out, spec.dtype, math.prod(spec.shape),
                                         offset).reshape(spec.shape))
            offset += spec.nbytes
        return outputs

    def _receive(self, timeout: float | None, stage: str) -> tuple[bytes, bytes]:
        self._sock.settimeout(timeout)
        try:
            header = _read_exactly(self._sock, _HEADER.size)
            kind, size = _HEADER.unpack(header)
            return kind, _read_exactly(self._sock, size)
        except TimeoutError as exc:
            self.close(kill=True)
            raise EngineFailure(
                f"{stage} gave no answer within {timeout * 1000:.0f} ms; child process "
                "killed" if timeout else f"{stage} timed out") from exc
        except (OSError, EOFError) as exc:
            raise EngineFailure(self._died(f"child process ended during {stage}")) from exc

    def _died(self, what: str) -> str:
        proc = self._proc
        self.close(kill=True)
        code = proc.wait(5) if proc is not None else None
        if code is not None and code < 0:
            what += f" ({signal.Signals(-code).name})"
        elif code is not None:
            what += f" (exit status {code})"
        return what

    def close(self, kill: bool = False) -> None:
        """Closing the socket tells the child to exit; ``kill`` does not wait for it."""
        proc, self._proc = self._proc, None
        with contextlib.suppress(OSError):
            self._sock.close()
        if proc is None or proc.poll() is not None:
            return
        if not kill:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2)
                return
        proc.kill()
        proc.wait(5)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other end closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _spec_to_json(spec: EngineSpec) -> dict[str, Any]:
    d = spec.delegate
    return {"model_path": str(spec.model_path), "num_threads": spec.num_threads,
            "input_shape": None if spec.input_shape is None else list(spec.input_shape),
            "delegate": None if d is None else
            {"kind": d.kind, "library": d.library, "options": [list(o) for o in d.options]}}


def _spec_from_args(text: str) -> EngineSpec:
    raw = json.loads(text)
    d = raw["delegate"]
    delegate = None if d is None else DelegateSpec(
        d["kind"], d["library"], tuple((k, v) for k, v in d["options"]))
    shape = raw.get("input_shape")
    return EngineSpec(Path(raw["model_path"]), int(raw["num_threads"]), delegate,
                      input_shape=None if shape is None else tuple(shape))


def _tensor_json(t: TensorSpec) -> dict[str, Any]:
    return {"name": t.name, "index": t.index, "shape": list(t.shape), "dtype": t.dtype.str,
            "scale": t.scale, "zero_point": t.zero_point}


def _spec_from_json(d: dict[str, Any]) -> TensorSpec:
    return TensorSpec(d["name"], d["index"], tuple(d["shape"]), np.dtype(d["dtype"]),
                      d["scale"], d["zero_point"])


def _die_with_parent() -> None:
    # A child stuck in a native invoke never reads the socket's EOF, so a thread watches
    # for the daemon going away. (PR_SET_PDEATHSIG would fire when the *thread* that
    # started the child ends, and retry threads do end.)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _serve(sock: socket.socket, engine: InlineEngine) -> None:
    ready = {"input": _tensor_json(engine.input),
             "outputs": [_tensor_json(o) for o in engine.outputs]}
    payload = json.dumps(ready).encode()
    sock.sendall(_HEADER.pack(READY, len(payload)) + payload)
    shape, dtype = engine.input.shape, engine.input.dtype
    while True:
        try:
            _, size = _HEADER.unpack(_read_exactly(sock, _HEADER.size))
            data = _read_exactly(sock, size)
        except (EOFError, OSError):
            return  # the parent closed the socket: a normal stop
        try:
            outputs = engine.run(np.frombuffer(data, dtype).reshape(shape))
            reply, body = OUTPUT, b"".join(np.ascontiguousarray(o).tobytes() for o in outputs)
        except EngineFailure as exc:
            reply, body = ERROR, str(exc).encode()
        sock.sendall(_HEADER.pack(reply, len(body)) + body)


def child_main(argv: list[str]) -> int:
    fd, backend_name, spec_text = argv
    _die_with_parent()
    sock = socket.socket(fileno=int(fd))
    try:
        engine = InlineEngine(select_backend(backend_name), _spec_from_args(spec_text))
    except Exception as exc:  # whatever it is, the parent must hear it rather than an EOF
        message = str(exc).encode()
        sock.sendall(_HEADER.pack(ERROR, len(message)) + message)
        return 3
    _serve(sock, engine)
    return 0
