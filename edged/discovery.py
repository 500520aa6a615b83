"""Home Assistant MQTT discovery (pure): one retained config message per route, so each
route shows up in Home Assistant as a sensor of one device, available while edged is.

Home Assistant reads ``{prefix}/sensor/{node}/{object}/config``; an empty retained payload
on the same topic removes the entity. Nothing here talks to the broker: the server publishes
what :func:`discovery_messages` returns once connected, and :func:`removal_messages` for
routes that a reload took away.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from edged import __version__, topics
from edged.config import RouteConfig, Settings
from edged.postprocess import registry
from edged.types import Outbound

# Home Assistant accepts only these in the node and object ids of a discovery topic.
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")

# edged's status topic carries online, offline (the last will) or stopped (a clean
# shutdown). Home Assistant knows one "not available" payload and ignores any other, so
# the template folds every payload but online into offline.
_AVAILABILITY_TEMPLATE = "{{ 'online' if value == 'online' else 'offline' }}"


@dataclass(frozen=True)
class Skipped:
    """A route that gets no discovery config, and why."""

    route: str
    reason: str


@dataclass(frozen=True)
class Plan:
    messages: list[Outbound]
    skipped: list[Skipped]


def node_id(device_id: str) -> str:
    """The device's id in discovery topics and unique ids."""
    return _UNSAFE_ID.sub("_", device_id) or "_"


def config_topic(settings: Settings, route: str) -> str:
    return f"{settings.discovery.prefix}/sensor/{node_id(settings.device_id)}/" \
           f"{_UNSAFE_ID.sub('_', route)}/config"


def status_topic(settings: Settings) -> str:
    """edged's availability topic (the same the MQTT client keeps retained)."""
    prefix = settings.mqtt.topic_prefix
    return f"{prefix}/{topics.safe_level(settings.device_id)}/status"


def plan(settings: Settings) -> Plan:
    """The discovery config of every route that can be a sensor, and the routes that
    cannot. Empty when discovery is not enabled."""
    if not settings.discovery.enabled:
        return Plan([], [])
    messages, skipped = [], []
    for route in settings.routes:
        body = _sensor(settings, route)
        if isinstance(body, Skipped):
            skipped.append(body)
            continue
        payload = json.dumps(body, separators=(",", ":")).encode()
        messages.append(Outbound(config_topic(settings, route.name), payload, qos=1,
                                 retain=True))
    return Plan(messages, skipped)


def discovery_messages(settings: Settings) -> list[Outbound]:
    """The retained config messages to publish on every connect (Home Assistant may have
    restarted and lost them, and republishing a retained config changes nothing)."""
    return plan(settings).messages


def removal_messages(old: Settings, new: Settings) -> list[Outbound]:
    """Empty retained payloads that remove the entities ``old`` announced and ``new`` no
    longer does (a route removed or renamed, discovery turned off, a new prefix)."""
    keep = {m.topic for m in discovery_messages(new)}
    return [Outbound(m.topic, b"", qos=1, retain=True)
            for m in discovery_messages(old) if m.topic not in keep]


def _sensor(settings: Settings, route: RouteConfig) -> dict[str, Any] | Skipped:
    kind = settings.models[route.chain_models[-1] if route.chain else route.model].postprocess
    # What the sensor's state is comes from the decoder: something a person reads at a
    # glance. The whole result goes to the entity's attributes as well.
    decoder = registry.load(kind)
    template = decoder.state_template
    if template is None:
        return Skipped(route.name, f"postprocess {kind} has no single value to show")
    if topics.uses_source(route.publish):
        # One sensor per source topic would need an entity per topic edged has not seen yet.
        return Skipped(route.name, f"its publish topic {route.publish!r} depends on the "
                       "source topic; a sensor needs one fixed state topic")
    node = node_id(settings.device_id)
    values = {"device_id": settings.device_id, "route": route.name, "model": route.model,
              "prefix": settings.mqtt.topic_prefix}
    body: dict[str, Any] = {
        "name": route.name,
        "unique_id": f"edged_{node}_{_UNSAFE_ID.sub('_', route.name)}",
        "state_topic": topics.render(route.publish, values),
        "value_template": template,
        "json_attributes_topic": topics.render(route.publish, values),
        "json_attributes_template": "{{ value_json.result | tojson }}",
        "availability": [{
            "topic": status_topic(settings),
            "payload_available": "online",
            "payload_not_available": "offline",
            "value_template": _AVAILABILITY_TEMPLATE,
        }],
        "qos": route.publish_qos,
        "device": {
            "identifiers": [f"edged_{node}"],
            "name": f"edged {settings.device_id}",
            "manufacturer": "edged",
            "model": "edged inference daemon",
            "sw_version": __version__,
        },
        "origin": {"name": "edged", "sw_version": __version__},
    }
    if decoder.state_class is not None:  # e.g. a count: Home Assistant keeps statistics
        body["state_class"] = decoder.state_class
    return body
