"""structlog set-up: human-readable on a terminal, JSON lines otherwise (and under systemd)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def wants_json(fmt: str) -> bool:
    if fmt != "auto":
        return fmt == "json"
    # journald sets JOURNAL_STREAM for a unit's stdout/stderr.
    return bool(os.environ.get("JOURNAL_STREAM")) or not sys.stderr.isatty()


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog (and the stdlib loggers of libraries) to write to stderr."""
    renderer: Any
    if wants_json(fmt):
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info if wants_json(fmt) else _identity,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(_LEVELS[level], logging.WARNING), stream=sys.stderr)


def _identity(logger: Any, name: str, event: Any) -> Any:
    return event
