"""Models Frigate's detectors upload (``model_data``), when ``frigate.uploads`` enables it.

An upload is checked as ``edged check`` checks a model, in a child process so that a
hostile or broken file cannot take edged down: it loads, runs once, and its outputs fit a
box decoder. Only then is it kept, in ``uploads.dir`` with a small JSON file beside it
saying which decoder fits, and served from the next reload on; it stays across restarts.
An upload never replaces a model the config names, nor one served under that name.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edged.config import ModelConfig, ServedModel, Settings
from edged.config.frigate import UploadsConfig

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.tflite$")
CHECK_TIMEOUT_S = 20.0
"""Frigate waits 30 s for the answer to an upload: the check, then a reload, fit in it."""
MODEL_PREFIX = "frigate-upload:"


@dataclass(frozen=True)
class Uploaded:
    name: str
    path: Path
    postprocess: str


def model_key(name: str) -> str:
    """The uploaded model's name under ``models``: apart from any the config names."""
    return MODEL_PREFIX + name


def refusal(config: UploadsConfig, served: set[str], name: str, size: int) -> str | None:
    """Why an upload named ``name`` of ``size`` bytes is refused before it is looked at
    (``served``: the names served now)."""
    if not config.enabled:
        return "uploads are off (set frigate.uploads.enabled: true)"
    if not NAME.match(name):
        return "a model name is a file name ending in .tflite (letters, digits, _ . -)"
    if size > config.max_bytes:
        return f"{size} bytes is over frigate.uploads.max_bytes ({config.max_bytes})"
    if name in served:
        return f"{name} is served already: an upload never replaces a served model"
    return None


def stored(config: UploadsConfig) -> list[Uploaded]:
    """The uploads kept in ``config.dir`` that passed their check."""
    if not config.enabled or not config.dir.is_dir():
        return []
    found = []
    for side in sorted(config.dir.glob("*.tflite.json")):
        path = side.with_suffix("")
        try:
            decoder = json.loads(side.read_text())["postprocess"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if path.is_file() and NAME.match(path.name) and decoder in ("detection", "yolo"):
            found.append(Uploaded(path.name, path, decoder))
    return found


def extend(settings: Settings) -> Settings:
    """``settings`` with the kept uploads served, each under its own name (those the
    config serves already are left out)."""
    frigate = settings.frigate
    if frigate is None or not frigate.uploads.enabled:
        return settings
    served = {settings.served_name(m.model, m.name) for m in frigate.models}
    models = dict(settings.models)
    entries = list(frigate.models)
    for up in stored(frigate.uploads):
        if up.name in served or model_key(up.name) in models:
            continue
        models[model_key(up.name)] = ModelConfig(path=up.path, postprocess=up.postprocess)
        entries.append(ServedModel(model=model_key(up.name), name=up.name,
                                   labelmap=frigate.uploads.labelmap))
    if len(entries) == len(frigate.models):
        return settings
    return settings.model_copy(update={
        "models": models, "frigate": frigate.model_copy(update={"models": entries})})


def keep(config: UploadsConfig, name: str, data: bytes, model_type: str | None) -> Uploaded:
    """Write, check in a child process and keep an upload. Raises ValueError saying why
    it was not kept (the file is removed then)."""
    config.dir.mkdir(parents=True, exist_ok=True)
    part = config.dir / f".{name}.part"
    part.write_bytes(data)
    try:
        candidates: list[str] = ([config.postprocess] if config.postprocess else
                      ["yolo", "detection"] if model_type in ("yologeneric", "yolox", "yolonas")
                      else ["detection", "yolo"])
        decoder = check(part, candidates)
        path = config.dir / name
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    (config.dir / f"{name}.json").write_text(json.dumps({"postprocess": decoder}))
    return Uploaded(name, path, decoder)


def check(path: Path, candidates: list[str]) -> str:
    """The first of ``candidates`` (decoders) the model at ``path`` loads, runs and fits
    with, found in a child process. Raises ValueError with what the child said."""
    cmd = [sys.executable, "-m", "edged.frigate.uploads", str(path), *candidates]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise ValueError(f"the check did not finish within {CHECK_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        lines = (done.stdout + done.stderr).strip().splitlines()
        why = lines[-1] if lines else f"the check died (exit status {done.returncode})"
        raise ValueError(why[:500])
    return done.stdout.strip().splitlines()[-1]


def main(argv: list[str]) -> int:
    """The child: load and warm up the model with each decoder in turn (load_model runs it
    once and binds the decoder); print the first that fits."""
    from edged.errors import EdgedError
    from edged.runtime import load_model, select_backend

    path, candidates = Path(argv[0]), argv[1:]
    backend = select_backend()
    problems = []
    for decoder in candidates:
        try:
            load_model("upload", ModelConfig(path=path, postprocess=decoder), backend)
        except (EdgedError, ValueError) as exc:
            problems.append(f"{decoder}: {exc}")
            continue
        print(decoder)
        return 0
    print("; ".join(problems) or "no decoder to try")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
