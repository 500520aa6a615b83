"""Typed errors. A leaf module: it imports nothing from edged.

Only ``edged.cli`` turns these into exit codes and messages.
"""

from __future__ import annotations


class EdgedError(Exception):
    """Base class of every error edged raises on purpose."""


class ConfigError(EdgedError):
    """The configuration file or environment is invalid.

    ``problems`` holds one human-readable line per problem, each naming the key path and,
    where the value came from the YAML file, its line.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class RuntimeUnavailableError(EdgedError):
    """No TFLite runtime (ai-edge-litert or tflite-runtime) can be imported."""


class ModelLoadError(EdgedError):
    """A model file, its labels or its interpreter could not be loaded."""


class MessageError(EdgedError):
    """A message could not be turned into a result. ``reason`` is the machine-readable kind."""

    reason = "error"


class BadInputError(MessageError):
    """The payload cannot be decoded or does not fit the model's input."""

    reason = "bad_input"


class ModelExecutionError(MessageError):
    """The interpreter failed while running a message."""

    reason = "model_error"


class BrokerError(EdgedError):
    """The broker could not be reached, or refused the connection (``edged status``/``top``)."""
