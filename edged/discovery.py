"""Home Assistant MQTT discovery (pure): what each entity's config and state messages are.

A route whose subscription has no wildcards is one entity of the box's device. A route on
``sensors/+/vibration`` gets an entity per source: the levels under its wildcards name the
source (``pump-7``), which becomes a device of its own (``edged pump-7``, via the box), so
its entity shows as ``edged pump-7 bearing``. The platform and the state come from the
decoder (:mod:`edged.postprocess.entity`).

Each entity reads its own state topic, ``{topic_prefix}/{device_id}/ha/{route}[/{source}]``,
where edged publishes a small summary of the source's latest result (retained, except the
events of a wake word): never the route's own topic, which may mix sources, carry masks or
go quiet while nothing changes. Home Assistant reads configs on
``{prefix}/{platform}/{node}/{object}/config``; an empty retained payload there removes the
entity (https://www.home-assistant.io/integrations/mqtt/#discovery-messages). Nothing here
talks to the broker: :mod:`edged.entities` decides when to publish what.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from edged import __version__, results, topics
from edged.config import RouteConfig, Settings
from edged.postprocess import registry
from edged.postprocess.entity import EntityView
from edged.types import Outbound

# Home Assistant accepts only these in the node and object ids of a discovery topic.
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")
STATE_LEVEL = "ha"
"""The level under edged's device topic that holds the entities' state topics."""

# edged's status topic carries online, offline (the last will) or stopped (a clean
# shutdown). Home Assistant knows one "not available" payload and ignores any other, so
# the template folds every payload but online into offline.
_AVAILABILITY_TEMPLATE = "{{ 'online' if value == 'online' else 'offline' }}"
ATTRIBUTES_TEMPLATE = "{{ value_json.result | tojson }}"


@dataclass(frozen=True)
class Skipped:
    """A route that gets no entity, and why."""

    route: str
    reason: str


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity: a route's, or one source's of a wildcard route."""

    route: str
    source: str | None
    """The levels under the subscription's wildcards, joined by ``/``; None: the route
    has none and so one entity."""
    view: EntityView
    config_topic: str
    state_topic: str

    @property
    def retained(self) -> bool:
        """States are retained, so a Home Assistant that starts later finds them; an event
        is not: retained, it would fire again on every restart of Home Assistant."""
        return self.view.platform != "event"


def node_id(device_id: str) -> str:
    """The device's id in discovery topics and unique ids."""
    return _UNSAFE_ID.sub("_", device_id) or "_"


def object_id(text: str) -> str:
    return _UNSAFE_ID.sub("_", text) or "_"


def status_topic(settings: Settings) -> str:
    """edged's availability topic (the same the MQTT client keeps retained)."""
    prefix = settings.mqtt.topic_prefix
    return f"{prefix}/{topics.safe_level(settings.device_id)}/status"


def source_levels(subscribe: str, topic: str) -> tuple[str, ...] | None:
    """The levels of ``topic`` under the wildcards of ``subscribe`` (``$share/G/`` left
    out); None when the filter has no wildcard."""
    if subscribe.startswith(topics.SHARE_PREFIX):
        subscribe = subscribe.split("/", 2)[2]
    pattern = subscribe.split("/")
    if "+" not in pattern and "#" not in pattern:
        return None
    levels = topic.split("/")
    out: list[str] = []
    for i, part in enumerate(pattern):
        if part == "#":
            out.extend(levels[i:])
            break
        if part == "+" and i < len(levels):
            out.append(levels[i])
    return tuple(out)


class Catalog:
    """The entities a configuration announces and the messages that make them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = settings.discovery
        self.node = node_id(settings.device_id)
        self.device_topic = (f"{settings.mqtt.topic_prefix}/"
                             f"{topics.safe_level(settings.device_id)}")
        self.state_root = f"{self.device_topic}/{STATE_LEVEL}/"
        """Every entity's state topic starts so; no other topic of edged's does."""
        self.routes: dict[str, tuple[RouteConfig, EntityView]] = {}
        self.skipped: list[Skipped] = []
        if not self.config.enabled:
            return
        for route in settings.routes:
            kind = settings.models[route.chain_models[-1] if route.chain
                                   else route.model].postprocess
            view = registry.load(kind).entity
            if view is None:
                self.skipped.append(Skipped(route.name, f"postprocess {kind} has no "
                                                        "single value to show"))
            else:
                self.routes[route.name] = (route, view)
        self._by_level = {topics.safe_level(name): name for name in self.routes}

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def config_filter(self) -> str:
        """Every config of this box, edged's own from before a restart among them."""
        return f"{self.config.prefix}/+/{self.node}/+/config"

    # entities

    def fixed(self) -> list[Entity]:
        """The entities of routes without wildcards: known from the start."""
        return [self.entity(name, None) for name, (route, _) in self.routes.items()
                if source_levels(route.subscribe, "") is None]

    def source_of(self, route: str, topic: str) -> str | None:
        """The source a message of ``route`` on ``topic`` came from (None: the route has
        one entity). Raises KeyError for a route without an entity."""
        levels = source_levels(self.routes[route][0].subscribe, topic)
        return None if levels is None else "/".join(levels)

    def entity(self, route: str, source: str | None) -> Entity:
        view = self.routes[route][1]
        state = self.state_root + topics.safe_level(route)
        name = route
        if source is not None:
            state += "/" + "/".join(topics.safe_level(level) for level in source.split("/"))
            name = f"{route}_{source}"
        topic = f"{self.config.prefix}/{view.platform}/{self.node}/{object_id(name)}/config"
        return Entity(route, source, view, topic, state)

    def from_state_topic(self, state_topic: str) -> tuple[str, str | None] | None:
        """(route, source) of an entity edged would announce with this state topic; None
        for any other (a route since removed, an older edged's layout)."""
        if not state_topic.startswith(self.state_root):
            return None
        level, _, rest = state_topic[len(self.state_root):].partition("/")
        route = self._by_level.get(level)
        if route is None:
            return None
        wildcards = source_levels(self.routes[route][0].subscribe, "") is not None
        if wildcards != bool(rest):
            return None
        return route, (rest or None)

    # messages

    def config_message(self, entity: Entity) -> Outbound:
        body = json.dumps(self.config_body(entity), separators=(",", ":")).encode()
        return Outbound(entity.config_topic, body, qos=1, retain=True)

    def config_body(self, entity: Entity) -> dict[str, Any]:
        route, view = self.routes[entity.route]
        body: dict[str, Any] = {
            "name": route.name,
            "unique_id": f"edged_{self.node}_{entity.config_topic.split('/')[-2]}",
            "state_topic": entity.state_topic,
            "availability": [self._availability()],
            "qos": 1,
            "device": self._device(entity.source),
            "origin": {"name": "edged", "sw_version": __version__},
        }
        if view.platform == "event":
            # The payload carries event_type; its other keys become the event's attributes.
            body["event_types"] = [self._phrase(route)]
            return body
        body["value_template"] = view.template()
        body["json_attributes_topic"] = entity.state_topic
        body["json_attributes_template"] = ATTRIBUTES_TEMPLATE
        if view.platform == "binary_sensor":
            body.update(device_class="problem", payload_on="anomalous", payload_off="normal")
        if view.state_class is not None:  # a count: Home Assistant keeps statistics
            body["state_class"] = view.state_class
        return body

    def state_message(self, entity: Entity, summary: dict[str, Any], topic: str | None,
                      received_wall: float | None) -> Outbound:
        """The entity's state: the summary of the source's latest result, where it came
        from and when."""
        body: dict[str, Any] = {
            "route": entity.route,
            "topic": topic,
            "received_at": None if received_wall is None else results.iso_utc(received_wall),
            "result": summary,
        }
        if entity.view.platform == "event":
            body = {"event_type": summary.get(entity.view.state_key), **body}
        return Outbound(entity.state_topic, results.encode(body), qos=1,
                        retain=entity.retained)

    def unknown_message(self, entity: Entity) -> Outbound:
        """A state edged does not hold: Home Assistant shows it as unknown."""
        return self.state_message(entity, entity.view.unknown(), None, None)

    @staticmethod
    def removal(config_topic: str, state_topic: str | None) -> list[Outbound]:
        """Empty retained payloads: the entity goes, and its old state with it."""
        out = [Outbound(config_topic, b"", qos=1, retain=True)]
        if state_topic is not None:
            out.append(Outbound(state_topic, b"", qos=1, retain=True))
        return out

    def box_message(self) -> Outbound:
        """The box itself: connected while edged is online (its device every source's
        device hangs from)."""
        body = {
            "name": "online",
            "unique_id": f"edged_{self.node}_online",
            "device_class": "connectivity",
            "state_topic": status_topic(self.settings),
            "value_template": _AVAILABILITY_TEMPLATE,
            "payload_on": "online",
            "payload_off": "offline",
            "qos": 1,
            "device": self._device(None),
            "origin": {"name": "edged", "sw_version": __version__},
        }
        topic = f"{self.config.prefix}/binary_sensor/{self.node}/online/config"
        return Outbound(topic, json.dumps(body, separators=(",", ":")).encode(), qos=1,
                        retain=True)

    def _availability(self) -> dict[str, str]:
        return {"topic": status_topic(self.settings), "payload_available": "online",
                "payload_not_available": "offline", "value_template": _AVAILABILITY_TEMPLATE}

    def _device(self, source: str | None) -> dict[str, Any]:
        box = f"edged_{self.node}"
        if source is None:
            return {"identifiers": [box], "name": f"edged {self.settings.device_id}",
                    "manufacturer": "edged", "model": "edged inference daemon",
                    "sw_version": __version__}
        return {"identifiers": [f"{box}_{object_id(source)}"], "name": f"edged {source}",
                "manufacturer": "edged", "model": "source seen by edged",
                "via_device": box}

    def _phrase(self, route: RouteConfig) -> str:
        name = route.chain_models[-1] if route.chain else route.model
        phrase = self.settings.models[name].phrase  # the label edged.phrase reports
        return phrase.label if phrase is not None and phrase.label else name
