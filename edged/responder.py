"""Where results and errors go: the route's topic, the errors topic, the Response Topic."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from edged import results, topics
from edged.entities import Entities
from edged.job import Answer, Outcome, Several
from edged.results import Identity, Timings
from edged.stats import Stats
from edged.transport import Transport
from edged.types import Inbound, Outbound

log = structlog.get_logger("edged.responder")
QUIET = frozenset({"superseded"})
"""Reasons that are no fault (a newer frame replaced one): counted apart, not failures."""


class RateLimit:
    """A token bucket: at most ``rate`` events a second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self._rate, self._burst, self._clock = rate, burst, clock
        self._tokens, self._last = burst, clock()
        self._lock = threading.Lock()
        self.suppressed = 0

    def allow(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            self.suppressed += 1
            return False


class Responder:
    """The one sink: turns outcomes into MQTT messages and counts them."""

    def __init__(
        self,
        transport: Transport,
        device_id: str,
        topic_prefix: str,
        stats: Stats,
        error_rate: RateLimit | None = None,
        entities: Entities | None = None,
    ) -> None:
        self._publish = transport.publish
        self._entities = entities
        """Home Assistant's view: every result of a source, whoever asked for it."""
        self.device_id = device_id
        self.errors_topic = f"{topic_prefix}/{topics.safe_level(device_id)}/errors"
        self._prefix = topic_prefix
        self._fixed_topics: dict[tuple[str, str, str], str] = {}
        self._stats = stats
        self._error_rate = error_rate or RateLimit(rate=20.0, burst=50.0)
        # Frames superseded under `queue: latest` are normal for a camera faster than its
        # model: counted, answered to a requester, and only sampled on the errors topic.
        self._quiet_rate = RateLimit(rate=0.1, burst=1.0)

    def deliver(self, outcome: Outcome) -> None:
        if isinstance(outcome, Several):
            for answer in outcome.answers:
                self.deliver(answer)
        elif isinstance(outcome, Answer):
            job = outcome.job
            # The route's topic takes what nobody asked for directly, and the events of an
            # anomaly or phrase route: news for every listener, not answers to one requester.
            to_route = outcome.to_route and (
                not job.message.response_topic or job.route.config.publish_answered
                or job.route.anomaly is not None or job.route.phrase is not None)
            result, mask = outcome.result, None
            if job.route.mask_topic and "mask" in result:
                result = dict(result)
                mask = _mask_bytes(result.pop("mask"))
            self.result(job.identity, job.message, job.publish_topic,
                        job.route.config.publish_qos, result, outcome.timings,
                        job.deadline.budget_ms, late=outcome.late, to_route=to_route)
            if mask is not None:
                self._mask(job.message, job.publish_topic, job.route.config.publish_qos,
                           mask, to_route)
            if self._entities is not None:
                self._entities.observe(job.route.name, job.message.topic, outcome.result,
                                       job.identity.received_wall)
        else:
            self.error(outcome.identity, outcome.message, outcome.reason, outcome.text,
                       outcome.deadline_ms, outcome.timings)

    def identity(self, route: str, model: str, message: Inbound) -> Identity:
        return Identity(route, model, self.device_id, message.topic, message.received_wall)

    def publish_topic(self, template: str, route: str, model: str, source_topic: str) -> str:
        key = (template, route, model)
        fixed = self._fixed_topics.get(key)
        if fixed is not None:
            return fixed
        if topics.uses_source(template):
            return self._render(template, route, model, source_topic)
        fixed = self._fixed_topics[key] = self._render(template, route, model, "")
        return fixed

    def _render(self, template: str, route: str, model: str, source_topic: str) -> str:
        values = {"device_id": self.device_id, "route": route, "model": model,
                  "prefix": self._prefix}
        return topics.render(template, values, source_topic)

    def result(
        self,
        identity: Identity,
        message: Inbound,
        topic: str,
        qos: int,
        result: dict[str, Any],
        timings: Timings,
        deadline_ms: float,
        late: bool = False,
        to_route: bool = True,
    ) -> None:
        """Publish a result on the route's topic (unless ``to_route`` is false: nothing new
        to say there) and answer the requester's Response Topic."""
        payload = results.result_payload(identity, result, timings, deadline_ms, late)
        self._reply(message, payload)  # first: the requester is waiting for it
        if to_route:
            self._publish(Outbound(topic, payload, qos=qos))
        self._stats.answered(identity.route, timings, late)

    def error(
        self,
        identity: Identity,
        message: Inbound,
        reason: str,
        text: str,
        deadline_ms: float | None = None,
        timings: Timings | None = None,
    ) -> None:
        """Count, log and report a message that got no result."""
        payload = results.error_payload(identity, reason, text, deadline_ms, timings)
        if reason in QUIET:
            self._stats.superseded(identity.route)
            self._reply(message, payload)
            if self._quiet_rate.allow():
                log.info("messages superseded by newer ones (sampled: one in 10 s at most)",
                         route=identity.route, topic=message.topic, reason=reason)
                self._publish(Outbound(self.errors_topic, payload, qos=0))
            return
        self._stats.failed(identity.route, reason)
        self._reply(message, payload)
        if self._error_rate.allow():
            log.warning("message failed", route=identity.route, topic=message.topic,
                        reason=reason, error=text)
            self._publish(Outbound(self.errors_topic, payload, qos=0))

    def undeliverable(self, message: Outbound, reason: str, text: str) -> None:
        """A message the broker will never take (``too_large``, ``refused``): a small error
        on the errors topic and, for an answer to a request, to its requester in its place.
        Both at QoS 0: a refusal of either is never reported again."""
        payload = results.undeliverable_payload(self.device_id, message, reason, text)
        if message.correlation_data is not None and message.topic != self.errors_topic:
            self._publish(Outbound(message.topic, payload, qos=0,
                                   correlation_data=message.correlation_data))
        if self._error_rate.allow():
            self._publish(Outbound(self.errors_topic, payload, qos=0))

    def _mask(self, message: Inbound, topic: str, qos: int, mask: bytes,
              to_route: bool) -> None:
        """A mask on its own topic: after the requester's answer, on the Response Topic +
        ``/mask`` with the request's Correlation Data, and on the route's topic + ``/mask``."""
        if message.response_topic:
            self._publish(Outbound(f"{message.response_topic}/mask", mask, qos=message.qos,
                                   correlation_data=message.correlation_data))
        if to_route:
            self._publish(Outbound(f"{topic}/mask", mask, qos=qos))

    def _reply(self, message: Inbound, payload: bytes) -> None:
        """Answer on the Response Topic with the QoS the requester chose for its request."""
        if message.response_topic:
            self._publish(
                Outbound(
                    message.response_topic,
                    payload,
                    qos=message.qos,
                    correlation_data=message.correlation_data,
                )
            )


def _mask_bytes(value: Any) -> bytes:
    """The mask as its topic carries it: a PNG file's bytes, or the run lengths as JSON."""
    if isinstance(value, dict) and value.get("format") == "png":
        return base64.b64decode(value["data"])
    return results.encode(value)
