"""One interpreter owned by one worker thread: write the input, invoke, read the outputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from edged.errors import ModelExecutionError
from edged.runtime.model import LoadedModel


class Session:
    """Not thread-safe, by design: each worker thread owns one."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self._interpreter = model.new_interpreter()
        self._input_index = model.input.index

    def run(self, tensor: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
        """Run one input (already of the input tensor's shape and dtype); return the outputs.

        The input is written through the interpreter's own buffer (no extra copy), and the
        view is dropped before invoke, which refuses to run while one is held.
        """
        try:
            view = self._interpreter.tensor(self._input_index)
            view()[...] = tensor
            del view
            self._interpreter.invoke()
            return [self._interpreter.get_tensor(o.index) for o in self.model.outputs]
        except (RuntimeError, ValueError) as exc:
            raise ModelExecutionError(f"model {self.model.name!r} failed: {exc}") from exc
