"""Which engine each worker runs a model on: the accelerator it was configured for, and the
CPU interpreter it falls back to when that accelerator is missing or fails.

Everything here is plain data decided from the config and the model file; nothing is
loaded. ``edged.runtime.engine`` turns a spec into an interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edged.config import ModelConfig
from edged.errors import ModelLoadError
from edged.runtime import edgetpu

DEFAULT_LIBRARIES = {"edgetpu": edgetpu.DEFAULT_LIBRARY, "gpu": "libtensorflowlite_gpu_delegate.so"}


class DelegateError(ModelLoadError):
    """A delegate library could not be loaded or refused the model."""


@dataclass(frozen=True)
class DelegateSpec:
    """A delegate to load with the runtime's ``load_delegate(library, options)``."""

    kind: str  # edgetpu | gpu | external
    library: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        if self.kind == "edgetpu":
            device = dict(self.options).get("device", "")
            return f"edgetpu:{device or 'any'}"
        return f"{self.kind}:{self.library}"

    def describe(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options) or "no options"
        return f"{self.library} ({opts})"


@dataclass(frozen=True)
class EngineSpec:
    """One interpreter: a model file, CPU threads, an optional delegate, where it runs."""

    model_path: Path
    num_threads: int
    delegate: DelegateSpec | None = None
    isolation: str = "thread"
    role: str = "primary"  # primary | fallback
    input_shape: tuple[int, ...] | None = None
    """Resize a dynamic input to this before allocating (``input_shape`` in the config)."""

    @property
    def name(self) -> str:
        """What stats call this backend: ``cpu``, ``edgetpu:usb:0``, ``external:/x.so``."""
        return self.delegate.label if self.delegate else "cpu"

    @property
    def accelerated(self) -> bool:
        return self.delegate is not None


@dataclass(frozen=True)
class Plan:
    """A model's engines: one primary per configured device, and the shared fallback."""

    primaries: tuple[EngineSpec, ...]
    fallback: EngineSpec | None
    compiled_for_edgetpu: bool

    def primary(self, worker: int) -> EngineSpec:
        """The primary engine of worker ``worker``: devices are dealt out round-robin."""
        return self.primaries[worker % len(self.primaries)]

    def describe(self) -> str:
        names = ", ".join(sorted({p.name for p in self.primaries}))
        isolation = self.primaries[0].isolation
        where = " in child processes" if isolation == "process" and self.primaries[0].delegate \
            else ""
        if self.fallback is None:
            back = "no fallback" if self.primaries[0].accelerated else ""
        else:
            back = f"fallback cpu ({self.fallback.model_path.name})"
        return ", ".join(p for p in (names + where, back) if p)


def plan_for(name: str, config: ModelConfig) -> Plan:
    """Decide the engines of model ``name`` from its config and what its file contains."""
    try:
        compiled = edgetpu.compiled_for_edgetpu(config.path)
    except edgetpu.FlatbufferError as exc:
        raise ModelLoadError(f"model {name!r}: {config.path} is not a valid TFLite "
                             f"flatbuffer: {exc}") from exc
    kind = config.delegate
    if kind == "auto":
        kind = "edgetpu" if compiled else "cpu"
    if kind == "cpu" and compiled:
        raise ModelLoadError(
            f"model {name!r}: {config.path} is compiled for the Edge TPU (it contains "
            f"{edgetpu.EDGETPU_CUSTOM_OP}) and cannot run on the CPU; set delegate: edgetpu, "
            "or point path at the model as it was before edgetpu_compiler"
        )
    primaries = tuple(
        EngineSpec(config.path, config.num_threads, delegate, config.isolation,
                   input_shape=config.input_shape)
        for delegate in _delegates(kind, config)
    )
    return Plan(primaries, _fallback(config, kind, compiled), compiled)


def _delegates(kind: str, config: ModelConfig) -> list[DelegateSpec | None]:
    if kind == "cpu":
        return [None]
    library = config.library or DEFAULT_LIBRARIES.get(kind, "")
    options = tuple(sorted(config.options.items()))
    if kind != "edgetpu":
        return [DelegateSpec(kind, library, options)]
    return [
        DelegateSpec(kind, library, (("device", device), *options))
        for device in (config.devices or [config.device])
    ]


def _fallback(config: ModelConfig, kind: str, compiled: bool) -> EngineSpec | None:
    if kind == "cpu" or not config.fallback:
        return None
    if config.fallback_model is not None:
        return EngineSpec(config.fallback_model, config.num_threads, role="fallback",
                          input_shape=config.input_shape)
    if compiled:  # the TPU program cannot run anywhere else
        return None
    return EngineSpec(config.path, config.num_threads, role="fallback",
                      input_shape=config.input_shape)

