"""SIGHUP's first half, off the serving path: re-read and validate the configuration, and
load and warm up the models that changed. Nothing running is touched here; the server
swaps the result in (``Pipeline.replace``) only once all of it succeeded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edged.config import RESTART_ONLY, ModelConfig, Settings, load_settings
from edged.runtime import Backend, LoadedModel, load_model

Fingerprint = tuple[ModelConfig, tuple[tuple[int, int] | None, ...]]


def fingerprint(config: ModelConfig) -> Fingerprint:
    """A model's config plus the size and mtime of its files: a model file replaced in
    place under the same name is a changed model."""

    def stat(path: Path | None) -> tuple[int, int] | None:
        if path is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    return config, (stat(config.path), stat(config.labels), stat(config.fallback_model))


@dataclass(frozen=True)
class ReloadPlan:
    settings: Settings
    """The new settings, with the running values of the restart-only sections."""
    models: dict[str, LoadedModel]
    fingerprints: dict[str, Fingerprint]
    loaded: tuple[str, ...]
    """Models loaded and warmed up afresh."""
    restart_needed: tuple[str, ...]
    """Restart-only sections whose new values were not applied."""


def prepare(path: Path, current: Settings, models: dict[str, LoadedModel],
            fingerprints: dict[str, Fingerprint], backend: Backend,
            extend: Callable[[Settings], Settings] | None = None) -> ReloadPlan:
    """Read ``path`` (and ``extend`` what it says, e.g. with the models Frigate uploaded)
    and load what changed. Raises ConfigError or ModelLoadError; the running configuration
    is untouched either way."""
    new = load_settings(path)
    if extend is not None:
        new = extend(new)
    changed = tuple(key for key in RESTART_ONLY if getattr(new, key) != getattr(current, key))
    settings = new.model_copy(update={key: getattr(current, key) for key in changed})
    out: dict[str, LoadedModel] = {}
    prints: dict[str, Fingerprint] = {}
    fresh: list[str] = []
    for name, cfg in settings.models.items():
        prints[name] = fingerprint(cfg)
        if name in models and fingerprints.get(name) == prints[name]:
            out[name] = models[name]
        else:
            out[name] = load_model(name, cfg, backend)  # loads and warms up
            fresh.append(name)
    return ReloadPlan(settings, out, prints, tuple(fresh), changed)
