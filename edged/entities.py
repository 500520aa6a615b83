"""Home Assistant's entities while edged runs: which sources have one, the state each
holds, when to publish it and when to take an entity away again.

- A source gets its entity with its first result, up to ``discovery.max_sources`` per
  route; the sources past it are counted and the first refusal is logged.
- Each entity's first result after a start is published whether it changed or not; then
  a new state goes at once and a changed score at most every ``min_interval_s``.
- States are retained, and everything is published again on each connect and when Home
  Assistant says ``online`` on its status topic (its broker may have lost them).
- Home Assistant never shows a state this run does not hold: entities of an earlier run
  (their retained configs come back when edged subscribes to them) show unknown until
  their source sends, and are removed when it stays silent for ``expire_after_s``, as are
  the entities of routes that are gone.

Thread-safe: results come from the workers, configs and Home Assistant's status from the
MQTT thread, the clock's ticks from the server's thread. Messages go out through
``publish`` after the lock is released.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from edged.discovery import Catalog, Entity
from edged.types import Outbound

log = structlog.get_logger("edged.entities")
MAX_SOURCE_CACHE = 4096
"""(route, topic) -> source lookups kept; a flood of topics only refills it."""


@dataclass
class _Held:
    entity: Entity
    heard: float
    """When its source last sent (monotonic s), or when an earlier run's entity was found."""
    latest: tuple[dict[str, Any], str, float] | None = None
    """The latest result, its topic and receipt time; None: no state held. Summarized
    only when published: most results change nothing Home Assistant shows."""
    value: Any = None
    published: float = float("-inf")
    pending: bool = False
    """A newer summary than the one published waits for ``min_interval_s``."""


class Entities:
    def __init__(self, catalog: Catalog, publish: Callable[[Outbound], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._publish = publish
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str | None], _Held] = {}
        self._sources: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        """Sources not announced because their route had max_sources, per route."""
        self._full: set[str] = set()
        self._source_of: dict[tuple[str, str], str | None] = {}
        self._next_tick = 0.0
        self.catalog = catalog
        self._adopt_fixed()

    def _adopt_fixed(self) -> None:
        """The entities of routes without wildcards exist from the start."""
        now = self._clock()
        for entity in self.catalog.fixed():
            self._held.setdefault((entity.route, None), _Held(entity, now))

    # what edged sees

    def observe(self, route: str, topic: str, result: dict[str, Any],
                received_wall: float) -> None:
        """A result of ``route`` for a message on ``topic``."""
        if route not in self.catalog.routes or result.get("stale"):
            return  # no entity; or an anomaly result older than one already judged
        source = self._source(route, topic)
        now = self._clock()
        out: list[Outbound] = []
        with self._lock:
            held = self._held.get((route, source))
            if held is None:
                held = self._announce(route, source, now, out)
                if held is None:
                    return
            held.heard = now
            view = held.entity.view
            if view.platform == "event":
                if result.get("detected"):
                    out.append(self.catalog.state_message(
                        held.entity, view.summarize(result), topic, received_wall))
            else:
                value = result.get(view.state_key)  # the summary keeps it as it is
                first = held.latest is None
                held.latest = (result, topic, received_wall)
                interval = self.catalog.config.min_interval_s
                if first or value != held.value or now - held.published >= interval:
                    held.value, held.published, held.pending = value, now, False
                    out.append(self._state(held))
                else:
                    held.pending = True
        for message in out:
            self._publish(message)

    def _source(self, route: str, topic: str) -> str | None:
        key = (route, topic)
        try:
            return self._source_of[key]
        except KeyError:
            if len(self._source_of) >= MAX_SOURCE_CACHE:
                self._source_of.clear()
            source = self._source_of[key] = self.catalog.source_of(route, topic)
            return source

    def _announce(self, route: str, source: str | None, now: float,
                  out: list[Outbound]) -> _Held | None:
        """A new source's entity (under the lock), or None past max_sources."""
        limit = self.catalog.config.max_sources
        if source is not None and self._sources[route] >= limit:
            self.refused[route] += 1
            if route not in self._full:
                self._full.add(route)
                log.warning("Home Assistant: the route has discovery.max_sources entities; "
                            "further sources get none (counted in the stats)", route=route,
                            max_sources=limit, source=source)
            return None
        entity = self.catalog.entity(route, source)
        held = self._held[(route, source)] = _Held(entity, now)
        if source is not None:
            self._sources[route] += 1
            log.info("Home Assistant entity announced", route=route, source=source,
                     config_topic=entity.config_topic)
        out.append(self.catalog.config_message(entity))
        return held

    def _state(self, held: _Held) -> Outbound:
        if held.latest is None:
            return self.catalog.unknown_message(held.entity)
        result, topic, wall = held.latest
        return self.catalog.state_message(held.entity, held.entity.view.summarize(result),
                                          topic, wall)

    # what the broker and Home Assistant say

    def everything(self) -> list[Outbound]:
        """Every config and every state held: on each connect, and when Home Assistant
        comes online (its broker may have lost the retained ones)."""
        if not self.catalog.enabled:
            return []
        with self._lock:
            out = [self.catalog.box_message()]
            for held in self._held.values():
                out.append(self.catalog.config_message(held.entity))
                if held.entity.retained:
                    out.append(self._state(held))
        return out

    def home_assistant_status(self, payload: bytes) -> None:
        """Home Assistant's birth (``online``) or last will on its status topic."""
        if payload.strip() == b"online":
            log.info("Home Assistant is online: publishing every entity again")
            for message in self.everything():
                self._publish(message)

    def config_seen(self, topic: str, payload: bytes) -> None:
        """A discovery config of this box's node: edged's own from before (retained), or
        one it just published coming back. One this run does not hold is taken over and
        shows unknown until its source sends, or is removed when edged would no longer
        announce it."""
        if not payload or topic == self.catalog.box_message().topic:
            return
        try:
            state_topic = json.loads(payload).get("state_topic")
        except (ValueError, AttributeError):
            return
        if not isinstance(state_topic, str):
            return
        ids = self.catalog.from_state_topic(state_topic)
        now = self._clock()
        out: list[Outbound] = []
        with self._lock:
            if ids is not None and ids in self._held:
                return
            if any(h.entity.config_topic == topic for h in self._held.values()):
                return  # an older edged's config of an entity this run announces anew
            entity = self.catalog.entity(*ids) if ids is not None else None
            full = (entity is not None and entity.source is not None
                    and self._sources[entity.route] >= self.catalog.config.max_sources)
            if entity is None or entity.config_topic != topic or full:
                ours = state_topic.startswith(self.catalog.state_root)
                out = self.catalog.removal(topic, state_topic if ours else None)
                log.info("Home Assistant entity removed: edged no longer announces it",
                         config_topic=topic)
            else:
                held = self._held[(entity.route, entity.source)] = _Held(entity, now)
                if entity.source is not None:
                    self._sources[entity.route] += 1
                out = [self.catalog.config_message(entity)]
                if entity.retained:
                    out.append(self._state(held))
        for message in out:
            self._publish(message)

    # time

    def tick(self) -> None:
        """Publish the states held back by min_interval_s; remove silent sources."""
        now = self._clock()
        if now < self._next_tick:
            return
        self._next_tick = now + min(1.0, self.catalog.config.min_interval_s or 1.0)
        expire, interval = self.catalog.config.expire_after_s, self.catalog.config.min_interval_s
        out: list[Outbound] = []
        with self._lock:
            for key, held in list(self._held.items()):
                if held.entity.source is not None and now - held.heard >= expire:
                    del self._held[key]
                    self._sources[held.entity.route] -= 1
                    self._full.discard(held.entity.route)
                    out.extend(self.catalog.removal(held.entity.config_topic,
                                                    held.entity.state_topic))
                    log.info("Home Assistant entity removed: its source is silent",
                             route=held.entity.route, source=held.entity.source,
                             silent_s=round(now - held.heard))
                elif held.pending and now - held.published >= interval:
                    held.pending, held.published = False, now
                    out.append(self._state(held))
        for message in out:
            self._publish(message)

    # reload

    def replace(self, catalog: Catalog) -> None:
        """Take a reloaded configuration: the entities it no longer announces (a route
        removed or renamed, another platform, discovery off) are removed; the others keep
        their states."""
        out: list[Outbound] = []
        with self._lock:
            for key, held in list(self._held.items()):
                route, source = key
                keep = catalog.enabled and route in catalog.routes and \
                    catalog.entity(route, source) == held.entity
                if not keep:
                    del self._held[key]
                    if source is not None:
                        self._sources[route] -= 1
                    out.extend(catalog.removal(held.entity.config_topic,
                                               held.entity.state_topic))
            if self.catalog.enabled and not catalog.enabled:
                out.append(Outbound(self.catalog.box_message().topic, b"", qos=1,
                                    retain=True))
            self.catalog = catalog
            self._source_of.clear()
            self._full.clear()
            self._adopt_fixed()
        for message in (*out, *self.everything()):
            self._publish(message)

    def snapshot(self) -> dict[str, Any]:
        """For the stats topic."""
        with self._lock:
            return {"entities": len(self._held), "sources": dict(self._sources),
                    "sources_refused": dict(self.refused)}
