"""Load a .tflite model once: check it, read its tensors and labels, time a warm-up invoke."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from edged.config import ModelConfig
from edged.errors import ModelLoadError
from edged.runtime.backend import Backend
from edged.runtime.delegates import DelegateError, EngineSpec, Plan, plan_for
from edged.runtime.engine import Engine, EngineFailure, check_compatible, new_interpreter
from edged.runtime.isolation import start_engine
from edged.runtime.probe import run_in_child
from edged.runtime.tensors import TensorSpec

__all__ = ["LoadedModel", "TensorSpec", "load_model", "make_engine"]
log = structlog.get_logger("edged.runtime")

TFLITE_MAGIC = b"TFL3"
# tflite-runtime 2.14 does not verify the flatbuffer: a truncated or corrupt file crashes
# the process with SIGSEGV. With it, a model is opened in a throw-away child process first.
UNVERIFIED_RUNTIMES = frozenset({"tflite-runtime"})


INLINE_MAX_MS = 0.3


@dataclass(frozen=True)
class LoadedModel:
    """A model that loaded, ran once, and is ready for worker sessions."""

    name: str
    config: ModelConfig
    backend: Backend
    input: TensorSpec
    outputs: tuple[TensorSpec, ...]
    labels: tuple[str, ...]
    warmup_ms: float
    plan: Plan | None = None
    """Which engines workers use; None means the CPU, as ``plan_for`` would decide."""
    startup_failures: dict[str, str] = field(default_factory=dict)
    """Accelerators (by engine name) that failed at load: their workers start on the
    fallback and retry in the background instead of failing again first."""
    typical_ms: float = -1.0
    """The median of a few invokes after the first (which is slower); unset: ``warmup_ms``."""
    decoder: str = ""
    """Why the configured post-processing fits the outputs (``edged check`` shows it)."""
    _workers: Iterator[int] = field(default_factory=itertools.count, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.plan is None:  # built by hand (tests): the CPU, no fallback
            spec = EngineSpec(self.config.path, self.config.num_threads,
                              input_shape=self.config.input_shape)
            object.__setattr__(self, "plan", Plan((spec,), None, False))
        if self.typical_ms < 0:
            object.__setattr__(self, "typical_ms", self.warmup_ms)

    @property
    def accelerated(self) -> bool:
        """Whether the model's invokes run on an accelerator (a delegate), off the CPU."""
        return any(spec.accelerated for spec in self.engines.primaries)

    @property
    def inline(self) -> bool:
        """Whether messages run on the MQTT thread (see ``ModelConfig.inline``): a hand-over
        to a worker thread costs more CPU than a model of microseconds."""
        if self.config.inline is not None:
            return self.config.inline
        return (self.typical_ms < INLINE_MAX_MS and self.config.isolation == "thread"
                and not self.accelerated)

    @property
    def engines(self) -> Plan:
        assert self.plan is not None  # set in __post_init__
        return self.plan

    def next_worker(self) -> int:
        """Worker numbers in creation order: they deal out ``devices`` round-robin."""
        return next(self._workers)

    def new_interpreter(self) -> Any:
        """A fresh CPU interpreter of the model (its fallback model, if it has one)."""
        spec = self.engines.fallback or self.engines.primaries[0]
        return _interpreter(self.backend, replace(spec, delegate=None))


def make_engine(model: LoadedModel, spec: EngineSpec) -> Engine:
    """Start ``spec`` for ``model``; raise ModelLoadError unless its tensors match."""
    engine = start_engine(model.backend, spec, model.config.invoke_timeout_ms)
    try:
        check_compatible(engine, model.input, model.outputs)
    except ValueError as exc:
        engine.close()
        raise ModelLoadError(f"model {model.name!r}: {spec.model_path} on {spec.name}: "
                             f"{exc}") from exc
    return engine


def load_model(name: str, config: ModelConfig, backend: Backend) -> LoadedModel:
    """Load, inspect and warm up the model and its fallback, trying its accelerator(s).

    Raises ModelLoadError (DelegateError for an accelerator with no fallback) saying what
    is wrong and what to check.
    """
    _check_file(name, config.path)
    if config.fallback_model is not None:
        _check_file(name, config.fallback_model)
    plan = plan_for(name, config)
    if backend.name in UNVERIFIED_RUNTIMES:
        for path in _cpu_paths(plan):
            _probe_in_child(name, path, backend)
    labels = _read_labels(name, config.labels)
    primary, warmup_ms, failures = _open_primaries(name, plan, backend, config)
    fallback = _open(name, backend, plan.fallback, None) if plan.fallback else None
    try:
        reference = primary or fallback
        if reference is None:
            raise DelegateError(_no_engine(name, plan, failures))
        if primary is None:
            warmup_ms = _warm_up(name, reference)
        elif fallback is not None:
            _check_fallback(name, fallback, primary)
        spec_in, spec_out = reference.input, reference.outputs
        typical_ms = _typical_ms(reference)
        decoder = _check_decoder(name, config, spec_out, labels, spec_in)
    finally:
        for engine in (primary, fallback):
            if engine is not None:
                engine.close()
    for backend_name, why in failures.items():
        log.warning("accelerator unavailable at start; serving from the fallback",
                    model=name, backend=backend_name, reason=why)
    return LoadedModel(name, config, backend, spec_in, spec_out, labels, warmup_ms, plan,
                       failures, typical_ms, decoder)


def _open(name: str, backend: Backend, spec: EngineSpec, timeout_ms: int | None) -> Engine:
    try:
        return start_engine(backend, spec, timeout_ms)
    except ModelLoadError as exc:
        role = "fallback model" if spec.role == "fallback" else "model"
        raise type(exc)(f"{role} {name!r}: {exc}") from exc


def _open_primaries(name: str, plan: Plan, backend: Backend,
                    config: ModelConfig) -> tuple[Engine | None, float, dict[str, str]]:
    """Start every distinct primary once. An accelerator that fails is noted, not fatal."""
    failures: dict[str, str] = {}
    kept: Engine | None = None
    warmup_ms = 0.0
    for spec in {s.name: s for s in plan.primaries}.values():
        try:
            engine = _open(name, backend, spec, config.invoke_timeout_ms)
            ms = _warm_up(name, engine)
        except DelegateError as exc:
            failures[spec.name] = str(exc)
            continue
        except ModelLoadError as exc:
            if not spec.accelerated:
                raise
            failures[spec.name] = str(exc)
            continue
        if kept is None:
            kept, warmup_ms = engine, ms
        else:
            engine.close()
    return kept, warmup_ms, failures


def _warm_up(name: str, engine: Engine) -> float:
    started = time.perf_counter()
    try:
        engine.run(np.zeros(engine.input.shape, engine.input.dtype))
    except EngineFailure as exc:
        engine.close()
        raise ModelLoadError(f"model {name!r} fails to run on {engine.name}: {exc}") from exc
    return (time.perf_counter() - started) * 1000


def _typical_ms(engine: Engine, runs: int = 7, budget_s: float = 0.2) -> float:
    """The median of up to ``runs`` invokes, within ``budget_s``: what a message costs once
    the model is warm."""
    tensor = np.zeros(engine.input.shape, engine.input.dtype)
    times: list[float] = []
    end = time.perf_counter() + budget_s
    while len(times) < runs and time.perf_counter() < end:
        started = time.perf_counter()
        try:
            engine.run(tensor)
        except EngineFailure:
            break
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)[len(times) // 2] if times else float("inf")


def _check_fallback(name: str, fallback: Engine, primary: Engine) -> None:
    try:
        check_compatible(fallback, primary.input, primary.outputs)
    except ValueError as exc:
        raise ModelLoadError(f"model {name!r}: the fallback cannot stand in for "
                             f"{primary.name}: {exc}") from exc


def _no_engine(name: str, plan: Plan, failures: dict[str, str]) -> str:
    why = "; ".join(failures.values()) or "no accelerator could be used"
    if plan.compiled_for_edgetpu:
        return (f"model {name!r}: {plan.primaries[0].model_path} is compiled for the Edge TPU "
                f"and cannot run without one. {why}. To serve from the CPU meanwhile, set "
                "fallback_model to the model as it was before edgetpu_compiler")
    return f"model {name!r}: {why} (and fallback is off)"


def _cpu_paths(plan: Plan) -> list[Path]:
    """Model files the CPU can open by themselves (a TPU-compiled file cannot)."""
    paths = [] if plan.compiled_for_edgetpu else [plan.primaries[0].model_path]
    if plan.fallback is not None:
        paths.append(plan.fallback.model_path)
    return list(dict.fromkeys(paths))


def _check_file(name: str, path: Path) -> None:
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ModelLoadError(f"model {name!r}: cannot read {path}: {exc.strerror or exc}") from exc
    if head[4:8] != TFLITE_MAGIC:
        raise ModelLoadError(f"model {name!r}: {path} is not a TFLite flatbuffer (no TFL3 mark)")


def _probe_in_child(name: str, path: Path, backend: Backend) -> None:
    done = run_in_child(backend.interpreter_class.__module__, path)
    if done.returncode is None:
        raise ModelLoadError(f"model {name!r}: loading {path}: {done.error}")
    if done.signal_name:
        raise ModelLoadError(
            f"model {name!r}: {backend.describe()} crashed ({done.signal_name}) opening "
            f"{path}; the file is truncated or corrupt"
        )
    if done.returncode != 0:
        raise ModelLoadError(
            f"{backend.describe()} cannot load {path}: {done.error or 'unknown error'}"
        )


def _interpreter(backend: Backend, spec: EngineSpec) -> Any:
    try:
        return new_interpreter(backend, spec)
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            f"{backend.describe()} cannot load {spec.model_path}: {str(exc).strip()}"
        ) from exc


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


def _check_decoder(name: str, config: ModelConfig, outputs: tuple[TensorSpec, ...],
                   labels: tuple[str, ...], spec_in: TensorSpec) -> str:
    """Bind the configured decoder once, so outputs that do not fit it fail at load with
    what it expected, not on the first message."""
    from edged.postprocess import registry  # decoders import runtime modules: import late

    try:
        return registry.bind_model(config, outputs, labels, spec_in).why
    except ValueError as exc:
        raise ModelLoadError(f"model {name!r}: postprocess {config.postprocess}: {exc}") from exc
