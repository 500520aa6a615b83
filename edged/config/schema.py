"""The configuration's JSON Schema, generated from the pydantic models.

Editors with the YAML language server complete and check ``edged.yaml`` against it (the
``# yaml-language-server: $schema=`` line in ``systemd/edged.yaml``); ``edged schema``
prints it, and ``docs/edged.schema.json`` is a checked-in copy that a test keeps current.
The schema checks keys, types, bounds and choices; the cross-field rules (a route's model
must exist, ``reconnect_min_s`` not over ``reconnect_max_s``, ...) are ``edged check``'s.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from edged.config.settings import Settings

DIALECT = "https://json-schema.org/draft/2020-12/schema"
TITLE = "edged configuration"
DESCRIPTION = ("The YAML file edged reads (/etc/edged/edged.yaml). Unknown keys are errors. "
               "Generated from edged's configuration models: run `edged schema`.")


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the whole configuration file."""
    generated = Settings.model_json_schema(mode="validation")
    _drop_path_format(generated)
    _add_empty_defaults(Settings, generated["properties"], generated["$defs"], set())
    generated.pop("title", None)
    generated.pop("description", None)
    return {"$schema": DIALECT, "title": TITLE, "description": DESCRIPTION, **generated}


def schema_text() -> str:
    """``json_schema()`` as the text of ``edged.schema.json``: stable, ending in a newline."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def _add_empty_defaults(model: type[BaseModel], properties: dict[str, Any],
                        defs: dict[str, Any], seen: set[str]) -> None:
    # A field with default_factory=list or dict gets no "default" from pydantic, though its
    # default is as plain as any: say it. (Other factories, like device_id's host name,
    # depend on the machine and stay out.)
    seen.add(model.__name__)
    for name, field in model.model_fields.items():
        if field.default_factory in (list, dict, tuple) and "default" not in properties[name]:
            properties[name]["default"] = [] if field.default_factory is tuple else (
                field.default_factory())
        for inner in _models_in(field.annotation):
            if inner.__name__ not in seen and inner.__name__ in defs:
                _add_empty_defaults(inner, defs[inner.__name__]["properties"], defs, seen)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside ``X``, ``X | None``, ``list[X]`` or ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def _drop_path_format(node: Any) -> None:
    # pydantic marks Path fields with "format": "path", which JSON Schema does not define;
    # editors would report it as an unknown format. A path is just a string here.
    if isinstance(node, dict):
        if node.get("format") == "path":
            del node["format"]
        for value in node.values():
            _drop_path_format(value)
    elif isinstance(node, list):
        for item in node:
            _drop_path_format(item)
