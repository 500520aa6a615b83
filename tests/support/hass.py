"""Home Assistant's template rules, as its MQTT integration applies them to a message
(homeassistant/helpers/template.py, ``async_render_with_possible_json_value``, 2025.4):
``value`` is the payload as text, ``value_json`` the payload parsed when it is JSON,
``tojson`` dumps without HTML escaping (HA registers its own), and the output is used as
text. Home Assistant only logs a warning for an undefined variable and leaves the state
unknown; here it raises, so a template that reads a missing key fails the test."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import jinja2

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
_ENV.filters["tojson"] = _ENV.filters["to_json"] = lambda value: json.dumps(value)


def render(template: str, payload: bytes) -> str:
    """``template`` rendered against one MQTT payload. Raises jinja2.UndefinedError."""
    text = payload.decode()
    variables: dict[str, Any] = {"value": text}
    with contextlib.suppress(ValueError):
        variables["value_json"] = json.loads(text)
    return _ENV.from_string(template).render(**variables)


def state_of(config: dict[str, Any], state: dict[str, Any] | bytes) -> str:
    """What Home Assistant takes as the entity's state from a state message."""
    payload = state if isinstance(state, bytes) else json.dumps(state).encode()
    return render(config["value_template"], payload)


def attributes_of(config: dict[str, Any], state: dict[str, Any] | bytes) -> dict[str, Any]:
    """The entity's attributes from a state message: a JSON object, or HA ignores them."""
    payload = state if isinstance(state, bytes) else json.dumps(state).encode()
    found = json.loads(render(config["json_attributes_template"], payload))
    assert isinstance(found, dict), found
    return found
