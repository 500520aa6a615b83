"""TFLite's own INFO lines kept out of edged's output.

LiteRT's C++ logger writes ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``
straight to file descriptor 2 the first time a process allocates an interpreter's tensors.
It is not a log line of edged's (not JSON under systemd, no level a reader can filter on),
``TF_CPP_MIN_LOG_LEVEL`` does not reach that logger, and ai-edge-litert exports no call to
quiet it. So while an interpreter is made, descriptor 2 points at a temporary file; after,
its INFO lines are dropped and anything else (a WARNING or ERROR of TFLite's, or a line
another thread wrote meanwhile) is written to the real stderr, in order.

The logger says it once per process: once an INFO line has been dropped, interpreters are
made with stderr as it is. Interpreters with a delegate are never wrapped: a library such as
libedgetpu may abort the process while the graph is handed to it, and what it wrote last
must reach the journal.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_STDERR = 2
_lock = threading.Lock()
_said = threading.Event()  # TFLite has said its INFO line in this process


def keep(line: bytes) -> bool:
    """Whether a line TFLite (or anything else) wrote while an interpreter was made stays."""
    return not line.startswith(b"INFO: ")


@contextmanager
def quiet() -> Iterator[None]:
    """Run the body with descriptor 2 captured; pass on what it wrote but TFLite's INFO."""
    if _said.is_set():
        yield
        return
    with _lock, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(_STDERR)
        try:
            os.dup2(capture.fileno(), _STDERR)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, _STDERR)
        finally:
            os.close(saved)
            capture.seek(0)
            lines = capture.readlines()
            kept = memoryview(b"".join(line for line in lines if keep(line)))
            if len(kept) < sum(map(len, lines)):
                _said.set()
            while kept:
                kept = kept[os.write(_STDERR, kept):]
