"""A runtime whose interpreter never comes back from opening a model."""

from __future__ import annotations

import time
from typing import Any


class Interpreter:
    def __init__(self, model_path: str = "", **_: Any) -> None:
        time.sleep(3600)


def load_delegate(*_: Any, **__: Any) -> Any:
    raise ValueError("no delegates here")
