"""Which TFLite runtime runs on this box, found by trying each where a crash cannot hurt.

A runtime's wheel can import and still die in native code on a CPU it was not built or
tested for: ai-edge-litert is reported to stop with SIGILL on some arm64 boards, and it
dies with SIGSEGV under qemu-user (docs/packaging.md). A crash in native code cannot be
caught in the process it happens in, so when the choice is open (more than one runtime
installed, as the .deb ships them) each runtime, fastest first, loads a small bundled
model in a throw-away child process and classifies three known digits; the first that
gets them right is used, and each one that did not is reported with why.

The same child process opens a model file for tflite-runtime, which does not verify
flatbuffers and crashes on a corrupt one (``edged.runtime.model``).
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edged.errors import RuntimeUnavailableError
from edged.runtime.backend import CANDIDATES, Backend, import_backend

PROBE_MODEL = Path(__file__).with_name("probe_digits_int8.tflite")
"""models/digits_int8.tflite: a small CNN (convolutions, then FULLY_CONNECTED, where
LiteRT's CPU detection runs) that classifies 8x8 uint8 digits."""
SAMPLES: tuple[tuple[int, str], ...] = (
    # (label, the 64 input bytes) from models/digits_holdout.npz, quantized by the model's
    # input scale (1/255); both runtimes classify each with full confidence.
    (7, "000020cfff8f00000000bfbf70ff30000010df3000ff4000000000409fff6000"
        "000000cfffff8f0000000050cf100000000000af8f000000000010ff40000000"),
    (6, "000040df6000000000009fef200000000000ffaf000000000000cfaf00000000"
        "0030ffbf7f3000000020ffdf7fbf8f000000ffcf40bfbf00000060efffbf1000"),
    (3, "000060dfffff20000050ffcfafff000000007020efbf000000000070ffcf1000"
        "0000000060ef9f000000000000ef8f00000030af7fff6000000070ffff7f0000"),
)
# Starting Python and importing NumPy and the runtime: under a second on a Pi, a minute
# or more under emulation. Past this the runtime is taken as hung.
PROBE_TIMEOUT_S = 300.0

# The child: open the model (and, given inputs on stdin, run each and print the arg max of
# each output). Kept free of edged's imports so that it tests the runtime alone.
_CHILD = """\
import sys, json
from importlib import import_module
interpreter = import_module(sys.argv[1]).Interpreter(model_path=sys.argv[2], num_threads=1)
interpreter.allocate_tensors()
if len(sys.argv) > 3:
    import numpy as np
    tensor = interpreter.get_input_details()[0]
    output = interpreter.get_output_details()[0]
    data, size = sys.stdin.buffer.read(), int(np.prod(tensor["shape"]))
    answers = []
    for start in range(0, len(data), size):
        sample = np.frombuffer(data[start:start + size], tensor["dtype"])
        interpreter.set_tensor(tensor["index"], sample.reshape(tensor["shape"]))
        interpreter.invoke()
        answers.append(int(interpreter.get_tensor(output["index"]).argmax()))
    print(json.dumps(answers))
"""


@dataclass(frozen=True)
class ChildOutcome:
    """How a child that opened (and maybe ran) a model ended."""

    returncode: int | None
    """None: it was killed after the timeout."""
    stdout: str
    error: str
    """The last line the child wrote to stderr (a Python exception's message)."""

    @property
    def signal_name(self) -> str | None:
        """The signal that ended it (SIGSEGV, SIGILL, SIGABRT...), if one did."""
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"


def run_in_child(module: str, model: Path, inputs: bytes | None = None,
                 timeout_s: float = PROBE_TIMEOUT_S) -> ChildOutcome:
    """Open ``model`` with ``module``'s Interpreter in a fresh Python; with ``inputs``, also
    run each input-sized slice of them and print the arg max of the first output."""
    argv = [sys.executable, "-c", _CHILD, module, str(model)]
    if inputs is not None:
        argv.append("invoke")
    try:
        done = subprocess.run(argv, input=inputs or b"", capture_output=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return ChildOutcome(None, "", f"no answer within {timeout_s:.0f} s")
    lines = [x for x in done.stderr.decode("utf-8", "replace").splitlines() if x.strip()]
    return ChildOutcome(done.returncode, done.stdout.decode("utf-8", "replace"),
                        lines[-1].strip() if lines else "")


@dataclass(frozen=True)
class Attempt:
    """One runtime tried by the probe."""

    runtime: str
    """Its distribution name and version, e.g. ``ai-edge-litert 2.3.0``."""
    ok: bool
    detail: str


@dataclass(frozen=True)
class Choice:
    """The runtime edged uses, and how it was chosen."""

    backend: Backend
    how: str
    attempts: tuple[Attempt, ...] = ()
    """Empty when nothing was probed (one runtime installed)."""

    @property
    def fell_back(self) -> bool:
        return any(not a.ok for a in self.attempts)

    def lines(self) -> list[str]:
        """What ``edged check`` prints: the runtime, then one line per runtime tried."""
        head = f"runtime  {self.backend.describe()} ({self.how})"
        return [head, *(f"probe    {a.runtime}: {a.detail}" for a in self.attempts)]


def probe(dist: str, module: str, model: Path = PROBE_MODEL,
          samples: tuple[tuple[int, str], ...] = SAMPLES,
          timeout_s: float = PROBE_TIMEOUT_S) -> Attempt:
    """Try one runtime on the bundled model in a child process."""
    name = f"{dist} {_version(dist)}"
    started = time.monotonic()
    outcome = run_in_child(module, model, b"".join(bytes.fromhex(s) for _, s in samples),
                           timeout_s)
    ms = (time.monotonic() - started) * 1000
    if outcome.returncode is None:
        return Attempt(name, False, f"hung loading or running the probe model: "
                                    f"{outcome.error}; child process killed")
    if outcome.signal_name:
        return Attempt(name, False, f"crashed ({outcome.signal_name}) loading or running the "
                                    "probe model")
    if outcome.returncode != 0:
        return Attempt(name, False, f"failed on the probe model: "
                                    f"{outcome.error or f'exit status {outcome.returncode}'}")
    try:
        answers = json.loads(outcome.stdout)
    except ValueError:
        answers = None
    expected = [label for label, _ in samples]
    if answers != expected:
        return Attempt(name, False, f"ran the probe model but answered {answers} where "
                                    f"{expected} is right")
    return Attempt(name, True, f"loaded the probe model and classified {len(samples)} "
                               f"digits right in a child process ({ms:.0f} ms)")


def choose_backend(prefer: str | None = None,
                   candidates: tuple[tuple[str, str], ...] = CANDIDATES) -> Choice:
    """The runtime to use: ``prefer`` if given, else the fastest installed one that passes
    the probe. Raises RuntimeUnavailableError saying what was tried and why it failed."""
    known = [dist for dist, _ in candidates]
    if prefer is not None and prefer not in known:
        raise RuntimeUnavailableError(
            f"unknown TFLite runtime {prefer!r}; known: {', '.join(known)}")
    installed = [(d, m) for d, m in candidates if _installed(m)]
    if len(installed) < 2:
        # No choice to make, and so nothing to fall back to: the import says what is
        # missing, and the one runtime is used as it is.
        pool = [(d, m) for d, m in candidates if prefer in (None, d)]
        backend = import_backend(pool)
        how = "asked for with --runtime" if prefer else "the only runtime installed"
        return Choice(backend, how)
    if prefer is not None:
        attempt = probe(prefer, dict(candidates)[prefer])
        if not attempt.ok:
            raise RuntimeUnavailableError(
                f"{attempt.runtime}, asked for with --runtime, does not run on this box: "
                f"{attempt.detail}")
        return Choice(import_backend([(prefer, dict(candidates)[prefer])]),
                      "asked for with --runtime; passed the probe", (attempt,))
    attempts: list[Attempt] = []
    for dist, module in installed:
        attempt = probe(dist, module)
        attempts.append(attempt)
        if attempt.ok:
            how = ("the fastest installed, passed the probe" if len(attempts) == 1 else
                   "fallen back to: the faster runtime failed the probe")
            return Choice(import_backend([(dist, module)]), how, tuple(attempts))
    raise RuntimeUnavailableError(
        "no installed TFLite runtime runs on this box: "
        + "; ".join(f"{a.runtime} {a.detail}" for a in attempts))


def _installed(module: str) -> bool:
    # The top-level package only: finding a submodule would import its parent, and with it
    # the native library this probe keeps out of the process.
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "(version unknown)"
